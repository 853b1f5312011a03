import json

import pytest

from export_pipeline.domain.failures import InvalidRequest
from export_pipeline.domain.request import parse_request
from export_pipeline_tests import REPO_ROOT


def row(**overrides):
    base = {
        "id": 7,
        "project_id": "proj",
        "user_id": "user",
        "resolution": "1080p",
        "aspect_ratio": "9:16",
        "quality": "medium",
        "clips": '[{"url": "https://cdn.example/b.mp4", "scene_number": 2, "trim_start": 1.5,'
        ' "duration": 2}, {"url": "https://cdn.example/a.mp4", "scene_number": 1}]',
    }
    return {**base, **overrides}


def test_valid_request_orders_clips_by_scene():
    spec = parse_request(row())
    assert spec.request_id == 7
    assert [c.scene_number for c in spec.ordered_clips] == [1, 2]
    first, second = spec.ordered_clips
    assert (first.trim_start, first.duration, first.position) == (0.0, None, 2)
    assert (second.trim_start, second.duration) == (1.5, 2.0)
    assert second.label == "clip 1 (scene 2)"


def test_clips_may_already_be_decoded():
    spec = parse_request(row(clips=[{"url": "https://x.example/c.mp4"}]))
    assert spec.clips[0].scene_number == 1  # defaults to its position


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"resolution": "8k"}, "resolution '8k' is not supported"),
        ({"aspect_ratio": "21:9"}, "aspect_ratio '21:9' is not supported"),
        ({"quality": "ultra"}, "quality 'ultra' is not supported"),
        ({"user_id": ""}, "user_id is empty"),
        ({"clips": "[]"}, "clips is empty"),
        ({"clips": "{not json"}, "clips is not valid JSON"),
        ({"clips": None}, "clips must be a JSON array"),
        ({"clips": '{"url": "https://x/a.mp4"}'}, "clips must be a JSON array"),
        ({"clips": '["https://x/a.mp4"]'}, "clip 1: must be an object"),
        ({"clips": '[{"url": "ftp://x/a.mp4"}]'}, "clip 1: url must be an http(s) URL"),
        (
            {"clips": '[{"url": "https://x/a.mp4", "trim_start": -1}]'},
            "trim_start must be a number >= 0",
        ),
        ({"clips": '[{"url": "https://x/a.mp4", "duration": 0}]'}, "duration must be a number > 0"),
        (
            {"clips": '[{"url": "https://x/a.mp4", "scene_number": "one"}]'},
            "scene_number must be an integer",
        ),
        (
            {"clips": '[{"url": "https://x/a.mp4", "trim_start": true}]'},
            "trim_start must be a number",
        ),
    ],
)
def test_invalid_requests_say_what_is_wrong(overrides, message):
    with pytest.raises(InvalidRequest) as info:
        parse_request(row(**overrides))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"resolution": ["1080p"]}, "resolution ['1080p'] is not supported"),
        ({"quality": {"a": 1}}, "quality {'a': 1} is not supported"),
        ({"project_id": "p" * 257}, "project_id is 257 characters long; the limit is 256"),
        ({"clips": '[{"url": "https://x/a.mp4", "duration": 1e999}]'}, "clip 1: duration must be"),
        ({"clips": '[{"url": "https://x/a.mp4", "trim_start": 1e308}]'}, "clip 1: trim_start must"),
        ({"clips": '[{"url": "https://x/a.mp4", "duration": ' + "9" * 400 + "}]"}, "duration must"),
        ({"clips": '[{"url": "https://x/a.mp4", "scene_number": 1e3}]'}, "scene_number must"),
        ({"clips": '[{"url": "https://x:99999/a.mp4"}]'}, "port 99999 is out of range"),
        ({"clips": '[{"url": "http://[::1/x.mp4"}]'}, "clip 1: url must be an http(s) URL"),
        ({"clips": '[{"url": 42}]'}, "clip 1: url must be an http(s) URL (not a string)"),
        ({"clips": "[" * 100_000 + "]" * 100_000}, "clips is not valid JSON (nested too deeply)"),
    ],
)
def test_hostile_values_are_invalid_requests(overrides, message):
    with pytest.raises(InvalidRequest) as info:
        parse_request(row(**overrides))
    assert message in str(info.value)
    assert len(str(info.value)) < 1000


