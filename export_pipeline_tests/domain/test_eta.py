from datetime import UTC, datetime, timedelta

import pytest

from export_pipeline.domain import eta
from export_pipeline.domain.eta import Finished
from export_pipeline.domain.formats import FORMATS
from export_pipeline.domain.target import RESOLUTIONS

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_history_from_rows_takes_processing_time_and_skips_unfinished_rows():
    rows = [
        {
            "resolution": "1080p",
            "output_duration_s": 60.0,
            "processing_started_at": T0,
            "completed_at": T0 + timedelta(seconds=80),
        },
        # SQLite gives naive UTC timestamps
        {
            "resolution": "720p",
            "output_duration_s": 10.0,
            "processing_started_at": T0.replace(tzinfo=None),
            "completed_at": T0 + timedelta(seconds=12),
        },
        {"resolution": "720p", "output_duration_s": 5.0, "processing_started_at": T0},
    ]
    assert eta.history_from_rows(rows) == [
        Finished("1080p", 60.0, 80.0),
        Finished("720p", 10.0, 12.0),
    ]


@pytest.mark.parametrize(
    ("durations", "expected"),
    [([1.0, 2.5], 3.5), ([], 0.0), ([1.0, None], None)],
)
def test_requested_length_is_unknown_when_a_clip_plays_to_its_end(durations, expected):
    assert eta.requested_length(durations) == expected


HISTORY = [
    Finished("1080p", 60.0, 90.0),  # 1.5 s per second
    Finished("1080p", 50.0, 100.0),  # 2.0
    Finished("1080p", 70.0, 70.0),  # 1.0
    Finished("1080p", 10.0, 30.0),  # 3.0: short, not similar to 60 s
    Finished("4k", 60.0, 600.0),
]


@pytest.mark.parametrize(
    ("resolution", "length", "expected"),
    [
        ("1080p", 60.0, 90.0),  # median 1.5 s/s of the three similar ones x 60 s
        ("1080p", 8.0, 24.0),  # only the 10 s export is similar: 3 s/s
        ("1080p", 400.0, 400 * 1.75),  # none similar: median rate of the resolution
        ("1080p", None, 3.0 * eta.ASSUMED_CLIP_S),  # unknown length: one clip's
        ("4k", 60.0, 600.0),
    ],
)
def test_prior_from_same_resolution_and_similar_length(resolution, length, expected):
    assert eta.prior_seconds(HISTORY, resolution, length) == pytest.approx(expected)


def test_without_history_of_its_kind_the_others_are_scaled_by_cost():
    """No 720p export yet: the 1080p and 4k ones say how fast this machine is, each scaled
    by what 720p costs relative to it."""
    scale = {r: eta.cost("720p", "mp4") / eta.cost(r, "mp4") for r in ("1080p", "4k")}
    similar = [1.5 * scale["1080p"], 2.0 * scale["1080p"], 1.0 * scale["1080p"], 10 * scale["4k"]]
    similar.sort()
    expected = (similar[1] + similar[2]) / 2 * 60
    assert eta.prior_seconds(HISTORY, "720p", 60.0) == pytest.approx(expected)
    assert eta.prior_seconds(HISTORY, "720p", 60.0) < eta.prior_seconds(HISTORY, "1080p", 60.0)


def test_without_any_history_the_builtin_rate_gives_every_kind_an_estimate():
    """A fresh install: a queued 720p WebM export has an estimate all the same."""
    for resolution in ("720p", "1080p", "1440p", "4k"):
        for format in ("mp4", "mp4-hevc", "webm"):
            prior = eta.prior_seconds([], resolution, 24.0, format)
            assert prior == pytest.approx(
                eta.BUILTIN_FIXED_S + eta.BUILTIN_RATE * eta.cost(resolution, format) * 24
            )
    assert eta.prior_seconds([], "720p", 24.0, "webm") > eta.prior_seconds([], "720p", 24.0)
    assert eta.prior_seconds([], "4k", 24.0) > eta.prior_seconds([], "1080p", 24.0)
    assert eta.prior_seconds([], "1080p", None) == eta.builtin_prior("1080p", "mp4", 5.0)
    assert set(eta.RESOLUTION_COST) == set(RESOLUTIONS)
    assert [eta.cost("1080p", name) for name in FORMATS] == [p.video.cost for p in FORMATS.values()]


def test_a_clip_that_plays_to_its_end_counts_as_a_usual_clip():
    assert eta.expected_length([4.0, None, 2.5]) == 6.5 + eta.ASSUMED_CLIP_S


def test_prior_falls_back_to_the_median_time_when_no_export_has_a_length():
    history = [Finished("720p", None, 10.0), Finished("720p", None, 20.0)]
    assert eta.prior_seconds(history, "720p", 30.0) == 15.0


@pytest.mark.parametrize(
    ("fraction", "elapsed", "prior", "expected"),
    [
        (0.0, 0.0, None, None),  # nothing known yet
        (0.0, 0.0, 100.0, 100.0),  # the prior alone
        (0.02, 3.0, None, None),  # too little progress to measure
        (0.5, 30.0, None, 30.0),  # measured pace alone
        (1.0, 30.0, 100.0, 0.0),
        # on the prior's pace: both agree
        (0.5, 50.0, 100.0, 50.0),
        # slower than usual: prior - elapsed would say 10 s; its share of the work left wins
        (0.5, 90.0, 100.0, 0.5 * 90.0 + 0.5 * 50.0),
        # fast download at 25 %: the measured 6 s weighs a quarter, the prior the rest
        (0.25, 2.0, 23.0, 0.25 * 6.0 + 0.75 * 21.0),
    ],
)
def test_remaining_seconds_blends_the_runs_pace_with_the_prior(fraction, elapsed, prior, expected):
    got = eta.remaining_seconds(fraction, elapsed, prior)
    assert got == (None if expected is None else pytest.approx(expected))


