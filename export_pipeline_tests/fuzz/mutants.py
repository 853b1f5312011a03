"""Deterministic mutants of small clip files: truncated, bit-flipped, MP4 box sizes and
Matroska (EBML) element sizes altered, codec headers (`avcC`, `stsd`, CodecPrivate, CodecID)
and timing fields damaged.

A mutant is named by its base clip, its operator and a seed; the same name always gives the
same bytes (from the same base clip), so a failing mutant is reproduced by its name alone.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

Operator = Callable[[bytes, random.Random], bytes]

# MP4 boxes that hold other boxes (ISO/IEC 14496-12), for the nested box walk.
MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex"}
# Matroska element IDs (marker bits included) whose sizes are worth breaking.
EBML_HEADER = b"\x1a\x45\xdf\xa3"
SEGMENT = b"\x18\x53\x80\x67"
TRACKS = b"\x16\x54\xae\x6b"
CODEC_PRIVATE = b"\x63\xa2"
EBML_ELEMENTS = [
    EBML_HEADER,
    SEGMENT,
    b"\x11\x4d\x9b\x74",  # SeekHead
    b"\x15\x49\xa9\x66",  # Info
    TRACKS,
    b"\x1f\x43\xb6\x75",  # Cluster
    b"\x1c\x53\xbb\x6b",  # Cues
    CODEC_PRIVATE,
]


@dataclass(frozen=True)
class Mutant:
    clip: str  # name of the base clip
    operator: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.clip}-{self.operator}-{self.seed}"

    def apply(self, data: bytes) -> bytes:
        rng = random.Random(self.name)  # str seeds are hashed deterministically
        return OPERATORS[self.operator](data, rng)


# ---- any file


def truncate_head(data: bytes, rng: random.Random) -> bytes:
    """Only the first few bytes: a download cut at once."""
    return data[: rng.randint(1, 64)]


def truncate_middle(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randint(len(data) // 10, len(data) * 9 // 10)]


def truncate_tail(data: bytes, rng: random.Random) -> bytes:
    """All but the last few bytes (for MP4 without faststart: the end of the index)."""
    return data[: -rng.randint(1, 256)]


def _flip(data: bytes, rng: random.Random, start: int, end: int, count: int) -> bytes:
    buf = bytearray(data)
    for _ in range(count):
        buf[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
    return bytes(buf)


def bitflip_head(data: bytes, rng: random.Random) -> bytes:
    return _flip(data, rng, 0, min(len(data), 512), rng.randint(1, 8))


def bitflip_middle(data: bytes, rng: random.Random) -> bytes:
    return _flip(data, rng, len(data) // 4, len(data) * 3 // 4, rng.randint(1, 8))


def bitflip_spread(data: bytes, rng: random.Random) -> bytes:
    """One bit in a thousand, anywhere."""
    return _flip(data, rng, 0, len(data), max(1, len(data) * 8 // 1000))


# ---- MP4


def mp4_boxes(data: bytes, start: int = 0, end: int | None = None, depth: int = 0) -> list:
    """(offset, size, type, depth) of every box, descending into container boxes."""
    end = len(data) if end is None else end
    found: list[tuple[int, int, bytes, int]] = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1 and pos + 16 <= end:
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            break
        found.append((pos, size, kind, depth))
        if kind in MP4_CONTAINERS:
            found += mp4_boxes(data, pos + header, pos + size, depth + 1)
        pos += size
    return found


def _set_u32(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack(">I", value & 0xFFFFFFFF) + data[offset + 4 :]


def _box_size(data: bytes, rng: random.Random, nested: bool, value: int | None) -> bytes:
    boxes = [b for b in mp4_boxes(data) if (b[3] > 0) == nested]
    offset, size, _kind, _depth = rng.choice(boxes)
    if value is None:
        value = rng.choice([size - rng.randint(1, 16), size + rng.randint(1, 4096), 0, 1, 7])
    return _set_u32(data, offset, value)


def box_size_zero(data: bytes, rng: random.Random) -> bytes:
    """A top-level box claims to run to the end of the file."""
    return _box_size(data, rng, nested=False, value=0)


def box_size_one(data: bytes, rng: random.Random) -> bytes:
    """Size 1 announces a 64-bit size that is not there: the box's payload is read as it."""
    return _box_size(data, rng, nested=False, value=1)


def box_size_huge(data: bytes, rng: random.Random) -> bytes:
    return _box_size(data, rng, nested=False, value=0xFFFFFFFF)


def box_size_small(data: bytes, rng: random.Random) -> bytes:
    """Smaller than a box header (8 bytes), but not the special 0 and 1."""
    return _box_size(data, rng, nested=False, value=rng.randint(2, 7))


def inner_box_size(data: bytes, rng: random.Random) -> bytes:
    """A box inside `moov` (trak, stbl, stsd, stsz ...) with a wrong size."""
    return _box_size(data, rng, nested=True, value=None)


