"""Captions: parsing SRT and WebVTT, the burn-in style, ASS documents per segment span, soft
SRT/WebVTT tracks, and the burned-in text as FFmpeg's `ass` filter really draws it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from export_pipeline.domain.captions import (
    MAX_CUES,
    MAX_TEXT,
    CaptionError,
    CaptionStyle,
    Cue,
    cues_in_span,
    parse_captions,
    parse_style,
)
from export_pipeline.domain.failures import FailureCause
from export_pipeline.media.captions import (
    FONT_DIR,
    FONT_FILE,
    ass_document,
    filter_path,
    srt_document,
    vtt_document,
)

SRT = """1
00:00:01,000 --> 00:00:02,500
Hello <i>there</i>,
second line

2
00:00:03,000 --> 00:00:04,250
<font color="#ff0000">Red</font> <B>bold</B> <u>under</u>

3
01:02:03,004 --> 01:02:04,000
a < b & c > d"""

SRT_CUES = [
    Cue(1.0, 2.5, "Hello <i>there</i>,\nsecond line"),
    Cue(3.0, 4.25, "Red <b>bold</b> <u>under</u>"),
    Cue(3723.004, 3724.0, "a < b & c > d"),
]

VTT = """WEBVTT - Episode 1
Kind: captions
Language: en

STYLE
::cue { color: yellow }

REGION
id:bottom width:40%

NOTE a comment
that spans lines

intro
00:01.000 --> 00:02.500 align:start position:10% line:0
<v Roger>Hello</v> <i.loud>there</i>,
second line

00:00:03.000 --> 00:00:04.250
<c.red>Red</c> <b>bold</b> <00:03.500><u>under</u>

NOTE another comment

3
01:02:03.004 --> 01:02:04.000
a &lt; b &amp; c &gt; d&nbsp;!
"""


def ass_events(document: str) -> list[tuple[str, str, str]]:
    """(start, end, text) of each Dialogue line."""
    events = []
    for line in document.splitlines():
        if line.startswith("Dialogue: "):
            fields = line.removeprefix("Dialogue: ").split(",", 9)
            events.append((fields[1], fields[2], fields[9]))
    return events


def ass_style(document: str) -> dict[str, str]:
    """The Default style's fields by name."""
    lines = document.splitlines()
    names = next(line for line in lines if line.startswith("Format: Name")).split(": ")[1]
    values = next(line for line in lines if line.startswith("Style: ")).split(": ", 1)[1]
    return dict(zip(names.split(", "), values.split(","), strict=True))


def ass_seconds(clock: str) -> float:
    hours, minutes, seconds = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


# --- Parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("bom", ["", "\ufeff"])
@pytest.mark.parametrize("ending", ["", "\n", "\n\n\n"])
def test_parse_srt(newline, bom, ending):
    text = bom + (SRT + ending).replace("\n", newline)
    assert parse_captions(text, "srt") == SRT_CUES


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_parse_vtt_with_header_metadata_blocks_settings_and_tags(newline):
    cues = parse_captions("\ufeff" + VTT.replace("\n", newline), "vtt")
    assert cues == [*SRT_CUES[:2], Cue(3723.004, 3724.0, "a < b & c > d\xa0!")]


def test_parse_vtt_header_alone_and_cue_right_under_it():
    assert parse_captions("WEBVTT\n\n00:01.000 --> 00:02.000\nhi", "vtt") == [Cue(1.0, 2.0, "hi")]
    assert parse_captions("WEBVTT\n00:01.000 --> 00:02.000\nhi", "vtt") == [Cue(1.0, 2.0, "hi")]


def test_parse_tolerates_missing_blank_lines_ids_and_mixed_separators():
    text = "00:00:01.000 --> 00:00:02,000\none\n2\n00:00:03,000 --> 00:00:04,000\ntwo\n3\n4"
    assert parse_captions(text, "srt") == [Cue(1.0, 2.0, "one"), Cue(3.0, 4.0, "two\n3\n4")]


