"""FFmpeg and FFprobe command lines as plain values: building argv is separate from running it.

An export is made of one segment per clip (or per chunk of a long clip), then one join:

1. `segment_argv` turns a segment's span into a video-only H.264 MP4 (or VP9 WebM) with an
   exact frame count; `segment_audio_argv` turns the same span into a PCM WAV of exactly
   the same duration (silence when the clip has no audio). Two runs, so the pictures and
   the sound can be made by different steps, on different workers.
2. `audio_track_argv` joins the WAV segments, mixes in a soundtrack and encodes the sound
   once (AAC, Opus for WebM): the audio track, exactly as long as the pictures.
3. `concat_argv` joins the video segments and the audio track, both by stream copy, so
   audio and video stay in sync at every seam.

Every file input is opened with `-protocol_whitelist file` and a demuxer whitelist, so a
"clip" that is really a playlist (HLS, ffconcat) cannot make FFmpeg read anything else. The
concat demuxer passes both whitelists on to the files it opens.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

from export_pipeline.domain.formats import OutputFormat, output_format
from export_pipeline.domain.target import QUALITIES, frame_size, video_bitrate_cap
from export_pipeline.media.captions import FONT_DIR, filter_path
from export_pipeline.media.frame import fit_rect

# Demuxers a clip may use: MP4/MOV, Matroska/WebM, MPEG-TS, MPEG-PS (.mpg, .vob), AVI, FLV
# and animated GIF: none of them can open another file or URL (unlike hls, dash, concat or
# image2, which stay refused; mov's `dref` references are off unless asked for). A demuxer
# name such as "mov,mp4,m4a,3gp,3g2,mj2" is accepted when any of its parts is listed.
CLIP_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,mpegts,mpeg,mpegvideo,avi,flv,gif"
CLIP_FORMAT_NAMES = "MP4, MOV, Matroska, WebM, MPEG-TS, MPEG-PS or MPEG video, AVI, FLV or GIF"
# Decoding a clip: few threads (each holds frames: a 16-thread decode of a huge frame took
# 12 GB; 2 keep up with the encoder even for 8K sources) and a ceiling on the frame size the
# decoder will allocate. The default ceiling is the largest 8K, 8192x4320 (DCI; UHD's
# 7680x4320 passes too): 4k and 8K footage is accepted, a 16000x16000 bomb is not.
DECODE_THREADS = 2
MAX_INPUT_SIDE = 8192
MAX_INPUT_PIXELS = 8192 * 4320
# Our own concat list of audio segments, and the segments it names (the concat demuxer
# copies the whitelist to the files it opens, so the segments' demuxer must be listed too;
# the video list's are the format's segment demuxers, `concat_argv`).
AUDIO_LIST_FORMATS = "concat,wav"

# Bump when the segment command changes in a way that changes its output, so cached
# segments made by an older version are not reused.
SEGMENT_FORMAT_VERSION = 2  # 2: interlaced sources are deinterlaced
# The same for the audio segments (their keys hold only what changes the sound).
AUDIO_FORMAT_VERSION = 1

# Loudness (EBU R128). Each clip's audio is brought to one integrated loudness by a static
# gain, so nothing pumps inside a clip; a limiter is added only where that gain would push
# the true peak over the ceiling. -14 LUFS is what YouTube, Spotify and TikTok play at.
DEFAULT_LOUDNESS_LUFS = -14.0
TRUE_PEAK_CEILING_DB = -1.0
# Below this a clip counts as silent (ebur128 says -70 for digital silence, and for a span
# shorter than its 400 ms block): it keeps its level, rather than have its hiss raised.
SILENT_BELOW_LUFS = -60.0
# The limiter holds sample peaks this far under the ceiling: between samples, and after the
# AAC or Opus encode, a true peak rose up to 0.8 dB higher (test_loudness).
LIMITER_HEADROOM_DB = 1.0

# The operator's preset (EXPORT_X264_PRESET) by default: the default format's speed setting.
DEFAULT_PRESET = output_format(None).video.default_speed

_COMMON_FLAGS = ["-y", "-nostdin", "-hide_banner", "-loglevel", "error"]
_PROGRESS_FLAGS = ["-progress", "pipe:1", "-nostats"]
# (quota, period) files: cgroup v2 holds both in one.
_CGROUP_CPU_FILES = (
    ("/sys/fs/cgroup/cpu.max", ""),
    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
)
# Names the concat demuxer accepts in its default safe mode.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


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

    - attempt 0: the requested speed, the format's first profile, full bitrate cap;
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


def available_cpus() -> int:
    """CPUs this process can really use: those it may run on, bounded by its cgroup's CPU
    quota. A container limited to 2 CPUs on a 32-core host sees 32, and FFmpeg would start
    threads (and allocate their frames) for all of them."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux
    cpus = len(affinity(0)) if affinity else os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def _cgroup_cpu_quota() -> float | None:
    """CPUs' worth of time per period allowed by cgroup v2 (`cpu.max`) or v1 (CFS quota)."""
    for quota_file, period_file in _CGROUP_CPU_FILES:
        try:
            quota, *rest = Path(quota_file).read_text().split()
            period = rest[0] if rest else Path(period_file).read_text().strip()
            if quota not in ("max", "-1") and int(period) > 0:
                return int(quota) / int(period)
        except (OSError, ValueError, IndexError):
            continue
    return None


