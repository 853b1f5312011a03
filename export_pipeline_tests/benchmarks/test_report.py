"""The benchmarks' tables in the READMEs are what `results/*.json` gives (`report.py`): no
table kept by hand, none out of date, every results file shown somewhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from export_pipeline_tests.benchmarks import report


def test_the_readmes_tables_are_what_the_results_give():
    stale = report.stale()
    assert stale == [], (
        f"generated blocks differ from results/*.json: {stale}; run `{report.COMMAND}` "
        "(and edit the renderer in report.py, not the README)"
    )


def test_every_block_is_in_its_readme_once_and_every_results_file_is_read():
    for path, names in report.READMES.items():
        assert set(names) <= set(report.blocks_in(path.read_text())), path
    read = set(report.FILES.values()) | {
        f"bench-finishing-{commit}.json" for commit in report.FINISHING_EARLIER
    }
    recorded = {path.name for path in report.RESULTS.iterdir()}
    assert recorded <= read, f"results no block shows: {sorted(recorded - read)}"
    assert {f"bench-finishing-{c}.json" for c in report.FINISHING_EARLIER} <= recorded


@pytest.fixture
def results(tmp_path) -> Path:
    """A copy of the recorded results, to change."""
    copy = tmp_path / "results"
    shutil.copytree(report.RESULTS, copy)
    return copy


def test_a_changed_result_makes_its_blocks_stale(results):
    path = results / "bench-finishing.json"
    data = json.loads(path.read_text())
    data["transitions"]["seconds"] = round(data["plain"]["seconds"] * 1.5, 2)
    path.write_text(json.dumps(data))
    stale = report.stale(results)
    assert stale == ["README.md: bench_finishing", "README.md: bench_headline"]
    assert "| transitions | " in report.BLOCKS["bench_finishing"](results)
    assert "transitions +50%" in report.headline(results)


def test_rewriting_a_block_keeps_the_prose_around_it(results):
    readme = report.BENCH_README.read_text()
    block = report.blocks_in(readme)["bench_eta"]
    broken = readme.replace(block, "<!-- bench_eta:begin -->\nkept by hand\n<!-- bench_eta:end -->")
    assert report.rendered(broken, report.READMES[report.BENCH_README], results) == readme
    with pytest.raises(ValueError, match="bench_eta:begin"):
        report.rendered(readme.replace(block, ""), ("bench_eta",), results)


def test_recording_a_run_rewrites_the_readme_only_from_results(results, tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(report.BENCH_README.read_text())
    monkeypatch.setattr(report, "RESULTS", results)
    monkeypatch.setattr(report, "READMES", {readme: report.READMES[report.BENCH_README]})
    elsewhere = tmp_path / "bench-eta.json"
    runs = json.loads((results / "bench-eta.json").read_text())[:4]
    elsewhere.write_text(json.dumps(runs))

    report.record("bench_eta", elsewhere)
    assert readme.read_text() == report.BENCH_README.read_text()

    shutil.copy(elsewhere, results / "bench-eta.json")
    report.record("bench_eta", results / "bench-eta.json")
    assert "4 exports (cartoon, detail;" in report.blocks_in(readme.read_text())["bench_eta"]


# The renderers of results not recorded yet, on results shaped as their benchmark writes them.

EXPORT = {
    "machine": {"cores": 2},
    "repeat": 2,
    "reference": {"seconds": 115.7, "runs": [115.0, 116.4], "rss_ffmpeg_mb": 760.1,
                  "bytes": 60_800_000, "ssim": 0.9451},
    "pipeline": {"seconds": 40.6, "runs": [40.1, 41.0], "encode_s": 35.6, "download_s": 2.1,
                 "bytes": 61_400_000, "ssim": 0.945, "rss_pipeline_mb": 140.2,
                 "rss_ffmpeg_mb": 265.3},
    "pipeline_veryfast": {"seconds": 61.4, "encode_s": 56.0, "bytes": 58_700_000, "ssim": 0.9457},
    "stream_copy": {"seconds": 8.6, "encode_s": 4.8},
    "reexport_one_changed": {"seconds": 8.0, "reused_segments": 11},
    "ten_minutes": {"seconds": 424.0, "encode_s": 400.0, "duration_s": 600.0,
                    "rss_pipeline_mb": 142.0, "rss_ffmpeg_mb": 266.0, "bytes": 610_000_000},
    "resolutions": {"720p": {"seconds": 29.2, "encode_s": 24.6, "bytes": 28_500_000,
                             "rss_ffmpeg_mb": 168.0}},
    "latency": {"median_s": 3.7, "samples": [10.4, 3.7, 3.5]},
    "ratios": {"full_vs_reference_time": 0.351, "ssim_difference": -0.0001,
               "size_vs_reference": 1.01, "stream_copy_encode_vs_reference": 0.041,
               "stream_copy_total_vs_reference": 0.074, "reexport_vs_full": 0.197,
               "rss_10min_vs_1min": 1.013},
}  # fmt: skip
FORMATS = {"classes": {"cartoon": {"low": {
    "mp4": {"seconds": 10.0, "cpu_s": 19.0, "bytes": 1_000_000, "ssim": 0.9990},
    "webm": {"seconds": 40.0, "cpu_s": 70.0, "bytes": 900_000, "ssim": 0.9980},
}}}}  # fmt: skip
CALIBRATION = {"today": {}, "chosen": {"vp9": {"low": 46, "high": 36}}, "calibration": {
    "real": {"low": {
        "mp4": {"28": {"bytes": 1_000_000, "cpu_s": 9.0, "ssim": 0.9837}},
        "webm": {"42": {"bytes": 900_000, "cpu_s": 30.0, "ssim": 0.9870},
                 "46": {"bytes": 700_000, "cpu_s": 28.0, "ssim": 0.9851},
                 "match_crf": 46.2},
    }},
}}  # fmt: skip


def test_the_original_benchmarks_renderer():
    text = report.export_tables(EXPORT)
    assert "| pipeline, full 1080p high export | 40.6 s (encode step 35.6 s) | **0.35x** |" in text
    assert (
        "| re-export with one of the 12 clips changed | 8.0 s | **0.20x** of a full export |"
        in text
    )
    assert "| 720p | 29.2 s | 24.6 s | 28.5 MB | 168 MB |" in text


def test_the_formats_renderers():
    assert "| cartoon | low | webm | 0.9980 (-0.0010) | 0.9 MB (0.90x) | 70 (3.7x) | 40 | ok |" in (
        report.formats_tables(FORMATS)
    )
    calibration = report.calibration_tables(CALIBRATION)
    assert "| vp9 | 46 | 36 |" in calibration
    assert "CRF 46: 0.9851, 0.70x" in calibration and "| 46.2 |" in calibration
