"""Captions as a request gives them: SRT or WebVTT text parsed into cues, and their style.
(`media.captions` writes them back as ASS, SRT or WebVTT for FFmpeg.)

Cue times are on the final timeline: seconds from the start of the exported video. A segment
covers the span [offset_s, offset_s + span_s) of that timeline, so its ASS document holds the
cues of that span shifted to start at 0 (`cues_in_span`, `ass_document`).

Cue text keeps italics, bold and underline as the markup `<i>`, `<b>`, `<u>` (and their end
tags): the three that SRT, WebVTT, mov_text and ASS all support. Every other tag (`<font>`,
WebVTT's `<c.x>`, `<v Name>`, `<00:01.000>`, ...) is stripped; ASS override blocks such as
`{\\an8}` in the input are text, shown as written. Pure functions, no I/O except `filter_path`,
which only builds a string.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass

from export_pipeline.domain.failures import InvalidRequest

KINDS: tuple[str, ...] = ("srt", "vtt")
MAX_CUES = 5000
MAX_TEXT = 200_000  # characters of caption input: a feature film's SRT is about 100,000

# DejaVu Sans (Debian's fonts-dejavu-core, in the worker image: `media.captions.FONT_DIR`).
FONT_NAME = "DejaVu Sans"

# Font size, as a fraction of the frame height. A 9:16 frame is 1.78x taller than a 16:9 frame
# of the same resolution but no wider, so its default is smaller: both give the same pixel
# size (1080p: 59 and 60 px), about 30 characters per line in 9:16 and 50 in 16:9.
DEFAULT_FONT_SIZE = 0.055
DEFAULT_FONT_SIZE_TALL = 0.031
FONT_SIZE_RANGE = (0.02, 0.15)
# Safe margins, as fractions of the frame: lines wrap inside the side margins. In frames
# taller than wide (phone apps) the captions at the bottom sit higher, above the post text,
# buttons and progress bar that TikTok, Reels and Shorts draw over the lowest part.
MARGIN_SIDE = 0.06  # of the width
MARGIN_VERTICAL = 0.08  # of the height
MARGIN_BOTTOM_TALL = 0.12  # of the height, bottom position in frames taller than wide

STYLE_KEYS: tuple[str, ...] = ("font_size", "color", "outline_color", "position")
POSITIONS: tuple[str, ...] = ("bottom", "top")

_TIME = re.compile(r"(?:(\d+):)?(\d{2}):(\d{2})[,.](\d{3})")
_TIMING = re.compile(r"\s*(\S+)\s*-->\s*(\S+)(?:\s.*)?")
_COLOR = re.compile(r"#[0-9A-Fa-f]{6}")
# Tags in cue text: `<name ...>`, `</name>`, `<name.class>`, and WebVTT timestamps
# `<00:01.000>`. A `<` followed by a space or a digit-less word ("a < b") is text.
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)(?:[.\s/][^<>]*)?>|<\d[\d:.]*>")
_KEPT_TAGS = ("i", "b", "u")
MARKUP = re.compile(r"(</?[ibu]>)")
# Control characters other than newline: a NUL would cut an ASS line short in libass.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_VTT_BLOCKS = ("NOTE", "STYLE", "REGION")
_EXAMPLE = {"srt": "00:00:01,000 --> 00:00:03,500", "vtt": "00:00:01.000 --> 00:00:03.500"}


class CaptionError(InvalidRequest):
    """Captions (or their style) that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Cue:
    """One caption on the final timeline. `text` may hold `<i>`, `<b>`, `<u>` markup and
    newlines between its lines; any other character is text (so WebVTT's `&lt;i&gt;`, decoded,
    reads as markup too: a rare case not worth a second representation)."""

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class CaptionStyle:
    """How burned-in captions look; sizes are relative so one style fits every frame size.

    `font_size` is a fraction of the frame height (None: DEFAULT_FONT_SIZE, or
    DEFAULT_FONT_SIZE_TALL in frames taller than wide); `outline` and `shadow` are fractions
    of the font size (at least 1 px each). The shadow is black at 50 % opacity: it lifts the
    text off bright footage without the hard look of an opaque one.
    """

    font: str = FONT_NAME
    font_size: float | None = None
    color: str = "#FFFFFF"
    outline_color: str = "#000000"
    outline: float = 0.08
    shadow: float = 0.05
    position: str = "bottom"

    def font_px(self, width: int, height: int) -> int:
        """The font size in pixels for a frame."""
        size = self.font_size
        if size is None:
            size = DEFAULT_FONT_SIZE_TALL if height > width else DEFAULT_FONT_SIZE
        return max(1, round(size * height))

    def margins(self, width: int, height: int) -> tuple[int, int]:
        """(side, vertical) margins in pixels for a frame."""
        vertical = MARGIN_VERTICAL
        if self.position == "bottom" and height > width:
            vertical = MARGIN_BOTTOM_TALL
        return round(MARGIN_SIDE * width), round(vertical * height)


