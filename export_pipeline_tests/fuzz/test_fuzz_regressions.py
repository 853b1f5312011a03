"""What the fuzzers found, and the committed seeds, as plain tests: no atheris needed (the
targets read their inputs through `provider.py` where it is not installed).

Each finding failed before its fix; each seed goes through its target in this process."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from export_pipeline.media.probe import InvalidMedia, decode_check_argv, parse_probe, probe_argv
from export_pipeline.media.segment import segment_argv
from export_pipeline_tests.fuzz import fuzz_argv, fuzz_probe_json, fuzz_request
from export_pipeline_tests.fuzz.harness import Finding
from export_pipeline_tests.fuzz.seeds import REQUEST_CLIPS, request_seed
from export_pipeline_tests.media.tools import segment

HERE = Path(__file__).parent
SEEDS = sorted((HERE / "corpus").glob("*/*"))


def test_the_seed_corpus_is_there():
    """Every target with a corpus folder has seeds in it (a glob of nothing tests nothing)."""
    assert {seed.parent.name for seed in SEEDS} == {"request", "probe_json"}


@pytest.mark.parametrize("seed", SEEDS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_seed_replays_cleanly(seed: Path):
    """Each committed seed, through its target in this process (no atheris instrumentation)."""
    target = importlib.import_module(f"export_pipeline_tests.fuzz.fuzz_{seed.parent.name}")
    target.test_one_input(seed.read_bytes())


@pytest.mark.parametrize("name", REQUEST_CLIPS)
def test_request_seed_layout(name: str):
    """A request seed stands for its clips text with every other column valid."""
    row, max_duration_s = fuzz_request.row_from(request_seed(REQUEST_CLIPS[name]))
    assert row["clips"] == REQUEST_CLIPS[name]
    assert row["project_id"] == "project-1" and row["resolution"] == "720p"
    assert row["id"] == 1 and max_duration_s == 86400.0


def test_request_target_accepts_a_valid_request():
    """The check itself: a good row passes, a bad one is only rejected."""
    fuzz_request.test_one_input(request_seed(REQUEST_CLIPS["one-clip"]))
    fuzz_request.test_one_input(request_seed('[{"url": "ftp://x/a.mp4"}]'))


def test_argv_check_catches_an_unwhitelisted_input():
    path = Path("/clips/a.mp4")
    fuzz_argv.check_argv(probe_argv(path), [path], [])
    with pytest.raises(Finding):
        fuzz_argv.check_argv(["ffmpeg", "-i", str(path), "out.mp4"], [path], [])
    with pytest.raises(Finding):
        fuzz_argv.check_argv(["ffmpeg", "-protocol_whitelist", "file", "-i", "a.mp4"], [path], [])


# ---- Regression tests for the findings (each failed before its fix).

VIDEO = {"codec_type": "video", "width": 320, "height": 240, "r_frame_rate": "24/1"}

PROBE_FINDINGS = {
    # ffprobe prints these strings for the tags a file carries (Matroska tags are free text).
    "rotate-tag-nan": {"streams": [{**VIDEO, "duration": "1.0", "tags": {"rotate": "nan"}}]},
    "rotate-tag-inf": {"streams": [{**VIDEO, "duration": "1.0", "tags": {"rotate": "1e400"}}]},
    "rotation-side-data-nan": {
        "streams": [{**VIDEO, "duration": "1.0", "side_data_list": [{"rotation": "nan"}]}]
    },
    "duration-inf": {"streams": [{**VIDEO, "duration": "inf"}]},
    "duration-nan": {"streams": [{**VIDEO, "duration": "nan"}]},
    "format-duration-inf": {"streams": [VIDEO], "format": {"duration": "1e309"}},
    "fps-negative": {"streams": [{**VIDEO, "duration": "1.0", "r_frame_rate": "-24/1"}]},
    "fps-huge": {"streams": [{**VIDEO, "duration": "1.0", "r_frame_rate": "1" * 400 + "/1"}]},
    "size-inf": {"streams": [{**VIDEO, "duration": "1.0"}], "format": {"size": "inf"}},
    "bit-rate-nan": {"streams": [{**VIDEO, "duration": "1.0", "bit_rate": "nan"}]},
    "width-not-a-number": {"streams": [{**VIDEO, "duration": "1.0", "width": "N/A"}]},
    "audio-channels-not-a-number": {
        "streams": [{**VIDEO, "duration": "1.0"}, {"codec_type": "audio", "channels": "x"}]
    },
    "stream-not-an-object": {"streams": [None]},
    "format-not-an-object": {"streams": [{**VIDEO, "duration": "1.0"}], "format": "x"},
    "side-data-not-an-object": {"streams": [{**VIDEO, "duration": "1.0", "side_data_list": [5]}]},
    "tags-not-an-object": {"streams": [{**VIDEO, "duration": "1.0", "tags": "x"}]},
    "field-order-not-a-string": {"streams": [{**VIDEO, "duration": "1.0", "field_order": []}]},
}


@pytest.mark.parametrize("name", PROBE_FINDINGS)
def test_probe_json_finding(name: str):
    fuzz_probe_json.check_description(PROBE_FINDINGS[name])


def test_probe_json_contract_holds_for_plain_descriptions():
    """The check is not what fails above: an ordinary description passes it."""
    fuzz_probe_json.check_description({"streams": [{**VIDEO, "duration": "1.0"}]})
    with pytest.raises(InvalidMedia):
        parse_probe(Path("x.mp4"), {"streams": []})


@pytest.mark.parametrize("builder", ["segment", "probe", "decode_check"])
def test_argv_nul_byte_in_path(builder: str):
    path = Path("/work/a\x00b.mp4")
    outputs: list[Path] = []
    try:
        if builder == "segment":
            job = segment(path, 0.0, 1.0, video=Path("/w/v.mp4"), audio=Path("/w/a.wav"),
                          width=320, height=240)  # fmt: skip
            outputs = [job.video, job.audio]
            argv = segment_argv(job, fuzz_argv.DEFAULT_SETTINGS)
        elif builder == "probe":
            argv = probe_argv(path)
        else:
            argv = decode_check_argv(path)
    except ValueError:
        return  # refused: the fix
    fuzz_argv.check_argv(argv, [path], outputs)
