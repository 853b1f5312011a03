"""How long an export has left: what the app shows a waiting creator (`eta_s`).

Pure functions. Before a run starts, the estimate comes from recent completed exports of
the same resolution, format and a similar length (`prior_seconds`); without any, from the
exports of other resolutions and formats, scaled by what each costs (`COST`); without any
history at all, from the built-in rate measured by the benchmarks (`BUILTIN_RATE`), so a
queued or running row always has one. During the run it comes
from the pace of the step that is running (`Step`): the bar is cut into one band per step
(download, encode, publish), each about the share of the time that step takes, and the
step's own progress per second says how long the rest of it takes, blended with the prior
until a fifth of the step is done; the steps after it are their share of the prior
(`remaining_seconds`). Unknown is `None`, never a guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

from export_pipeline.domain.clock import as_utc
from export_pipeline.domain.formats import DEFAULT_FORMAT, FORMATS

# Exports whose length is within this factor of the request's count as "similar".
SIMILAR_LENGTH = 2.0
# Below this much progress the run's own pace says nothing yet (mostly startup).
MIN_MEASURED_FRACTION = 0.05
# Once this much of a step is done, its own pace alone says how long the rest of it takes:
# footage two exports of the same length share little else (a cartoon encodes four times
# as fast as film grain), so the prior only bridges the step's first moments.
STEP_TRUSTED_FRACTION = 0.2


# The prior before any history, measured by bench_prior (export_pipeline_tests/benchmarks):
# processing seconds per second of 1080p H.264 video on a 2-vCPU worker (the median over the
# corpus' kinds of footage), the seconds every export spends besides, and the cost of each
# resolution relative to 1080p (a format's cost is its profile's `video.cost`).
BUILTIN_RATE = 1.05
BUILTIN_FIXED_S = 2.0
RESOLUTION_COST = {"720p": 0.64, "1080p": 1.0, "1440p": 1.6, "4k": 2.7}
# A clip that plays to its end is this long until it is downloaded: the usual length of an
# AI video model's clip.
ASSUMED_CLIP_S = 5.0


def cost(resolution: str, format: str) -> float:
    """What an export of `resolution` and `format` costs per second of video, relative to
    1080p H.264 (the format's from its profile; 1.0 for a name neither knows)."""
    profile = FORMATS.get(format)
    return RESOLUTION_COST.get(resolution, 1.0) * (profile.video.cost if profile else 1.0)


@dataclass(frozen=True)
class Step:
    """The step a run is in: its band of the progress bar (percent), how much of the step
    is done (0..1) and for how long it has run; `first` is (fraction, seconds ago) of its
    first report of work done, so the pace leaves out what the step does before any
    (starting, fetching and measuring its inputs)."""

    low: int
    high: int
    fraction: float
    elapsed_s: float
    first: tuple[float, float] | None = None


@dataclass(frozen=True)
class Finished:
    """One completed export of the history: its resolution, output length, processing time
    and format (a VP9 export takes several times as long as an H.264 one)."""

    resolution: str
    duration_s: float | None
    seconds: float
    format: str = DEFAULT_FORMAT


def history_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[Finished]:
    """Completed request rows (resolution, output_duration_s, processing_started_at,
    completed_at, format) as `Finished`; rows without both timestamps are left out."""
    history = []
    for row in rows:
        start, end = row.get("processing_started_at"), row.get("completed_at")
        if start is None or end is None:
            continue
        seconds = (as_utc(end) - as_utc(start)).total_seconds()
        if seconds > 0:
            history.append(
                Finished(
                    row["resolution"],
                    row.get("output_duration_s"),
                    seconds,
                    row.get("format") or DEFAULT_FORMAT,
                )
            )
    return history


def requested_length(durations: Iterable[float | None]) -> float | None:
    """The total length the clips ask for, or None if a clip plays "to its end" (its
    length is only known once it is downloaded)."""
    total = 0.0
    for duration in durations:
        if duration is None:
            return None
        total += duration
    return total


def expected_length(durations: Iterable[float | None]) -> float:
    """The total length, a clip that plays to its end counted as `ASSUMED_CLIP_S`."""
    return sum(ASSUMED_CLIP_S if d is None else d for d in durations)


def builtin_prior(resolution: str, format: str, length_s: float) -> float:
    """Processing time of an export before there is any history: the benchmarks' rate."""
    return BUILTIN_FIXED_S + BUILTIN_RATE * cost(resolution, format) * max(0.0, length_s)


def prior_seconds(
    history: Sequence[Finished],
    resolution: str,
    length_s: float | None,
    format: str = DEFAULT_FORMAT,
) -> float:
    """Expected processing time of an export of `resolution`, `format` and `length_s`
    seconds (None: unknown, counted as one clip): the median seconds-per-second of
    similar-length exports of that resolution and format (of all of them if none is similar)
    times the length. Without history of that resolution and format, the other exports'
    rates scaled by cost (they say how fast this machine is); without any history, the
    built-in rate. An export without a recorded length counts by its total time."""
    length = ASSUMED_CLIP_S if length_s is None else length_s
    same = [h for h in history if (h.resolution, h.format) == (resolution, format)]
    pool = same or list(history)
    if not pool:
        return builtin_prior(resolution, format, length)
    want = cost(resolution, format)
    scale = {id(h): want / cost(h.resolution, h.format) for h in pool}
    rated = [h for h in pool if h.duration_s]
    if length > 0 and rated:
        similar = [
            h for h in rated if 1 / SIMILAR_LENGTH <= h.duration_s / length <= SIMILAR_LENGTH
        ]
        return median(h.seconds / h.duration_s * scale[id(h)] for h in similar or rated) * length
    return median(h.seconds * scale[id(h)] for h in pool)


def prior_for(history: Sequence[Finished], spec: Any) -> float:
    """`prior_seconds` for an export request (domain.request.ExportSpec)."""
    length = expected_length(c.duration for c in spec.clips)
    return prior_seconds(history, spec.resolution, length, spec.format)


def remaining_seconds(
    fraction: float, elapsed_s: float, prior_s: float | None = None, step: Step | None = None
) -> float | None:
    """Seconds left of a run that has done `fraction` (0..1) of its work in `elapsed_s`,
    `step` being the step it is in (None: the run's pace as a whole, `_run_pace`)."""
    f = max(0.0, min(1.0, fraction))
    if f >= 1.0:
        return 0.0
    if step is None or step.high <= step.low:
        return _run_pace(f, elapsed_s, prior_s)
    share, later_share = (step.high - step.low) / 100, (100 - step.high) / 100
    g = max(0.0, min(1.0, step.fraction))
    elapsed = max(0.0, step.elapsed_s)
    g0, since = step.first if step.first and step.first[0] < g else (0.0, elapsed)
    measured = since * (1 - g) / (g - g0) if g > g0 and since > 0 else None
    if prior_s is None:
        if measured is None:
            return None
        # Without history the bands are the best guess of the later steps' share.
        return measured + (elapsed + measured) * later_share / share
    expected = max(prior_s * share - elapsed, prior_s * share * (1 - g))
    if measured is None:
        return expected + prior_s * later_share
    weight = min(1.0, g / STEP_TRUSTED_FRACTION)
    this_step = weight * measured + (1 - weight) * expected
    if share < later_share:  # a short step (the downloads) says nothing of the encode
        return this_step + prior_s * later_share
    # The steps after the bulk of the work scale with its pace (a cartoon's small video
    # uploads sooner than film grain's), once that pace is trusted.
    later = (elapsed + measured) * later_share / share
    return this_step + weight * later + (1 - weight) * prior_s * later_share


def _run_pace(f: float, elapsed_s: float, prior_s: float | None) -> float | None:
    """Measured: elapsed x (1 - f) / f, the run's own pace. Prior: what the history expects
    to be left, `prior - elapsed`, but never less than the prior's share of the work left
    (`prior x (1 - f)`: a run slower than usual is not nearly done). The two are blended
    with the measured weight growing with progress (weight f)."""
    elapsed_s = max(0.0, elapsed_s)
    measured = elapsed_s * (1 - f) / f if f >= MIN_MEASURED_FRACTION and elapsed_s > 0 else None
    expected = max(prior_s - elapsed_s, prior_s * (1 - f)) if prior_s is not None else None
    if measured is None:
        return expected
    if expected is None:
        return measured
    return f * measured + (1 - f) * expected


def eta_seconds(remaining_s: float | None) -> int | None:
    """The `eta_s` column: whole seconds, never negative, None when unknown."""
    return None if remaining_s is None else max(0, round(remaining_s))
