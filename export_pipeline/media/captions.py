"""Captions written for FFmpeg: an ASS document per segment (burned in by the `ass` filter)
and SRT or WebVTT for a soft track muxed in by the join. Cue times are on the final
timeline; a segment's document holds the cues of its span shifted to start at 0
(`domain.captions.cues_in_span`). Pure functions: `filter_path` only builds a string.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from export_pipeline.domain.captions import MARKUP, CaptionStyle, Cue, cues_in_span

# DejaVu Sans: Debian's fonts-dejavu-core, installed in the worker image. Its Bold and Oblique
# faces sit in the same directory, which is passed to the `ass` filter as `fontsdir`.
FONT_DIR = "/usr/share/fonts/truetype/dejavu"
FONT_FILE = f"{FONT_DIR}/DejaVuSans.ttf"
# U+2060 WORD JOINER: invisible and zero-width. libass reads `\N`, `\n`, `\h`, `\{` and `\}` as
# escapes even in plain text, and has no escape for the backslash itself (`\\N` is a
# backslash and a line break), so a literal backslash is followed by this.
_WORD_JOINER = "\u2060"


@dataclass(frozen=True)
class BurnIn:
    """Captions to draw into the pictures: cues on the final timeline, and their style."""

    cues: tuple[Cue, ...]
    style: CaptionStyle


def _centiseconds(seconds: float) -> int:
    """ASS time units. Rounded to the millisecond first (cue times are whole milliseconds;
    offsets need not be), then half up: a cue starts at most 4.5 ms early, never 5."""
    millis = round(seconds * 1000)
    return (millis + 5) // 10


def _ass_time(centiseconds: int) -> str:
    hours, rest = divmod(centiseconds, 360_000)
    minutes, rest = divmod(rest, 6000)
    seconds, cs = divmod(rest, 100)
    return f"{hours}:{minutes:02d}:{seconds:02d}.{cs:02d}"


def _ass_color(color: str, alpha: int = 0) -> str:
    """`#RRGGBB` as ASS's `&HAABBGGRR` (alpha 0 is opaque)."""
    red, green, blue = color[1:3], color[3:5], color[5:7]
    return f"&H{alpha:02X}{blue}{green}{red}".upper()


def _ass_escape(text: str) -> str:
    """Plain text for an ASS Dialogue line, shown as written: braces would open override
    blocks, `\\N`-like sequences would be read as escapes, a newline would end the event."""
    text = text.replace("\\", "\\" + _WORD_JOINER)
    text = text.replace("{", "\\{").replace("}", "\\}")
    return text.replace("\n", "\\N")


def _ass_text(text: str) -> str:
    """Cue text for ASS: `<i>` markup becomes `{\\i1}` (and so on), the rest is escaped."""
    parts = []
    for piece in MARKUP.split(text):
        if MARKUP.fullmatch(piece):
            parts.append(f"{{\\{piece.strip('</>')}{0 if piece[1] == '/' else 1}}}")
        else:
            parts.append(_ass_escape(piece))
    return "".join(parts)