def encoder_threads() -> int:
    """x264's own rule (1.5 threads per CPU) applied to the CPUs this worker really gets."""
    return math.ceil(available_cpus() * 3 / 2)


def frame_count(duration_s: float, fps: Fraction) -> int:
    """Frames in `duration_s` at `fps`, rounded to the nearest frame, at least 1."""
    if not math.isfinite(duration_s) or duration_s < 0:
        raise ValueError(f"duration must be a finite number >= 0, got {duration_s}")
    return max(1, math.floor(Fraction(duration_s) * Fraction(fps) + Fraction(1, 2)))


def audio_sample_count(frames: int, settings: EncodeSettings) -> int:
    """Audio samples that last as long as `frames` video frames (nearest sample)."""
    exact = Fraction(frames) / settings.fps * settings.audio_rate
    return math.floor(exact + Fraction(1, 2))


@dataclass(frozen=True)
class SegmentJob:
    """One clip to encode: `duration` is the effective duration (already clamped to the clip)."""

    source: Source
    trim_start: float
    duration: float
    has_audio: bool
    video_out: Path
    audio_out: Path
    # Source geometry, so the picture can be fitted without stretching. Display size
    # (rotation already applied) and sample aspect ratio, as `probe` reports them.
    width: int = 0
    height: int = 0
    sar: Fraction = Fraction(1)
    interlaced: bool = False
    # Whether the container has an index to seek in (MP4/MOV, Matroska/WebM, AVI). Without
    # one (MPEG-TS, MPEG-PS, FLV, GIF) an input seek can land past the last keyframe and the
    # decoder then drops every frame: the span is cut out after decoding instead.
    indexed: bool = True
    # The clip's loudness correction (`loudness_gain`): a gain in dB, and whether a limiter
    # must hold its peaks under the ceiling.
    gain_db: float = 0.0
    limiter: bool = False
    # Captions to burn into this span of the timeline (an ASS file, times from its start).
    captions: Path | None = None


@dataclass(frozen=True)
class Loudness:
    """A clip's measured integrated loudness (LUFS) and true peak (dBTP)."""

    integrated: float
    true_peak: float


def loudness_gain(measured: Loudness, target: float) -> tuple[float, bool]:
    """The static gain (dB) that brings `measured` to `target`, and whether the result
    needs the limiter (its true peak would pass TRUE_PEAK_CEILING_DB). A silent clip gets
    no gain."""
    if measured.integrated < SILENT_BELOW_LUFS:
        return 0.0, False
    gain = round(target - measured.integrated, 2)
    return gain, measured.true_peak + gain > TRUE_PEAK_CEILING_DB


def _level(job: SegmentJob) -> list[str]:
    """The filters of the clip's loudness correction: its gain, then the limiter if needed
    (latency=1: the limiter's lookahead does not delay the audio)."""
    level = [f"volume={job.gain_db:.2f}dB"] if job.gain_db else []
    if job.limiter:
        limit = 10 ** ((TRUE_PEAK_CEILING_DB - LIMITER_HEADROOM_DB) / 20)
        level.append(f"alimiter=limit={limit:.4f}:attack=5:release=50:level=0:latency=1")
    return level