def _payload(data: bytes, fourcc: bytes) -> int:
    """Offset of the first `fourcc` box's payload (after its type)."""
    at = data.find(fourcc)
    if at < 0:
        raise ValueError(f"no {fourcc!r} in the clip")
    return at + 4


def _damage_avcc(data: bytes, rng: random.Random, at: int) -> bytes:
    """Break an AVCDecoderConfigurationRecord starting at `at`."""
    buf = bytearray(data)
    choice = rng.randrange(6)
    if choice == 0:
        buf[at] = rng.choice([0, 2, 255])  # configurationVersion (must be 1)
    elif choice == 1:
        buf[at + 4] = 0xFC | 2  # NAL length size 3: not allowed
    elif choice == 2:
        buf[at + 5] = rng.choice([0xE0, 0xFF])  # no SPS, or 31 of them
    elif choice == 3:
        buf[at + 6 : at + 8] = struct.pack(">H", rng.choice([0, 0xFFFF, 3]))  # SPS length
    elif choice == 4:
        sps_len = struct.unpack_from(">H", buf, at + 6)[0]
        return _flip(bytes(buf), rng, at + 8, at + 8 + max(1, sps_len), rng.randint(1, 4))
    else:
        buf[at + 1] = rng.choice([0, 66, 244, 255])  # profile
    return bytes(buf)


def avcc(data: bytes, rng: random.Random) -> bytes:
    """The H.264 decoder configuration (`avcC`) damaged: version, NAL length size, SPS count
    and length, SPS bits, profile."""
    return _damage_avcc(data, rng, _payload(data, b"avcC"))


def stsd(data: bytes, rng: random.Random) -> bytes:
    """The sample description: entry count, the first entry's size, its codec (fourcc) or
    its frame size."""
    at = _payload(data, b"stsd")  # version+flags(4) entry_count(4) entry: size(4) fourcc(4)
    choice = rng.randrange(4)
    if choice == 0:
        return _set_u32(data, at + 4, rng.choice([0, 2, 0xFFFFFFFF]))
    if choice == 1:
        return _set_u32(data, at + 8, rng.choice([0, 8, 0xFFFFFFFF]))
    if choice == 2:
        fourcc = rng.choice([b"hvc1", b"mp4v", b"jpeg", b"xxxx", b"\x00\x00\x00\x00"])
        return data[: at + 12] + fourcc + data[at + 16 :]
    entry = at + 8  # visual sample entry: width and height 24 bytes after its header
    size = struct.pack(">HH", *rng.choice([(0, 0), (65535, 65535), (1, 65535)]))
    return data[: entry + 32] + size + data[entry + 36 :]


def sample_table(data: bytes, rng: random.Random) -> bytes:
    """Sample sizes (`stsz`), chunk offsets (`stco`) or durations (`stts`) wrong."""
    choice = rng.randrange(4)
    if choice == 0:  # stsz: version+flags, sample_size, sample_count
        return _set_u32(data, _payload(data, b"stsz") + 8, rng.choice([0x7FFFFFFF, 1_000_000]))
    if choice == 1:
        return _set_u32(data, _payload(data, b"stsz") + 4, rng.choice([0xFFFFFFFF, 1]))
    if choice == 2:  # stco: version+flags, entry_count, first offset
        return _set_u32(data, _payload(data, b"stco") + 8, rng.choice([0, 0xFFFFFFF0, 1]))
    # stts: version+flags, entry_count, (count, delta): a frame lasting ~forever, or none
    return _set_u32(data, _payload(data, b"stts") + 12, rng.choice([0, 0x7FFFFFFF]))


def durations(data: bytes, rng: random.Random) -> bytes:
    """A time scale of 0 or 1, or a duration of 2^32-1 in `mvhd`, `mdhd` or `tkhd`."""
    box = rng.choice([b"mvhd", b"mdhd"])
    at = _payload(data, box)  # version 0: version+flags(4) ctime(4) mtime(4) timescale duration
    if rng.random() < 0.5:
        return _set_u32(data, at + 12, rng.choice([0, 1]))
    return _set_u32(data, at + 16, 0xFFFFFFFF)


# ---- Matroska


def _vint(data: bytes, at: int) -> tuple[int, int]:
    """(length, value) of the EBML variable-size integer at `at` (length 0: invalid)."""
    first = data[at]
    length = next((n + 1 for n in range(8) if first & (0x80 >> n)), 0)
    if not length:
        return 0, 0
    value = first & (0xFF >> length)
    for byte in data[at + 1 : at + length]:
        value = value << 8 | byte
    return length, value


def _set_vint(data: bytes, at: int, length: int, value: int) -> bytes:
    """Write `value` as a size of `length` bytes (the all-ones value means "unknown")."""
    value = min(value, (1 << (7 * length)) - 1)
    encoded = (value | 1 << (7 * length)).to_bytes(length, "big")
    return data[:at] + encoded + data[at + length :]