def test_durations_are_held_to_the_export_limit():
    clips = (
        '[{"url": "https://x/a.mp4", "duration": 400}, {"url": "https://x/b.mp4", "duration": 300}]'
    )
    assert parse_request(row(clips=clips)).clips[1].duration == 300
    with pytest.raises(InvalidRequest) as info:
        parse_request(row(clips=clips), max_duration_s=600)
    assert "the clips' durations add up to 700 s; the longest export is 600 s" in str(info.value)


def test_many_problems_are_listed_up_to_a_limit():
    clips = json.dumps([{"url": "ftp://x/a.mp4"}] * 300)
    with pytest.raises(InvalidRequest) as info:
        parse_request(row(clips=clips))
    assert "and 280 more problems" in str(info.value)


def test_a_bug_in_validation_is_still_an_invalid_request(monkeypatch):
    from export_pipeline.domain import request as spec

    monkeypatch.setattr(spec, "url_problem", lambda url: 1 / 0)
    with pytest.raises(InvalidRequest) as info:
        parse_request(row())
    assert "the row could not be read (ZeroDivisionError" in str(info.value)


def test_all_problems_are_reported_at_once():
    with pytest.raises(InvalidRequest) as info:
        parse_request(row(resolution="8k", quality="ultra"))
    assert "resolution" in str(info.value) and "quality" in str(info.value)


@pytest.mark.parametrize(("value", "expected"), [(None, "mp4"), ("mp4", "mp4"),
                                                 ("mp4-hevc", "mp4-hevc"), ("webm", "webm")])  # fmt: skip
def test_format_defaults_to_mp4_for_rows_without_it(value, expected):
    assert parse_request(row(format=value)).format == expected
    assert parse_request({k: v for k, v in row().items() if k != "format"}).format == "mp4"


@pytest.mark.parametrize("value", ["MP4", "mov", "", 5, ["webm"]])
def test_an_unsupported_format_is_named_with_the_choices(value):
    with pytest.raises(InvalidRequest) as info:
        parse_request(row(format=value))
    assert "is not supported (use one of: mp4, mp4-hevc, webm)" in str(info.value)
    assert str(info.value).startswith("invalid export request: format ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("true", True), ("1", True), ("false", False), ("0", False), (False, False)],
)
def test_audio_normalize_is_on_unless_the_row_says_false(value, expected):
    assert parse_request(row(audio_normalize=value)).audio_normalize is expected


def test_audio_normalize_must_be_a_flag():
    with pytest.raises(InvalidRequest) as info:
        parse_request(row(audio_normalize="yes please"))
    assert "audio_normalize 'yes please' must be true or false" in str(info.value)


def clips_with(*transitions) -> str:
    """Three clips in scene order; transitions[n] is set on clip n + 2 (None: none)."""
    clips = [{"url": f"https://cdn.example/{n}.mp4", "scene_number": n} for n in (1, 2, 3)]
    for clip, transition in zip(clips[1:], transitions, strict=False):
        if transition is not None:
            clip["transition"] = transition
    return json.dumps(clips)


def test_transitions_are_read_onto_the_clip_they_lead_into():
    spec = parse_request(
        row(clips=clips_with({"type": "crossfade", "duration": 1}, {"type": "fade"}))
    )
    kinds = [
        (c.transition.kind, c.transition.duration) if c.transition else None for c in spec.clips
    ]
    assert kinds == [None, ("crossfade", 1.0), ("fade", 0.5)]
    cut = parse_request(row(clips=clips_with({"type": "cut"}))).clips[1].transition
    assert (cut.kind, cut.duration) == ("cut", 0.0)