def ass_document(
    cues: Iterable[Cue],
    style: CaptionStyle,
    width: int,
    height: int,
    offset_s: float = 0.0,
    span_s: float | None = None,
) -> str:
    """An ASS script drawing the cues of [offset_s, offset_s + span_s) on a width x height
    frame whose first frame is at offset_s (`cues_in_span`), for FFmpeg's `ass` filter with
    `fontsdir` FONT_DIR. PlayRes is the frame size, so style sizes are pixels.

    Deterministic (same arguments, same text), so it can be part of a segment's cache key;
    cues too short to last one centisecond are left out.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    lines = [
        "[Script Info]",
        "ScriptType: v4.00+",
        f"PlayResX: {width}",
        f"PlayResY: {height}",
        "WrapStyle: 0",
        "ScaledBorderAndShadow: yes",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
        "BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, "
        "BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding",
        _style_line(style, width, height),
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    for cue in cues_in_span(cues, offset_s, span_s):
        start, end = _centiseconds(cue.start_s), _centiseconds(cue.end_s)
        if end > start:
            times = f"{_ass_time(start)},{_ass_time(end)}"
            lines.append(f"Dialogue: 0,{times},Default,,0,0,0,,{_ass_text(cue.text)}")
    return "\n".join(lines) + "\n"


def _style_line(style: CaptionStyle, width: int, height: int) -> str:
    """The `Style:` line of the one style every cue uses, sized for the frame."""
    font_px = style.font_px(width, height)
    outline = max(1, round(style.outline * font_px))
    shadow = max(1, round(style.shadow * font_px))
    side, vertical = style.margins(width, height)
    alignment = 2 if style.position == "bottom" else 8  # numpad layout: bottom/top centre
    style_fields = [
        "Default",
        style.font,
        str(font_px),
        _ass_color(style.color),
        _ass_color(style.color),  # secondary: karaoke only
        _ass_color(style.outline_color),
        _ass_color("#000000", alpha=0x80),  # the shadow
        "0,0,0,0,100,100,0,0",  # bold, italic, underline, strikeout, scale x/y, spacing, angle
        "1",  # border style: outline and shadow
        str(outline),
        str(shadow),
        str(alignment),
        str(side),
        str(side),
        str(vertical),
        "1",  # encoding: default (libass ignores it; the text is UTF-8)
    ]
    return "Style: " + ",".join(style_fields)


def _clock(seconds: float, separator: str) -> str:
    hours, rest = divmod(round(seconds * 1000), 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _text_lines(text: str) -> list[str]:
    """A blank line would end the cue early in SRT and WebVTT, and `-->` would start one."""
    return [line.replace("-->", "->") for line in text.split("\n") if line.strip()]


def _in_order(cues: Iterable[Cue]) -> list[Cue]:
    """By start time, as WebVTT requires and players expect (stable for equal starts)."""
    return sorted(cues, key=lambda cue: (cue.start_s, cue.end_s))


def srt_document(cues: Iterable[Cue]) -> str:
    """The cues as SRT, numbered from 1 in start order; markup kept as `<i>` tags."""
    blocks = []
    for number, cue in enumerate(_in_order(cues), start=1):
        timing = f"{_clock(cue.start_s, ',')} --> {_clock(cue.end_s, ',')}"
        blocks.append("\n".join([str(number), timing, *_text_lines(cue.text)]) + "\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    parts = []
    for piece in MARKUP.split(text):
        if not MARKUP.fullmatch(piece):
            piece = piece.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        parts.append(piece)
    return "".join(parts)


def vtt_document(cues: Iterable[Cue]) -> str:
    """The cues as WebVTT in start order; `&`, `<`, `>` escaped, markup kept as tags."""
    blocks = ["WEBVTT\n"]
    for cue in _in_order(cues):
        timing = f"{_clock(cue.start_s, '.')} --> {_clock(cue.end_s, '.')}"
        blocks.append("\n".join([timing, *_text_lines(_vtt_escape(cue.text))]) + "\n")
    return "\n".join(blocks)


def caption_document(kind: str, cues: Iterable[Cue]) -> str:
    """The cues as a document of `kind` (`domain.captions.KINDS`: srt or vtt)."""
    writers = {"srt": srt_document, "vtt": vtt_document}
    if kind not in writers:
        raise ValueError(f"unknown caption document {kind!r}; allowed: {', '.join(writers)}")
    return writers[kind](cues)


# --- FFmpeg --------------------------------------------------------------------------------

# FFmpeg's "Notes on filtergraph escaping": an option value is unescaped once when the
# filter's options are split at `:`, and the whole filter description once before, when the
# graph is split at `[`, `]`, `,` and `;`. Both levels trim unescaped whitespace at the ends
# of a value, so whitespace is escaped at both too.
_OPTION_SPECIAL = "\\':" + " \t\n\r"
_GRAPH_SPECIAL = "\\'[],;" + " \t\n\r"


def _escape(text: str, special: str) -> str:
    return "".join("\\" + char if char in special else char for char in text)


def filter_path(path: str | Path) -> str:
    """A file path as a filter option value inside a filtergraph (`-vf`, `-filter_complex`),
    e.g. `ass=filename=` + filter_path(path). Always name the option: as the first, unnamed
    option, a path holding `=` would be split into a name and a value."""
    return _escape(_escape(str(path), _OPTION_SPECIAL), _GRAPH_SPECIAL)