def loudness_argv(job: SegmentJob) -> list[str]:
    """Measure the loudness of the clip's span (audio only: no video is decoded), after the
    job's own correction if it has one. The `ebur128` summary (integrated loudness, true
    peak) is printed on stderr at level info; `parse_loudness` reads it."""
    cut = "" if job.indexed else f"atrim={_span(job)},"
    cut += "".join(f"{f}," for f in _level(job))
    return [
        "ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info",
        *_clip_input(job.source, *_seek(job), max_pixels=_segment_max_pixels(job)),
        "-map", "0:a:0", "-vn", "-sn", "-dn",
        "-filter:a", f"{cut}ebur128=peak=true:framelog=verbose",
        "-f", "null", "-",
    ]  # fmt: skip


_SUMMARY = re.compile(
    r"Integrated loudness:\s*I:\s*(?P<i>-?[\d.]+|-inf) LUFS.*?True peak:\s*Peak:\s*"
    r"(?P<tp>-?[\d.]+|-inf) dBFS",
    re.S,
)


def parse_loudness(stderr: str) -> Loudness:
    """The last `ebur128` summary in FFmpeg's stderr; ValueError if there is none."""
    found = list(_SUMMARY.finditer(stderr))
    if not found:
        raise ValueError("no ebur128 summary in FFmpeg's output")

    def number(text: str) -> float:
        return -math.inf if text == "-inf" else float(text)

    return Loudness(number(found[-1]["i"]), number(found[-1]["tp"]))


def _url(path: Path) -> str:
    # An explicit protocol, so a name like "x:y.mp4" or "-i" cannot be read as anything else.
    if "\0" in str(path):
        raise ValueError(f"a file name cannot contain a NUL byte: {str(path)!r}")
    return f"file:{path}"


def _rate(fps: Fraction) -> str:
    fps = Fraction(fps)
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"


def _seconds(value: float) -> str:
    return f"{value:.6f}"


@dataclass(frozen=True)
class RemoteFile:
    """An object of our own storage that FFmpeg reads over HTTP(S), seeking with range
    requests (a presigned URL), so a step that needs a few seconds of a long archived clip
    reads those, not the whole file. Never a URL from a request: clips are downloaded and
    checked first (`clips.download`)."""

    url: str

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://")) or "\0" in self.url:
            raise ValueError("a remote file is an http(s) URL")

    def __str__(self) -> str:  # for messages: without the signature in its query
        return self.url.split("?", 1)[0]


# A remote file's input: HTTP(S) only, and FFmpeg reconnects by itself after a dropped
# connection (storage servers close idle keep-alive connections while a segment encodes).
REMOTE_PROTOCOLS = "http,https,tcp,tls"
_RECONNECT = ["-reconnect", "1", "-reconnect_on_network_error", "1", "-reconnect_delay_max", "8"]

Source = Path | RemoteFile


def _input(path: Source, formats: str, *options: str) -> list[str]:
    """Options that open one input with the given demuxer whitelist: a local file, or a
    file of our storage over HTTP(S) (`RemoteFile`)."""
    if isinstance(path, RemoteFile):
        whitelist = ["-protocol_whitelist", REMOTE_PROTOCOLS, "-format_whitelist", formats]
        return [*whitelist, *_RECONNECT, *options, "-i", path.url]
    return ["-protocol_whitelist", "file", "-format_whitelist", formats, *options, "-i", _url(path)]


def _span(job: SegmentJob) -> str:
    return f"start={_seconds(job.trim_start)}:duration={_seconds(job.duration)}"


def decode_limits(max_pixels: int = MAX_INPUT_PIXELS) -> list[str]:
    """Input options that bound decoding: few threads, and no frame over `max_pixels`."""
    return ["-threads", str(DECODE_THREADS), "-max_pixels", str(max_pixels)]


def _clip_input(path: Path, *options: str, max_pixels: int = MAX_INPUT_PIXELS) -> list[str]:
    """A clip: our whitelist of containers, and bounded decoding (threads, frame size)."""
    return _input(path, CLIP_FORMATS, *decode_limits(max_pixels), *options)


