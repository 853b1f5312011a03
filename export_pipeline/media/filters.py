"""The filter graphs of a segment: a clip's span as exactly so many frames fitted into the
output frame (with captions burned in), its sound as exactly so many samples (with its
loudness correction), and the blend of a transition into the next clip."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from export_pipeline.media.captions import FONT_DIR, filter_path
from export_pipeline.media.clip import Clip, span_trim
from export_pipeline.media.colour import colour_decision, colour_filters
from export_pipeline.media.encoding import EncodeSettings
from export_pipeline.media.frame import fit_rect
from export_pipeline.media.inputs import as_rate
from export_pipeline.media.loudness import Level, level_filters

# Transitions that blend one clip into the next ("cut", the default, blends nothing).
TRANSITIONS = ("crossfade", "fade")


def _fit(clip: Clip, settings: EncodeSettings) -> tuple[str, str]:
    """The scale and pad filters that fit the clip into the frame with black bars."""
    width, height = settings.width, settings.height
    info = clip.info
    if info.width > 0 and info.height > 0:
        w, h, x, y = fit_rect(info.width, info.height, width, height, info.sar)
        return f"scale={w}:{h}", f"pad={width}:{height}:{x}:{y}:color=black"
    # Unknown source size: square the pixels, then let the scaler fit the frames.
    scale = (
        f"scale='trunc(iw*sar/2)*2':ih,setsar=1,scale={width}:{height}"
        ":force_original_aspect_ratio=decrease:force_divisible_by=2"
    )
    return scale, f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black"


def video_filter(
    clip: Clip,
    settings: EncodeSettings,
    frames: int,
    index: int = 0,
    out: str = "v",
    captions: Path | None = None,
) -> str:
    """Constant frame rate, fitted into the frame with black bars, exactly `frames` frames:
    input `index`'s video to the label `out`.

    `fps=...:start_time=0` fills a late first frame; `tpad` clones the last frame forever so a
    slightly short source still reaches `frames`; `trim` ends the stream there. The clip's
    pictures are brought to SDR BT.709 (`media.colour`) before they are fitted. `captions`
    (an ASS file) are drawn on the fitted frame.
    """
    trim = span_trim(clip)
    head = [f"trim={trim}", "setpts=PTS-STARTPTS"] if trim else []
    if clip.info.interlaced:  # deinterlaced first, one frame per frame (bob would double it)
        head.append("bwdif=mode=send_frame:deint=all")
    scale, pad = _fit(clip, settings)
    chain = [
        f"[{index}:v:0]" + ",".join([*head, f"fps={as_rate(settings.fps)}:start_time=0"]),
        *colour_filters(colour_decision(clip.info)),
        scale,
        "setsar=1",
        pad,
        "format=yuv420p",
        "tpad=stop=-1:stop_mode=clone",
        f"trim=end_frame={frames}",
        *burn_in(captions),
    ]
    return ",".join(chain) + f"[{out}]"


def burn_in(captions: Path | None) -> list[str]:
    """The filter drawing an ASS captions file (none without one), with the font shipped by
    Debian's fonts-dejavu-core; the path is escaped for the filter graph (`filter_path`)."""
    if captions is None:
        return []
    return [f"ass=filename={filter_path(captions)}:fontsdir={filter_path(FONT_DIR)}"]


def audio_filter(
    clip: Clip,
    settings: EncodeSettings,
    samples: int,
    level: Level,
    index: int = 0,
    out: str = "a",
) -> str:
    """Exactly `samples` samples of s16 stereo at the output rate: input `index`'s audio,
    corrected by `level`, to the label `out`.

    Source audio is resampled (mono upmixed, 5.1 downmixed); `first_pts=0` pads a late start
    with silence, `apad` + `atrim` pad or cut the end. A silent clip gets `anullsrc`.
    """
    rate = settings.audio_rate
    fmt = f"aformat=sample_fmts=s16:sample_rates={rate}:channel_layouts=stereo"
    if clip.info.has_audio:
        trim = span_trim(clip)
        cut = [f"atrim={trim}", "asetpts=PTS-STARTPTS"] if trim else []
        resample = ",".join([*cut, f"aresample={rate}:first_pts=0", *level_filters(level)])
        head = [f"[{index}:a:0]{resample}", fmt, f"apad=whole_len={samples}"]
    else:
        head = [f"anullsrc=r={rate}:cl=stereo", fmt]
    return ",".join([*head, f"atrim=end_sample={samples}[{out}]"])


def blend(kind: str, frames: int, fps: Fraction, before: int = 0) -> str:
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
