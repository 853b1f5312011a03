"""How one export is encoded: `EncodeSettings`, the same for every segment of a join,
chosen per format, quality and retry attempt (`encode_settings`), with the keys that name
cached segments; and the frame grid every duration is counted on."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from fractions import Fraction

from export_pipeline.domain.formats import OutputFormat, output_format
from export_pipeline.domain.target import QUALITIES, frame_size, video_bitrate_cap
from export_pipeline.media.colour import OUTPUT_TAGS
from export_pipeline.media.system import encoder_threads

# Bump when the segment command changes in a way that changes its output, so cached
# segments made by an older version are not reused.
# 2: interlaced sources are deinterlaced; 3: tagged SDR BT.709, sources converted to it.
SEGMENT_FORMAT_VERSION = 3
# The same for the audio segments (their keys hold only what changes the sound).
AUDIO_FORMAT_VERSION = 1
# Outputs faster than this are encoded `VideoEncoder.high_rate_slower` speed steps slower.
HIGH_FRAME_RATE = Fraction(30)
# The operator's preset (EXPORT_X264_PRESET) by default: the default format's speed setting.
DEFAULT_PRESET = output_format(None).video.default_speed


@dataclass(frozen=True)
class EncodeSettings:
    """How every segment of one export is encoded; all segments of a join must share it."""

    width: int
    height: int
    fps: Fraction
    crf: int
    preset: str  # the video encoder's speed setting
    maxrate: int  # bit/s
    bufsize: int  # bits
    profile: str = "high"  # the video codec's profile
    format: OutputFormat = output_format(None)  # the codecs, containers and muxer options
    # x264 starts each segment's rate buffer this full (x264's own default). Every segment
    # opens with a keyframe: a buffer started at 0.3 starved it, and the frames that refer
    # to it, on detailed footage (SSIM -0.02 against the reference; bench_corpus, README).
    vbv_init: float = 0.9
    audio_bitrate: int = 192000
    audio_rate: int = 48000
    # Integrated loudness every clip is brought to, in LUFS; None leaves clips as they are.
    loudness: float | None = None
    # Encoder threads (0: x264's own choice, 1.5 per CPU it sees). Memory grows with them
    # (about 75 MB each at 4k), so they follow the CPUs the worker really gets (`encoder_threads`).
    threads: int = 0

    @property
    def codec(self) -> str:
        return self.format.video.codec

    @property
    def audio_codec(self) -> str:
        return self.format.audio.codec

    def record(self) -> dict:
        """Every setting by name, the format as its codecs (what `cache_key` covers, and
        `threads`)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        at = list(fields).index("format")
        named = list(fields.items())
        codecs = [("codec", self.codec), ("audio_codec", self.audio_codec)]
        return dict(named[:at] + codecs + named[at + 1 :])

    def cache_key(self) -> str:
        """A short stable key over every field that changes what a segment is (and the segment
        command's version); `threads` only changes how it is made."""
        fields = {**self.record(), "fps": str(self.fps), "version": SEGMENT_FORMAT_VERSION}
        del fields["threads"]
        return _digest(fields)

    def audio_key(self) -> str:
        """The same for an audio segment: only what changes its samples (the frame grid it
        is cut on, the rate, the loudness target), so a re-export at another size, quality
        or format, or a retry with safer video settings, reuses the sound."""
        fields = {
            "fps": str(self.fps),
            "audio_rate": self.audio_rate,
            "loudness": self.loudness,
            "version": AUDIO_FORMAT_VERSION,
        }
        return _digest(fields)


def _digest(fields: dict) -> str:
    canonical = ";".join(f"{name}={fields[name]}" for name in sorted(fields))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_settings(
    resolution: str,
    aspect_ratio: str,
    quality: str,
    fps: Fraction,
    preset: str | None = None,
    attempt: int = 0,
    threads: int | None = None,
    format: str | None = None,  # noqa: A002 - the request's word
    loudness: float | None = None,
) -> EncodeSettings:
    """Settings for a target; `attempt` > 0 gives safer settings after an FFmpeg crash;
    `threads` for the encoder, by default `encoder_threads()` of this machine. `format`
    (`domain.formats`, default mp4) picks the codecs; `preset` is the operator's speed
    setting for a format whose encoder takes it (`VideoEncoder.takes_preset`: x264), else
    the format's own; `loudness` the LUFS every clip is brought to (None: clips keep theirs).

    Quality sets the CRF (the format's table) and the VBV cap (`video_bitrate_cap`; buffer
    1 s at the cap, starting 90 % full). Retries trade quality for robustness and speed:

    - attempt 0: the requested speed (slower above HIGH_FRAME_RATE, as the format says),
      the format's first profile, full bitrate cap;
    - attempt 1: the next faster speed and a 20 % lower bitrate cap;
    - attempt 2 and later: additionally the fastest speed (and the format's last profile).
    """
    target = output_format(format)
    video = target.video
    if quality not in video.crf:
        raise ValueError(f"unknown quality {quality!r}; allowed: {', '.join(QUALITIES)}")
    if preset is not None and video.takes_preset and preset not in video.speeds:
        raise ValueError(
            f"unknown {target.name} preset {preset!r}; allowed: {', '.join(video.speeds)}"
        )
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if fps <= 0:
        raise ValueError(f"frame rate must be positive, got {fps}")
    width, height = frame_size(resolution, aspect_ratio)
    maxrate = video_bitrate_cap(quality, width, height)
    speed = preset if preset is not None and video.takes_preset else video.default_speed
    if fps > HIGH_FRAME_RATE and video.high_rate_slower:
        slower = video.speeds.index(speed) + video.high_rate_slower
        speed = video.speeds[min(slower, len(video.speeds) - 1)]
    if attempt >= 1:
        speed = video.speeds[max(0, video.speeds.index(speed) - 1)]
        maxrate = round(maxrate * 0.8 / 1000) * 1000
    if attempt >= 2:
        speed = video.speeds[0]
    return EncodeSettings(
        width=width,
        height=height,
        fps=Fraction(fps),
        crf=video.crf[quality],
        preset=speed,
        maxrate=maxrate,
        bufsize=maxrate,
        profile=video.profile(attempt),
        format=target,
        audio_bitrate=target.audio.bitrate,
        loudness=loudness,
        threads=encoder_threads() if threads is None else threads,
    )


def frame_count(duration_s: float, fps: Fraction) -> int:
    """Frames in `duration_s` at `fps`, rounded to the nearest frame, at least 1."""
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ValueError(f"duration must be a finite number >= 0, got {duration_s}")
    return max(1, math.floor(Fraction(duration_s) * Fraction(fps) + Fraction(1, 2)))


def audio_sample_count(frames: int, settings: EncodeSettings) -> int:
    """Audio samples that last as long as `frames` video frames (nearest sample)."""
    exact = Fraction(frames) / settings.fps * settings.audio_rate
    return math.floor(exact + Fraction(1, 2))


def video_encoder_args(settings: EncodeSettings) -> list[str]:
    """The format's video encoder at its CRF under the bitrate cap, yuv420p, tagged SDR
    BT.709 (`media.colour`: every format's output is)."""
    return [*settings.format.video.args(settings), *OUTPUT_TAGS]