def _error(message: str, number: int | None = None, line: int | None = None) -> CaptionError:
    """`captions: cue 3 (line 12): message`, with the parts that are known."""
    if number is not None:
        where = f"cue {number} (line {line}): " if line else f"cue {number}: "
    else:
        where = f"line {line}: " if line else ""
    return CaptionError(f"captions: {where}{message}")


def _allowed(what: str, value: object, allowed: Iterable[str]) -> CaptionError:
    return _error(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")


def _shorten(line: str, limit: int = 60) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


# --- Parsing -------------------------------------------------------------------------------


def _parse_time(token: str, number: int, line: int) -> int:
    """A timestamp in milliseconds; SRT's comma and WebVTT's dot are both accepted, and the
    hours may be left out (WebVTT `MM:SS.mmm`)."""
    if token.startswith("-"):
        raise _error(
            f"negative time {token}; times count from the start of the video", number, line
        )
    match = _TIME.fullmatch(token)
    if not match:
        raise _error(
            f"{token!r} is not a time; expected HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm or "
            "MM:SS.mmm (WebVTT)",
            number,
            line,
        )
    hours, minutes, seconds, millis = (int(part or 0) for part in match.groups())
    if minutes >= 60 or seconds >= 60:
        raise _error(f"minutes and seconds must be below 60 in {token}", number, line)
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis


def _clean_line(line: str, kind: str) -> str:
    """Cue text as Cue.text holds it: kept tags normalized (`<I>`, `<i.loud>` become `<i>`),
    other tags dropped, WebVTT character references (`&amp;`, `&lt;`) decoded."""

    def tag(match: re.Match[str]) -> str:
        name = (match.group(2) or "").lower()
        return f"<{match.group(1)}{name}>" if name in _KEPT_TAGS else ""

    line = _TAG.sub(tag, line)
    if kind == "vtt":
        line = html.unescape(line)
    return _CONTROL.sub("", line.replace("\t", " ")).strip()


def _blocks(lines: list[str]) -> list[list[tuple[int, str]]]:
    """Runs of non-blank lines, each line with its 1-based number."""
    blocks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            current.append((number, line))
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _split_cues(
    block: list[tuple[int, str]], number: int, kind: str
) -> list[tuple[tuple[int, str], list[tuple[int, str]]]]:
    """The cues of one block: (timing line, text lines) pairs. A block is normally one cue
    (identifier line optional), but a line with `-->` always starts a new cue, so captions
    missing the blank line between two cues still parse; a bare number just before such a
    line is that cue's identifier, not text."""
    timings = [i for i, (_, line) in enumerate(block) if "-->" in line]
    if not timings or timings[0] > 1:
        # Point at the line meant as the timing: one that looks like a time, else the line
        # after a numeric identifier, else the first.
        timelike = [entry for entry in block[:2] if re.search(r"\d:\d\d", entry[1])]
        numbered = len(block) > 1 and block[0][1].strip().isdecimal()
        line_number, line = timelike[0] if timelike else block[1 if numbered else 0]
        raise _error(
            f"expected a timing line such as '{_EXAMPLE[kind]}', got {_shorten(line)!r}",
            number,
            line_number,
        )
    cues = []
    for j, start in enumerate(timings):
        end = timings[j + 1] if j + 1 < len(timings) else len(block)
        if end < len(block) and end - 1 > start and block[end - 1][1].strip().isdecimal():
            end -= 1
        cues.append((block[start], block[start + 1 : end]))
    return cues


def _is_vtt_metadata(block: list[tuple[int, str]]) -> bool:
    """A WebVTT NOTE (comment), STYLE or REGION block: skipped. None holds `-->`."""
    words = block[0][1].split(maxsplit=1)
    return bool(words) and words[0] in _VTT_BLOCKS and not any("-->" in line for _, line in block)


def parse_captions(text: str, kind: str) -> list[Cue]:
    """The cues of an SRT (`kind` "srt") or WebVTT ("vtt") document, in file order.

    Lenient where files in the wild differ and nothing is ambiguous: a BOM, CRLF or CR line
    ends, missing identifiers, a missing final or in-between blank line, a dot in SRT times
    or a comma in WebVTT times, WebVTT cue settings (ignored). Cues whose text is empty once
    tags are stripped are dropped; overlapping cues are kept (both are shown).

    Raises CaptionError for anything else, naming the cue (counted from 1 in file order)
    and the line: no cues, a malformed or negative time, an end not after its start, more
    than MAX_CUES cues or MAX_TEXT characters.
    """
    if kind not in KINDS:
        raise _allowed("caption kind", kind, KINDS)
    if len(text) > MAX_TEXT:
        raise _error(
            f"the captions are {len(text):,} characters; at most {MAX_TEXT:,} are accepted"
        )
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks = _blocks(lines)
    if not blocks:
        raise _no_cues(kind)
    first = blocks[0][0][1].strip()
    if kind == "vtt":
        if first != "WEBVTT" and not re.match(r"WEBVTT[ \t]", first):
            raise _error(
                f"a WebVTT file starts with a 'WEBVTT' line, got {_shorten(first)!r}; "
                'for SRT captions send {"srt": ...}',
                line=blocks[0][0][0],
            )
        # The header block: WEBVTT and its metadata lines. A cue right under it (no blank
        # line) keeps everything after the WEBVTT line.
        rest = blocks[0][1:]
        blocks = blocks[1:] if not any("-->" in line for _, line in rest) else [rest, *blocks[1:]]
    elif first.startswith("WEBVTT"):
        raise _error('this looks like WebVTT (it starts with "WEBVTT"); send it as {"vtt": ...}')

    cues: list[Cue] = []
    number = 0
    for block in blocks:
        if kind == "vtt" and _is_vtt_metadata(block):
            continue
        for (line_number, timing), text_lines in _split_cues(block, number + 1, kind):
            number += 1
            if number > MAX_CUES:
                raise _error(
                    f"more than {MAX_CUES} cues; at most {MAX_CUES} are accepted",
                    number,
                    line_number,
                )
            cue = _parse_cue(timing, text_lines, kind, number, line_number)
            if MARKUP.sub("", cue.text).strip():
                cues.append(cue)
    if not cues:
        raise _no_cues(kind)
    return cues


def _no_cues(kind: str) -> CaptionError:
    header = "a 'WEBVTT' line, a blank line, then " if kind == "vtt" else ""
    return _error(
        f"no cues found; expected {header}blocks of a timing line such as "
        f"'{_EXAMPLE[kind]}' and the cue's text, separated by blank lines"
    )


def _parse_cue(
    timing: str, text_lines: list[tuple[int, str]], kind: str, number: int, line_number: int
) -> Cue:
    match = _TIMING.fullmatch(timing)
    if not match:
        raise _error(
            f"expected a timing line such as '{_EXAMPLE[kind]}', got {_shorten(timing.strip())!r}",
            number,
            line_number,
        )
    start_token, end_token = match.groups()
    start = _parse_time(start_token, number, line_number)
    end = _parse_time(end_token, number, line_number)
    if end < start:
        raise _error(f"end {end_token} is before start {start_token}", number, line_number)
    if end == start:
        raise _error(
            f"end {end_token} is the same as start {start_token}; a cue must end after it starts",
            number,
            line_number,
        )
    cleaned = (_clean_line(line, kind) for _, line in text_lines)
    return Cue(start / 1000, end / 1000, "\n".join(line for line in cleaned if line))


# --- Style ---------------------------------------------------------------------------------


def parse_style(value: dict | None) -> CaptionStyle:
    """The style of a request's `captions.style`: any of `font_size` (fraction of the frame
    height, 0.02 to 0.15), `color` and `outline_color` (`#RRGGBB`), `position` ("bottom" or
    "top"). None or {} is the default style."""
    if value is None:
        return CaptionStyle()
    if not isinstance(value, dict):
        raise _error(f"style must be an object with keys {', '.join(STYLE_KEYS)}, got {value!r}")
    unknown = sorted(str(key) for key in value if key not in STYLE_KEYS)
    if unknown:
        raise _error(
            f"unknown style key {', '.join(map(repr, unknown))}; allowed: {', '.join(STYLE_KEYS)}"
        )
    options: dict[str, object] = {}
    if "font_size" in value:
        size = value["font_size"]
        low, high = FONT_SIZE_RANGE
        if isinstance(size, bool) or not isinstance(size, int | float) or not low <= size <= high:
            raise _error(
                f"style font_size must be a number from {low} to {high} (a fraction of the "
                f"frame height; the default is {DEFAULT_FONT_SIZE}), got {size!r}"
            )
        options["font_size"] = float(size)
    for key in ("color", "outline_color"):
        if key in value:
            color = value[key]
            if not isinstance(color, str) or not _COLOR.fullmatch(color):
                raise _error(f"style {key} must be a color like '#FFCC00', got {color!r}")
            options[key] = color.upper()
    if "position" in value:
        if value["position"] not in POSITIONS:
            raise _allowed("style position", value["position"], POSITIONS)
        options["position"] = value["position"]
    return CaptionStyle(**options)


def cues_in_span(cues: Iterable[Cue], offset_s: float, span_s: float | None) -> list[Cue]:
    """The cues shown during [offset_s, offset_s + span_s) of the timeline (from offset_s to
    the end if span_s is None), in the span's own time: shifted by -offset_s, and cut to
    [0, span_s]. A cue crossing a segment boundary appears in both segments."""
    if offset_s < 0 or (span_s is not None and span_s <= 0):
        raise ValueError(f"bad span: offset {offset_s} s, length {span_s} s")
    end_of_span = None if span_s is None else offset_s + span_s
    shown = []
    for cue in cues:
        if cue.end_s <= offset_s or (end_of_span is not None and cue.start_s >= end_of_span):
            continue
        end = cue.end_s - offset_s if span_s is None else min(span_s, cue.end_s - offset_s)
        shown.append(Cue(max(0.0, cue.start_s - offset_s), end, cue.text))
    return shown