def _segment_max_pixels(job: SegmentJob) -> int:
    """The decoder's ceiling for a segment: the default one, or the clip's own frame when
    larger (probe accepted it under a ceiling raised by configuration)."""
    return max(MAX_INPUT_PIXELS, job.width * job.height)


def _threads(option: str, count: int) -> list[str]:
    return [option, str(count)] if count > 0 else []  # 0: FFmpeg's default


def _seek(job: SegmentJob) -> list[str]:
    """Input options that cut the clip's span, when the container can seek exactly; else
    the whole clip is read up to the span's end and the filters cut it (see `indexed`)."""
    if job.indexed:
        # No seek at all from the start: a damaged index (a Matroska file without its cues)
        # makes even a seek to 0 fail, and FFmpeg then reads nothing yet exits 0.
        seek = ["-ss", _seconds(job.trim_start)] if job.trim_start > 0 else []
        return [*seek, "-t", _seconds(job.duration)]
    return ["-t", _seconds(job.trim_start + job.duration)]


def video_filter(
    job: SegmentJob, settings: EncodeSettings, frames: int, index: int = 0, out: str = "v"
) -> str:
    """Constant frame rate, fitted into the frame with black bars, exactly `frames` frames:
    input `index`'s video to the label `out`.

    `fps=...:start_time=0` fills a late first frame; `tpad` clones the last frame forever so a
    slightly short source still reaches `frames`; `trim` ends the stream there. Captions to
    burn in (`job.captions`, an ASS file) are drawn on the fitted frame.
    """
    fps = _rate(settings.fps)
    if job.width > 0 and job.height > 0:
        w, h, x, y = fit_rect(job.width, job.height, settings.width, settings.height, job.sar)
        scale = f"scale={w}:{h}"
        pad = f"pad={settings.width}:{settings.height}:{x}:{y}:color=black"
    else:
        # Unknown source size: square the pixels, then let the scaler fit the frames.
        scale = (
            "scale='trunc(iw*sar/2)*2':ih,setsar=1,"
            f"scale={settings.width}:{settings.height}"
            ":force_original_aspect_ratio=decrease:force_divisible_by=2"
        )
        pad = f"pad={settings.width}:{settings.height}:(ow-iw)/2:(oh-ih)/2:color=black"
    # An interlaced source is deinterlaced first, one frame per frame (bob would double it).
    head = [] if job.indexed else [f"trim={_span(job)}", "setpts=PTS-STARTPTS"]
    if job.interlaced:  # deinterlaced first, one frame per frame (bob would double it)
        head.append("bwdif=mode=send_frame:deint=all")
    return (
        ",".join(
            [
                f"[{index}:v:0]" + ",".join([*head, f"fps={fps}:start_time=0"]),
                scale,
                "setsar=1",
                pad,
                "format=yuv420p",
                "tpad=stop=-1:stop_mode=clone",
                f"trim=end_frame={frames}",
                *burn_in(job.captions),
            ]
        )
        + f"[{out}]"
    )


def burn_in(captions: Path | None) -> list[str]:
    """The filter drawing an ASS captions file (none without one), with the font shipped by
    Debian's fonts-dejavu-core; the path is escaped for the filter graph (`filter_path`)."""
    if captions is None:
        return []
    return [f"ass=filename={filter_path(captions)}:fontsdir={filter_path(FONT_DIR)}"]


def audio_filter(
    job: SegmentJob, settings: EncodeSettings, samples: int, index: int = 0, out: str = "a"
) -> str:
    """Exactly `samples` samples of s16 stereo at the output rate: input `index`'s audio to
    the label `out`.

    Source audio is resampled (mono upmixed, 5.1 downmixed); `first_pts=0` pads a late start
    with silence, `apad` + `atrim` pad or cut the end. A silent clip gets `anullsrc`.
    """
    rate = settings.audio_rate
    fmt = f"aformat=sample_fmts=s16:sample_rates={rate}:channel_layouts=stereo"
    if job.has_audio:
        cut = [] if job.indexed else [f"atrim={_span(job)}", "asetpts=PTS-STARTPTS"]
        resample = ",".join([*cut, f"aresample={rate}:first_pts=0", *_level(job)])
        head = [f"[{index}:a:0]{resample}", fmt, f"apad=whole_len={samples}"]
    else:
        head = [f"anullsrc=r={rate}:cl=stereo", fmt]
    return ",".join([*head, f"atrim=end_sample={samples}[{out}]"])