@pytest.mark.parametrize(
    ("transition", "message"),
    [
        ({"type": "wipe"}, "clip 2: transition type 'wipe' is not supported (use one of: crossfade, fade, cut)"),
        ({"type": "fade", "duration": 9}, "clip 2: transition duration must be a number from 0.1 to 5 (seconds), got 9"),
        ({"type": "fade", "speed": 2}, "clip 2: transition has unknown keys ['speed'] (use type, duration)"),
        ("crossfade", "clip 2: transition must be an object like"),
    ],
)  # fmt: skip
def test_a_bad_transition_is_named(transition, message):
    with pytest.raises(InvalidRequest) as info:
        parse_request(row(clips=clips_with(transition)))
    assert message in str(info.value)


def test_a_transition_into_the_first_clip_is_refused():
    clips = json.loads(clips_with())
    clips[0]["transition"] = {"type": "fade"}
    with pytest.raises(InvalidRequest) as info:
        parse_request(row(clips=json.dumps(clips)))
    assert "clip 1 (scene 1): a transition leads into a clip from the one before it" in str(
        info.value
    )


def test_soundtrack_and_captions_are_read_and_checked():
    spec = parse_request(row(
        soundtrack='{"url": "https://cdn.example/song.mp3", "volume": 0.2, "loop": false}',
        captions={"vtt": "WEBVTT\n\n00:01.000 --> 00:02.000\nHi\n", "burn_in": False},
    ))  # fmt: skip
    assert spec.soundtrack.url == "https://cdn.example/song.mp3"
    assert (spec.soundtrack.track.volume, spec.soundtrack.track.loop) == (0.2, False)
    assert (spec.captions.kind, spec.captions.burn_in, spec.captions.url) == ("vtt", False, None)
    by_url = parse_request(row(captions={"url": "https://cdn.example/subs.srt"})).captions
    assert (by_url.kind, by_url.url, by_url.burn_in) == (
        "srt",
        "https://cdn.example/subs.srt",
        True,
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"soundtrack": {"url": "https://cdn.example/a.mp3", "volume": 3}}, "soundtrack: volume must be a number from 0 to 1, got 3"),
        ({"soundtrack": {"url": "ftp://cdn.example/a.mp3"}}, "soundtrack: url must be an http(s) URL"),
        ({"soundtrack": "{not json"}, "soundtrack: "),
        ({"captions": {"srt": "1\n00:00:02,000 --> 00:00:01,000\nHi\n"}}, "captions: cue 1"),
        ({"captions": {"srt": "x", "vtt": "y"}}, "captions needs exactly one of srt, vtt (the text) or url"),
        ({"captions": {"url": "https://cdn.example/subs.txt"}}, 'captions: say whether the file at url is srt or vtt ("format")'),
        ({"captions": {"srt": "1\n00:00:01,000 --> 00:00:02,000\nHi\n", "style": {"size": 3}}}, "captions"),
    ],
)  # fmt: skip
def test_a_bad_soundtrack_or_captions_is_named(fields, message):
    with pytest.raises(InvalidRequest) as info:
        parse_request(row(**fields))
    assert message in str(info.value)


def test_the_readme_example_request_is_valid():
    """README's example request (Finishing) is what the app will copy: it must pass."""

    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index("```json\n", readme.index("**Finishing")) + len("```json\n")
    example = json.loads(readme[start : readme.index("```", start)])
    spec = parse_request({**example, "aspect_ratio": "16:9", "clips": json.dumps(example["clips"])})
    assert [c.transition.kind if c.transition else None for c in spec.clips] == [
        None, "crossfade", "fade"
    ]  # fmt: skip
    assert spec.soundtrack.track.volume == 0.3 and spec.captions.burn_in is True