def test_parse_keeps_overlaps_and_drops_cues_without_text():
    text = "1\n00:00:01,000 --> 00:00:05,000\nlong\n\n2\n00:00:02,000 --> 00:00:03,000\n<font></font>\n\n"
    text += "3\n00:00:02,000 --> 00:00:03,000\noverlap"
    assert parse_captions(text, "srt") == [Cue(1.0, 5.0, "long"), Cue(2.0, 3.0, "overlap")]


def test_parse_keeps_braces_backslashes_and_strips_control_characters():
    text = "1\n00:00:01,000 --> 00:00:02,000\n{\\an8}C:\\dir\x00\tx <br/>y"
    assert parse_captions(text, "srt") == [Cue(1.0, 2.0, "{\\an8}C:\\dir x y")]


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        (
            "1\n00:00:01,000 --> 00:00:02,000\na\n\n2\n00:00:03,000 --> 00:00:04,000\nb\n\n"
            "3\n00:00:04,000 --> 00:00:02,000\nc",
            "srt",
            "captions: cue 3 (line 10): end 00:00:02,000 is before start 00:00:04,000",
        ),
        (
            "1\n00:00:02,000 --> 00:00:02,000\na",
            "srt",
            "captions: cue 1 (line 2): end 00:00:02,000 is the same as start 00:00:02,000",
        ),
        (
            "1\n-00:00:01,000 --> 00:00:02,000\na",
            "srt",
            "captions: cue 1 (line 2): negative time -00:00:01,000",
        ),
        (
            "1\n00:00:01,000 --> 00:00:02\na",
            "srt",
            "captions: cue 1 (line 2): '00:00:02' is not a time; expected HH:MM:SS,mmm (SRT)",
        ),
        (
            "1\n00:00:61,000 --> 00:01:02,000\na",
            "srt",
            "captions: cue 1 (line 2): minutes and seconds must be below 60 in 00:00:61,000",
        ),
        (
            "1\n00:00:01,000 -> 00:00:02,000\na",
            "srt",
            "captions: cue 1 (line 2): expected a timing line such as "
            "'00:00:01,000 --> 00:00:03,500', got '00:00:01,000 -> 00:00:02,000'",
        ),
        (
            "1\n00:00:01,000 --> 00:00:02,000\na\n\n2\nno timing here",
            "srt",
            "captions: cue 2 (line 6): expected a timing line such as "
            "'00:00:01,000 --> 00:00:03,500', got 'no timing here'",
        ),
        (
            "WEBVTT\n\n00:01.000 --> 00:02.000 align:start\na\n\n00:02.x00 --> 00:03.000\nb",
            "vtt",
            "captions: cue 2 (line 6): '00:02.x00' is not a time",
        ),
        ("", "srt", "captions: no cues found; expected blocks of a timing line"),
        ("\ufeff\r\n\r\n", "vtt", "captions: no cues found; expected a 'WEBVTT' line"),
        ("WEBVTT\n\nNOTE only a note\n", "vtt", "captions: no cues found"),
        ("1\n00:00:01,000 --> 00:00:02,000\n<i></i>", "srt", "captions: no cues found"),
        (
            "1\n00:00:01,000 --> 00:00:02,000\na",
            "vtt",
            "captions: line 1: a WebVTT file starts with a 'WEBVTT' line, got '1'; "
            'for SRT captions send {"srt": ...}',
        ),
        (
            "WEBVTT\n\n00:01.000 --> 00:02.000\na",
            "srt",
            'captions: this looks like WebVTT (it starts with "WEBVTT"); send it as {"vtt": ...}',
        ),
        ("x", "ass", "captions: unknown caption kind 'ass'; allowed: srt, vtt"),
    ],
)
def test_parse_errors_name_the_cue_and_the_line(text, kind, message):
    with pytest.raises(CaptionError) as error:
        parse_captions(text, kind)
    assert str(error.value).startswith(message)
    assert error.value.cause == FailureCause.INVALID_REQUEST and error.value.permanent


def test_parse_limits():
    cue = "00:00.000 --> 00:01.000\nx\n\n"
    assert len(parse_captions("WEBVTT\n\n" + cue * MAX_CUES, "vtt")) == MAX_CUES
    with pytest.raises(
        CaptionError, match=rf"cue {MAX_CUES + 1} \(line \d+\): more than {MAX_CUES} cues"
    ):
        parse_captions("WEBVTT\n\n" + cue * (MAX_CUES + 1), "vtt")
    with pytest.raises(CaptionError, match="200,001 characters; at most 200,000"):
        parse_captions("x" * (MAX_TEXT + 1), "srt")