def _wav_output(audio_out: Path, settings: EncodeSettings, label: str = "[a]") -> list[str]:
    """The audio segment: the graph's `label` as 16-bit stereo PCM WAV."""
    return [
        "-map",
        label,
        "-c:a",
        "pcm_s16le",
        "-ar",
        str(settings.audio_rate),
        "-ac",
        "2",
        "-map_metadata",
        "-1",
        "-f",
        "wav",
        _url(audio_out),
    ]


@dataclass(frozen=True)
class TransitionOut:
    """How a segment ends when a transition follows it: its last frames blend (`kind`,
    commands.TRANSITIONS) with `into`, the first frames of the next clip's span, as many as
    the transition lasts. The next clip's own segment starts after them."""

    kind: str
    into: SegmentJob


def segment_argv(
    job: SegmentJob,
    settings: EncodeSettings,
    out: TransitionOut | None = None,
) -> list[str]:
    """One FFmpeg run: the span's video segment (in the format's segment container), exactly
    `frame_count(job.duration, fps)` frames; its sound is `segment_audio_argv`'s.

    With `out`, the segment's last frames are the transition into the next clip: the
    pictures blend (`crossfade`) or go through black (`fade`); the next clip's side is
    fitted and timed as its own segment is, so the seams on either side are invisible.
    Captions (`job.captions`) are drawn over the blend.
    """
    frames = frame_count(job.duration, settings.fps)
    inputs = _clip_input(job.source, *_seek(job), max_pixels=_segment_max_pixels(job))
    if out is None:
        graph = video_filter(job, settings, frames)
    else:
        b = replace(out.into, captions=None)
        overlap = frame_count(b.duration, settings.fps)
        graph = ";".join(
            [
                video_filter(replace(job, captions=None), settings, frames, 0, "va"),
                video_filter(b, settings, overlap, 1, "vb"),
                ",".join(
                    [_blend(out.kind, overlap, settings.fps, frames - overlap),
                     *burn_in(job.captions)]
                ) + "[v]",
            ]
        )  # fmt: skip
        inputs += _clip_input(b.source, *_seek(b), max_pixels=_segment_max_pixels(b))
    return [
        "ffmpeg",
        *_COMMON_FLAGS,
        *_PROGRESS_FLAGS,
        *inputs,
        *_threads("-filter_complex_threads", settings.threads),
        "-filter_complex",
        graph,
        "-map",
        "[v]",
        "-frames:v",
        str(frames),
        *video_encoder_args(settings),
        "-map_metadata",
        "-1",
        "-f",
        settings.format.segments.muxer,
        _url(job.video_out),
    ]


def segment_audio_argv(
    job: SegmentJob,
    settings: EncodeSettings,
    out: TransitionOut | None = None,
) -> list[str]:
    """One FFmpeg run: the span's audio segment, a PCM WAV lasting exactly as long as its
    video segment (`frame_count(job.duration, fps)` frames, to the nearest sample), the
    clip's loudness correction applied; with `out`, its last samples crossfade into the
    next clip's first ones, corrected as that clip is. Only the audio is decoded."""
    frames = frame_count(job.duration, settings.fps)
    samples = audio_sample_count(frames, settings)
    inputs = _clip_input(job.source, *_seek(job), max_pixels=_segment_max_pixels(job))
    if out is None:
        graph = audio_filter(job, settings, samples)
    else:
        b = out.into
        overlap = audio_sample_count(frame_count(b.duration, settings.fps), settings)
        graph = ";".join(
            [
                audio_filter(job, settings, samples, 0, "a0"),
                audio_filter(b, settings, overlap, 1, "a1"),
                f"[a0][a1]acrossfade=ns={overlap}:c1=tri:c2=tri[a]",
            ]
        )
        inputs += _clip_input(b.source, *_seek(b), max_pixels=_segment_max_pixels(b))
    return [
        "ffmpeg",
        *_COMMON_FLAGS,
        *_PROGRESS_FLAGS,
        *inputs,
        "-filter_complex",
        graph,
        *_wav_output(job.audio_out, settings),
    ]