def test_remaining_falls_as_a_steady_run_progresses():
    # a run 20 % slower than the prior expects, at a steady pace
    total, prior = 120.0, 100.0
    left = [eta.remaining_seconds(f, f * total, prior) for f in (0.1, 0.25, 0.5, 0.75, 0.9)]
    assert left == sorted(left, reverse=True)
    actual = [(1 - f) * total for f in (0.25, 0.5, 0.75)]
    for got, want in zip(left[1:4], actual, strict=True):
        assert abs(got - want) <= 0.25 * want


@pytest.mark.parametrize(("seconds", "expected"), [(None, None), (-3.0, 0), (0.4, 0), (12.6, 13)])
def test_eta_seconds_is_a_non_negative_integer_or_none(seconds, expected):
    assert eta.eta_seconds(seconds) == expected


def test_the_prior_comes_from_exports_of_the_same_format():
    history = [
        Finished("1080p", 60.0, 60.0, "mp4"),  # 1 s per second
        Finished("1080p", 60.0, 240.0, "webm"),  # VP9: 4 s per second
    ]
    assert eta.prior_seconds(history, "1080p", 30.0, "webm") == 120.0
    assert eta.prior_seconds(history, "1080p", 30.0, "mp4") == 30.0
    # No HEVC export yet: the others scaled by what HEVC costs relative to each.
    rates = sorted(
        [
            1.0 * eta.cost("1080p", "mp4-hevc"),
            4.0 * eta.cost("1080p", "mp4-hevc") / eta.cost("1080p", "webm"),
        ]
    )
    assert eta.prior_seconds(history, "1080p", 30.0, "mp4-hevc") == pytest.approx(
        sum(rates) / 2 * 30
    )


def test_history_rows_carry_their_format_and_null_reads_as_mp4():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {"resolution": "720p", "output_duration_s": 4.0, "format": "webm",
         "processing_started_at": start, "completed_at": start + timedelta(seconds=8)},
        {"resolution": "720p", "output_duration_s": 4.0, "format": None,
         "processing_started_at": start, "completed_at": start + timedelta(seconds=2)},
    ]  # fmt: skip
    assert [h.format for h in eta.history_from_rows(rows)] == ["webm", "mp4"]


def step(low, high, fraction, elapsed):
    return eta.Step(low, high, fraction, elapsed)


@pytest.mark.parametrize(
    ("fraction", "prior", "current", "expected"),
    [
        # nothing of the step done yet: its share of the prior, and the later steps' share
        (0.10, 100.0, step(10, 95, 0.0, 0.5), 85.0 + 5.0),
        # a fifth of the step done: its own pace alone (12 s for a fifth: 48 s to go), and
        # the later steps at that pace too (5/85 of the step's 60 s)
        (0.27, 100.0, step(10, 95, 0.2, 12.0), 48.0 + 60.0 * 5 / 85),
        # a tenth: half its pace (18 s to go), half the prior's share (85 - 2 = 83 s); the
        # later steps half at its pace, half at the prior's
        (0.185, 100.0, step(10, 95, 0.1, 2.0),
         0.5 * 18.0 + 0.5 * 83.0 + 0.5 * 20.0 * 5 / 85 + 0.5 * 5.0),
        # no history: the same
        (0.27, None, step(10, 95, 0.2, 12.0), 48.0 + 60.0 * 5 / 85),
        (0.10, None, step(10, 95, 0.0, 0.0), None),
        # 6 s of set-up before its first report (a tenth done, 4 s ago): the pace since
        # then, 4 s per fifth, leaves 14 s
        (0.355, 100.0, eta.Step(10, 95, 0.3, 10.0, (0.1, 4.0)), 14.0 + 24.0 * 5 / 85),
        # the downloads, half done in 2 s: 2 s more, then what the history expects of the
        # encode and the publishing (their 90 % of the prior), not 9x the downloads' pace
        (0.05, 100.0, step(0, 10, 0.5, 2.0), 2.0 + 90.0),
        # the last step: nothing after it
        (0.975, 100.0, step(95, 100, 0.5, 1.0), 1.0),
        (1.0, 100.0, step(95, 100, 1.0, 2.0), 0.0),
    ],
)  # fmt: skip
def test_the_running_steps_pace_says_how_long_the_rest_takes(fraction, prior, current, expected):
    got = eta.remaining_seconds(fraction, 30.0, prior, current)
    assert got == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize("slowdown", [0.5, 1.0, 2.0])
def test_footage_slower_or_faster_than_the_history_is_caught_within_a_fifth_of_the_encode(
    slowdown,
):
    # The history expects 60 s (download 6, encode 51, publish 3 = the bands); this footage
    # encodes `slowdown` times as slowly, at a steady pace, and publishes in the same 3 s.
    prior, download, publish = 60.0, 6.0, 3.0
    encode = 51.0 * slowdown
    for g in (0.2, 0.5, 0.8):
        pct = 10 + 85 * g
        got = eta.remaining_seconds(pct / 100, download + g * encode, prior,
                                    step(10, 95, g, g * encode))  # fmt: skip
        actual = (1 - g) * encode + publish
        assert abs(got - actual) <= 0.25 * actual, (g, got, actual)