# --- Style ---------------------------------------------------------------------------------


def test_default_style_sizes_and_margins_per_orientation():
    style = parse_style(None)
    assert style == parse_style({}) == CaptionStyle()
    assert style.font == "DejaVu Sans" and Path(FONT_FILE).parent == Path(FONT_DIR)
    assert Path(FONT_FILE).is_file()
    assert style.font_px(1920, 1080) == 59  # 0.055 of the height
    assert style.font_px(1080, 1920) == 60  # the same pixel size in 9:16
    assert style.margins(1920, 1080) == (115, 86)  # 6 % of the width, 8 % of the height
    assert style.margins(1080, 1920) == (65, 230)  # 12 % from the bottom when tall
    top = parse_style({"position": "top"})
    assert top.margins(1080, 1920) == (65, 154)


def test_parse_style_options_reach_the_ass_style():
    style = parse_style(
        {"font_size": 0.1, "color": "#ffcc00", "outline_color": "#102030", "position": "top"}
    )
    assert style == CaptionStyle(
        font_size=0.1, color="#FFCC00", outline_color="#102030", position="top"
    )
    fields = ass_style(ass_document([Cue(0, 1, "x")], style, 1280, 720))
    assert fields["Fontname"] == "DejaVu Sans"
    assert fields["Fontsize"] == "72"
    assert fields["PrimaryColour"] == "&H0000CCFF"  # &HAABBGGRR
    assert fields["OutlineColour"] == "&H00302010"
    assert fields["Outline"] == "6"  # 0.08 of the font size
    assert fields["Alignment"] == "8"  # top centre
    assert (fields["MarginL"], fields["MarginR"], fields["MarginV"]) == ("77", "77", "58")


def test_outline_and_shadow_are_at_least_one_pixel():
    fields = ass_style(ass_document([], parse_style({"font_size": 0.02}), 320, 180))
    assert fields["Fontsize"] == "4"
    assert (fields["Outline"], fields["Shadow"]) == ("1", "1")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"size": 1},
            "unknown style key 'size'; allowed: font_size, color, outline_color, position",
        ),
        ({"font_size": 0.2}, "style font_size must be a number from 0.02 to 0.15"),
        ({"font_size": 0.01}, "style font_size must be a number from 0.02 to 0.15"),
        ({"font_size": "0.05"}, "style font_size must be a number"),
        ({"font_size": True}, "style font_size must be a number"),
        ({"color": "white"}, "style color must be a color like '#FFCC00', got 'white'"),
        ({"color": "#FFF"}, "style color must be a color like '#FFCC00'"),
        ({"outline_color": "#00000g"}, "style outline_color must be a color like"),
        ({"position": "middle"}, "unknown style position 'middle'; allowed: bottom, top"),
        (["bottom"], "style must be an object with keys font_size, color"),
    ],
)
def test_parse_style_errors(value, message):
    with pytest.raises(CaptionError, match=re.escape("captions: " + message)):
        parse_style(value)


# --- ASS per span --------------------------------------------------------------------------

CUES = [
    Cue(0.5, 1.5, "first"),
    Cue(1.8, 2.6, "across the seam"),
    Cue(2.0, 2.5, "second only"),
    Cue(3.0, 4.0, "after"),
]


def test_cues_in_span_shifts_clamps_and_filters():
    assert cues_in_span(CUES, 0.0, 2.0) == [
        Cue(0.5, 1.5, "first"),
        Cue(1.8, 2.0, "across the seam"),
    ]
    second = cues_in_span(CUES, 2.0, 1.0)
    assert [(round(c.start_s, 6), round(c.end_s, 6), c.text) for c in second] == [
        (0.0, 0.6, "across the seam"),
        (0.0, 0.5, "second only"),
    ]
    assert cues_in_span(CUES, 1.5, 0.3) == []  # "first" ends as the span starts
    assert [c.text for c in cues_in_span(CUES, 2.5, None)] == ["across the seam", "after"]
    with pytest.raises(ValueError):
        cues_in_span(CUES, 1.0, 0.0)