# Transitions that blend one clip into the next ("cut", the default, blends nothing).
TRANSITIONS = ("crossfade", "fade")


def _blend(kind: str, frames: int, fps: Fraction, before: int = 0) -> str:
    """The pictures of `[va]` (`before` + `frames` frames) turning into `[vb]` (`frames`)
    over its last `frames`: a crossfade, or a fade to black over the first half and from
    black over the second, black at the middle (xfade's own `fadeblack` is darkest a fifth
    of the way in). The result is as long as `[va]`.

    The crossfade is `[vb]` laid over `[va]` from frame `before` on, its opacity rising a
    step a frame (alpha `fade`, `overlay`): the same pictures as xfade's `fade` (51-53 dB
    apart, rounding) for a fraction of the cost, as FFmpeg 5.1's xfade blends in plain C
    (0.4 CPU-s for 12 frames of 1080p; README, Performance, "Finishing features"). Both
    sides come out of `fps`, so a time base of one frame: `+before` is `before` frames."""
    total = before + frames
    if kind == "crossfade":
        return (
            f"[vb]format=yuva420p,fade=t=in:s=0:n={frames}:alpha=1,setpts=PTS+{before}[vo];"
            f"[va][vo]overlay=eof_action=pass:format=yuv420,trim=end_frame={total}"
        )
    if kind == "fade":
        half = frames // 2
        return (
            f"[va]trim=end_frame={before + half},fade=t=out:s={before}:n={half}[fa];"
            f"[vb]trim=start_frame={half},setpts=PTS-STARTPTS,fade=t=in:s=0:n={frames - half}[fb];"
            "[fa][fb]concat=n=2:v=1:a=0"
        )
    raise ValueError(f"unknown transition {kind!r}; allowed: {', '.join(TRANSITIONS)}")


def video_encoder_args(settings: EncodeSettings) -> list[str]:
    """The format's video encoder at its CRF under the bitrate cap, yuv420p."""
    return settings.format.video.args(settings)


def copy_segment_argv(job: SegmentJob, settings: EncodeSettings) -> list[str]:
    """The stream-copy variant of `segment_argv` for a clip that already is what the export
    needs (H.264 yuv420p at the target size and rate, used whole): its video packets are
    copied untouched (its sound is made by `segment_audio_argv`, as for any segment)."""
    return [
        "ffmpeg",
        *_COMMON_FLAGS,
        *_PROGRESS_FLAGS,
        *_clip_input(job.source, max_pixels=_segment_max_pixels(job)),
        "-map",
        "0:v:0",
        "-c:v",
        "copy",
        "-an",
        "-map_metadata",
        "-1",
        "-f",
        settings.format.segments.muxer,
        _url(job.video_out),
    ]


def concat_list(paths: list[Path]) -> str:
    """A concat demuxer list naming `paths` by basename; write it next to them.

    Plain relative names are what the demuxer's default safe mode accepts, so every path must
    be in one directory and its name must use only letters, digits, '.', '_' and '-' (not
    starting with '.'); anything else raises ValueError.
    """
    if not paths:
        raise ValueError("concat list needs at least one file")
    parents = {path.parent for path in paths}
    if len(parents) != 1:
        raise ValueError(f"concat list files must share one directory, got {sorted(parents)}")
    lines = ["ffconcat version 1.0"]
    for path in paths:
        if not _SAFE_NAME.fullmatch(path.name):
            raise ValueError(f"unsafe file name for a concat list: {path.name!r}")
        lines.append(f"file '{path.name}'")
    return "\n".join(lines) + "\n"