def _element(data: bytes, element_id: bytes, after: int = 0) -> tuple[int, int, int]:
    """(offset of the size, its length, its value) of the first element `element_id`."""
    at = data.find(element_id, after)
    if at < 0:
        raise ValueError(f"no element {element_id.hex()} in the clip")
    length, value = _vint(data, at + len(element_id))
    return at + len(element_id), length, value


def _resize(data: bytes, rng: random.Random, element_id: bytes, after: int = 0) -> bytes:
    at, length, value = _element(data, element_id, after)
    if not length:
        return data
    choice = rng.randrange(6)
    if choice == 5:
        return data[:at] + b"\x00" + data[at + 1 :]  # no length marker: an invalid size
    new = [0, 1, value // 2, value + rng.randint(1, 10_000), (1 << (7 * length)) - 1][choice]
    return _set_vint(data, at, length, new)


def ebml_header_size(data: bytes, rng: random.Random) -> bytes:
    return _resize(data, rng, EBML_HEADER)


def segment_size(data: bytes, rng: random.Random) -> bytes:
    return _resize(data, rng, SEGMENT)


def tracks_size(data: bytes, rng: random.Random) -> bytes:
    return _resize(data, rng, TRACKS)


def element_size(data: bytes, rng: random.Random) -> bytes:
    """Any of the top-level elements (or CodecPrivate) with a wrong size."""
    present = [e for e in EBML_ELEMENTS if e in data]
    return _resize(data, rng, rng.choice(present))


def doctype(data: bytes, rng: random.Random) -> bytes:
    replacement = rng.choice([b"webm\x00\x00\x00\x00", b"matroskb", b"\x00" * 8, b"MATROSKA"])
    return data.replace(b"matroska", replacement, 1)


def codec_id(data: bytes, rng: random.Random) -> bytes:
    """Another codec announced (same length, so nothing else moves)."""
    if rng.random() < 0.7:
        other = rng.choice([b"V_MPEG4/ISO/ASP", b"V_MS/VFW/FOURCC", b"V_UNCOMPRESSED\x00"])
        return data.replace(b"V_MPEG4/ISO/AVC", other, 1)
    return data.replace(b"A_AAC", rng.choice([b"A_AC3", b"A_DTS", b"A_XXX"]), 1)


def codec_private(data: bytes, rng: random.Random) -> bytes:
    """The video track's CodecPrivate (an avcC record) damaged, or its size wrong."""
    tracks = data.find(TRACKS)
    if rng.random() < 0.3:
        return _resize(data, rng, CODEC_PRIVATE, tracks)
    at, length, _value = _element(data, CODEC_PRIVATE, tracks)
    return _damage_avcc(data, rng, at + length)


# The base Matroska clip carries a video stream tag named ROTATE_KEY with the value
# ROTATE_VALUE, so a mutant can rename it to "rotate" and give it another value of the same
# length (nothing else in the file moves).
ROTATE_KEY = b"XOTATE"
ROTATE_VALUE = b"0000000000"


def rotate_tag(data: bytes, rng: random.Random) -> bytes:
    """A `rotate` stream tag with an odd value: what a Matroska file may carry as text."""
    value = rng.choice([b"nan", b"inf", b"1e400", b"-90", b"90.5", b"abc", b"-1e308", b"270"])
    data = data.replace(ROTATE_KEY, b"rotate", 1)
    return data.replace(ROTATE_VALUE, value.ljust(len(ROTATE_VALUE)), 1)


GENERIC: dict[str, Operator] = {
    "truncate-head": truncate_head,
    "truncate-middle": truncate_middle,
    "truncate-tail": truncate_tail,
    "bitflip-head": bitflip_head,
    "bitflip-middle": bitflip_middle,
    "bitflip-spread": bitflip_spread,
}
MP4: dict[str, Operator] = {
    "box-size-zero": box_size_zero,
    "box-size-one": box_size_one,
    "box-size-huge": box_size_huge,
    "box-size-small": box_size_small,
    "inner-box-size": inner_box_size,
    "avcc": avcc,
    "stsd": stsd,
    "sample-table": sample_table,
    "durations": durations,
}
MATROSKA: dict[str, Operator] = {
    "ebml-header-size": ebml_header_size,
    "segment-size": segment_size,
    "tracks-size": tracks_size,
    "element-size": element_size,
    "doctype": doctype,
    "codec-id": codec_id,
    "codec-private": codec_private,
    "rotate-tag": rotate_tag,
}
OPERATORS: dict[str, Operator] = {**GENERIC, **MP4, **MATROSKA}


def mutants(clips: dict[str, str], count: int | None = None) -> list[Mutant]:
    """The first `count` mutants of `clips` (name -> "mp4" or "matroska"): every operator
    that fits a clip once with seed 0 (one round, the default count), then again with
    seed 1, and so on."""
    one_round = [
        (clip, operator)
        for clip, kind in clips.items()
        for operator in [*GENERIC, *(MP4 if kind == "mp4" else MATROSKA)]
    ]
    size = len(one_round)
    count = size if count is None else count
    return [Mutant(*one_round[i % size], seed=i // size) for i in range(count)]