def test_ass_document_per_span():
    style = CaptionStyle()
    assert ass_events(ass_document(CUES, style, 320, 180)) == [
        ("0:00:00.50", "0:00:01.50", "first"),
        ("0:00:01.80", "0:00:02.60", "across the seam"),
        ("0:00:02.00", "0:00:02.50", "second only"),
        ("0:00:03.00", "0:00:04.00", "after"),
    ]
    assert ass_events(ass_document(CUES, style, 320, 180, offset_s=2.0, span_s=1.0)) == [
        ("0:00:00.00", "0:00:00.60", "across the seam"),
        ("0:00:00.00", "0:00:00.50", "second only"),
    ]
    assert ass_events(ass_document(CUES, style, 320, 180, offset_s=3.5, span_s=10.0)) == [
        ("0:00:00.00", "0:00:00.50", "after"),
    ]
    assert ass_events(ass_document(CUES, style, 320, 180, offset_s=10.0, span_s=1.0)) == []
    late = ass_document([Cue(3725.25, 3726.0, "late")], style, 320, 180)
    assert ass_events(late) == [("1:02:05.25", "1:02:06.00", "late")]


def test_ass_document_frame_size_and_determinism():
    document = ass_document(CUES, CaptionStyle(), 1080, 1920, offset_s=1.0, span_s=2.0)
    assert "PlayResX: 1080\nPlayResY: 1920\n" in document
    assert document == ass_document(list(CUES), CaptionStyle(), 1080, 1920, 1.0, 2.0)
    assert document != ass_document(CUES, CaptionStyle(), 1080, 1920, 1.0, 2.5)
    assert document != ass_document(CUES, parse_style({"position": "top"}), 1080, 1920, 1.0, 2.0)


@pytest.mark.parametrize("offset_ms", [0, 1, 3, 333, 1001])
def test_ass_times_never_start_more_than_5_ms_early(offset_ms):
    offset = offset_ms / 1000 + 1 / 30000  # segment offsets need not be whole milliseconds
    cues = [Cue(offset + ms / 1000, offset + 5.0, f"c{ms}") for ms in range(0, 60)]
    events = ass_events(ass_document(cues, CaptionStyle(), 320, 180, offset_s=offset))
    assert len(events) == len(cues)
    for cue, (start, _end, _text) in zip(cues, events, strict=True):
        shifted = cue.start_s - offset
        assert shifted - 0.005 < ass_seconds(start) <= shifted + 0.0055


def test_ass_leaves_out_a_cue_shorter_than_a_centisecond_in_the_span():
    cues = [Cue(1.0, 2.003, "mostly before"), Cue(2.0, 3.0, "kept")]
    assert [text for *_, text in ass_events(ass_document(cues, CaptionStyle(), 320, 180, 2.0))] == [
        "kept"
    ]


@pytest.mark.parametrize(
    ("text", "ass"),
    [
        ("{\\b1}bold?", "\\{\\\u2060b1\\}bold?"),
        ("C:\\new\\Notes\\h", "C:\\\u2060new\\\u2060Notes\\\u2060h"),
        ("two\nlines", "two\\Nlines"),
        ("<i>it</i> <b>b</b> <u>u</u>", "{\\i1}it{\\i0} {\\b1}b{\\b0} {\\u1}u{\\u0}"),
        ("<i>{x}</i>", "{\\i1}\\{x\\}{\\i0}"),
        ("a, b, c", "a, b, c"),  # the text field is the last: commas are text
    ],
)
def test_ass_text_escaping(text, ass):
    assert ass_events(ass_document([Cue(0, 1, text)], CaptionStyle(), 320, 180)) == [
        ("0:00:00.00", "0:00:01.00", ass)
    ]


# --- SRT and WebVTT tracks -----------------------------------------------------------------


def test_srt_and_vtt_documents():
    cues = [Cue(2.0, 3.0, "b & <i>c</i> < d"), Cue(0.0015, 1.5, "a\n\nx --> y")]
    assert srt_document(cues) == (
        "1\n00:00:00,002 --> 00:00:01,500\na\nx -> y\n\n"
        "2\n00:00:02,000 --> 00:00:03,000\nb & <i>c</i> < d\n"
    )
    assert vtt_document(cues) == (
        "WEBVTT\n\n"
        "00:00:00.002 --> 00:00:01.500\na\nx --&gt; y\n\n"
        "00:00:02.000 --> 00:00:03.000\nb &amp; <i>c</i> &lt; d\n"
    )