def audio_track_argv(
    audio_list: Path,
    output: Path,
    settings: EncodeSettings,
    *,
    music: tuple[list[str], str] | None = None,
) -> list[str]:
    """The audio track: the WAV segments of `audio_list` joined and encoded once with the
    format's audio encoder into its audio track file, which the join then copies.

    `music` is a soundtrack as (its input options, the graph mixing it as input 1 under the
    clips' audio, input 0, into `[a]`: `soundtrack.mix_filter`)."""
    audio = settings.format.audio
    inputs = _input(audio_list, AUDIO_LIST_FORMATS, "-f", "concat")
    maps = ["-map", "0:a:0"]
    if music:
        inputs += music[0]
        maps = ["-filter_complex", music[1], "-map", "[a]"]
    return [
        "ffmpeg",
        *_COMMON_FLAGS,
        *_PROGRESS_FLAGS,
        *inputs,
        *maps,
        "-c:a",
        audio.encoder,
        "-b:a",
        str(settings.audio_bitrate),
        "-ar",
        str(settings.audio_rate),
        "-ac",
        "2",
        "-map_metadata",
        "-1",
        "-f",
        audio.track.muxer,
        _url(output),
    ]


def concat_argv(
    video_list: Path,
    audio_track: Path,
    output: Path,
    settings: EncodeSettings,
    *,
    subtitles: Path | None = None,
) -> list[str]:
    """Join the segments: the video segments and the audio track (`audio_track_argv`), both
    by stream copy, into the format's file with its muxer options (e.g. the index at the
    front, so a player can start before the whole file has arrived). `subtitles` is a soft
    caption track: a file of the format's caption document (`SoftSubtitles`)."""
    target = settings.format
    inputs = [
        *_input(video_list, f"concat,{target.segments.demuxers}", "-f", "concat"),
        *_input(audio_track, target.audio.track.demuxers),
    ]
    maps = ["-map", "0:v:0", "-map", "1:a:0"]
    if subtitles:
        soft = target.subtitles
        inputs += _input(subtitles, soft.demuxer, "-f", soft.demuxer)
        maps += ["-map", "2:s:0", "-c:s", soft.codec]
    return [
        "ffmpeg",
        *_COMMON_FLAGS,
        *_PROGRESS_FLAGS,
        *inputs,
        *maps,
        "-c:v",
        "copy",
        "-c:a",
        "copy",
        "-map_metadata",
        "-1",
        *target.muxer_args,
        "-f",
        target.file.muxer,
        _url(output),
    ]


def _ffprobe_clip(max_pixels: int) -> list[str]:
    """FFprobe opening a clip as FFmpeg does: local file, our containers, bounded decoders
    (ffprobe opens the decoders too)."""
    return [
        "ffprobe",
        "-hide_banner",
        "-loglevel",
        "error",
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        CLIP_FORMATS,
        *decode_limits(max_pixels),
    ]


def probe_argv(path: Path, max_pixels: int = MAX_INPUT_PIXELS) -> list[str]:
    """FFprobe's JSON description of a clip's container and streams."""
    return [
        *_ffprobe_clip(max_pixels),
        "-show_format",
        "-show_streams",
        "-show_data_hash",
        "CRC32",  # extradata_hash: equal H.264 headers allow joining clips by stream copy
        "-of",
        "json",
        _url(path),
    ]


def decode_check_argv(
    path: Path, seconds: float = 0.2, max_pixels: int = MAX_INPUT_PIXELS
) -> list[str]:
    """Decode the first `seconds` of video (and audio, if any); `-xerror` stops at an error.
    The first few frames prove the streams decode: a whole second of 1080p cost 0.5-1 s of
    CPU per clip, a tenth of a minute-long export's overhead (bench_corpus)."""
    return [
        "ffmpeg",
        *_COMMON_FLAGS,
        "-xerror",
        *_clip_input(path, "-t", _seconds(seconds), max_pixels=max_pixels),
        "-map",
        "0:v:0",
        "-map",
        "0:a:0?",
        "-f",
        "null",
        "-",
    ]


def packets_argv(path: Path, max_pixels: int = MAX_INPUT_PIXELS) -> list[str]:
    """Every packet of every stream (stream type, time and duration, one CSV line each:
    "video,1.000000,0.960000,0.040000"), read by demuxing only: how much of the clip is
    really in the file, whatever its header declares."""
    return [
        *_ffprobe_clip(max_pixels),
        "-show_entries",
        "packet=codec_type,pts_time,dts_time,duration_time",
        "-of",
        "csv=p=0",
        _url(path),
    ]
