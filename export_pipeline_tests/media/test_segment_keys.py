"""Segment-cache keys are built from normalized values: short, and equal for equal spans."""

from export_pipeline.media.segment import segment_key
from export_pipeline_tests.media.test_copy_path import SETTINGS, clip


def test_a_duration_past_the_end_is_the_same_segment_as_to_the_end():
    to_end = segment_key(clip(), SETTINGS, copy=False)
    assert segment_key(clip(duration=1e308), SETTINGS, copy=False) == to_end
    assert segment_key(clip(trim=1.0, duration=4.0), SETTINGS, copy=False) == segment_key(
        clip(trim=1.0), SETTINGS, copy=False
    )


def test_keys_stay_short_whatever_the_request_says():
    # 1e308 once became a 300-digit file name ("File name too long", retried 4 times).
    for trim, duration in [(0.0, 1e308), (4.999, 1e308), (0.0, 4.9999999), (0.0, 1e-9)]:
        key = segment_key(clip(trim=trim, duration=duration), SETTINGS, copy=False)
        assert len(key) < 64, key
    assert segment_key(clip(duration=2.5), SETTINGS, copy=False) != segment_key(
        clip(), SETTINGS, copy=False
    )