def test_round_trips():
    from_srt = parse_captions(SRT, "srt")
    assert parse_captions(vtt_document(from_srt), "vtt") == from_srt
    assert parse_captions(srt_document(from_srt), "srt") == from_srt
    from_vtt = parse_captions(VTT, "vtt")
    assert parse_captions(srt_document(from_vtt), "srt") == from_vtt
    assert parse_captions(vtt_document(from_vtt), "vtt") == from_vtt


# --- FFmpeg --------------------------------------------------------------------------------

WIDTH, HEIGHT, RATE = 320, 180, 10


def test_filter_path_escapes_both_levels():
    # FFmpeg's documented example, as the value of one option:
    # this is a 'string': may contain one, or more, special characters
    assert filter_path("it's: one, [two]; \\") == (
        "it\\\\\\'s\\\\:\\\\\\ one\\,\\\\\\ \\[two\\]\\;\\\\\\ \\\\\\\\"
    )
    assert filter_path(Path("/tmp/plain.ass")) == "/tmp/plain.ass"


def burn(tmp_path: Path, document: str) -> list[bytes]:
    """Draw `document` on 2 s of black 320x180 at 10 fps; the gray frames, one per 0.1 s.
    The .ass file sits in a directory whose name has every filtergraph special character."""
    folder = tmp_path / "it's: a, [weird]; dir "
    folder.mkdir()
    path = folder / "captions.ass"
    path.write_text(document, encoding="utf-8")
    graph = f"ass=filename={filter_path(path)}:fontsdir={filter_path(FONT_DIR)}"
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
         f"color=black:s={WIDTH}x{HEIGHT}:d=2:r={RATE}", "-vf", graph,
         "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    size = WIDTH * HEIGHT
    assert len(raw) == 2 * RATE * size
    return [raw[i : i + size] for i in range(0, len(raw), size)]


def bright(frame: bytes) -> list[tuple[int, int]]:
    """(x, y) of the pixels the text lit (the background is black)."""
    return [(i % WIDTH, i // WIDTH) for i, value in enumerate(frame) if value > 128]


def test_burned_in_cue_shows_only_during_its_time(tmp_path):
    document = ass_document([Cue(0.5, 1.5, "Hello, world")], CaptionStyle(), WIDTH, HEIGHT)
    frames = burn(tmp_path, document)
    assert bright(frames[2]) == []  # 0.2 s
    assert bright(frames[18]) == []  # 1.8 s
    lit = bright(frames[10])  # 1.0 s
    assert len(lit) > 50
    xs, ys = [x for x, _ in lit], [y for _, y in lit]
    side, vertical = CaptionStyle().margins(WIDTH, HEIGHT)
    assert side <= min(xs) and max(xs) < WIDTH - side  # inside the side margins
    assert min(ys) > HEIGHT * 0.7 and max(ys) <= HEIGHT - vertical  # above the bottom margin


def test_burned_in_text_is_shown_literally(tmp_path):
    style = parse_style({"font_size": 0.1})
    cues = [Cue(0.0, 1.0, "{\\an8}{\\fs1}x"), Cue(1.0, 2.0, "C:\\Notes")]
    frames = burn(tmp_path, ass_document(cues, style, WIDTH, HEIGHT))
    font_px = style.font_px(WIDTH, HEIGHT)
    for frame in frames[5], frames[15]:
        ys = [y for _, y in bright(frame)]
        assert ys, "nothing drawn"
        # At the bottom (not moved up by \an8), in full size (not \fs1), on one line (no
        # line break from \N).
        assert min(ys) > HEIGHT / 2
        assert font_px * 0.6 < max(ys) - min(ys) < font_px * 1.4
    # The whole of "{\an8}{\fs1}x" is wider than one x.
    xs = [x for x, _ in bright(frames[5])]
    assert max(xs) - min(xs) > 5 * font_px
