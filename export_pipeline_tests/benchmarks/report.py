"""The benchmarks' results tables, generated from `results/*.json`.

    python -m export_pipeline_tests.benchmarks.report           # rewrite the generated blocks
    python -m export_pipeline_tests.benchmarks.report --check   # list stale blocks, exit 1

`benchmarks/README.md` says what each benchmark measures and how; its results tables sit
between `<!-- NAME:begin -->` and `<!-- NAME:end -->` and are written here, one renderer
per results file, from that file alone (the repository's README has one such block, the
headline figures). Everything outside the markers is prose kept by hand. A benchmark script
calls `record` after writing its JSON: it prints the tables, and rewrites the READMEs when
the JSON went to `results/`. `test_report.py` fails when a block differs from its JSON.

Nothing here runs a benchmark or imports the pipeline: only the JSON is read.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BENCH_README = HERE / "README.md"
REPO_README = HERE.parents[1] / "README.md"
COMMAND = "python -m export_pipeline_tests.benchmarks.report"

# bench_corpus's targets: per class, SSIM within the margin of the reference and
# a size within the limit; over the classes, the whole export's time against the
# reference's, median and worst.
SSIM_MARGIN = 0.005
SIZE_LIMIT = 1.1
MEDIAN_TIME_LIMIT = 0.5
WORST_TIME_LIMIT = 0.6
# bench_fanout's target (issue 13): a 10-minute 1080p export on 16 workers.
FANOUT_TARGET_S = 60.0
FANOUT_TARGET_WORKERS = "16"
# bench_latency's target (issue 24): INSERT -> `processing`, median, on a warm daemon.
LATENCY_TARGET_S = 3.0
LATENCY_PHASES = ("sensor", "dequeue", "worker start", "to step", "step -> processing")
# bench_eta's target: the time left within ±25 %, or within the display's 1 s.
ETA_TARGET = 0.25
ETA_RESOLUTION_S = 1.0

# The results file of each block.
FILES = {
    "bench_corpus": "bench-corpus.json",
    "bench_formats": "bench-formats.json",
    "bench_formats_calibration": "bench-formats-calibration.json",
    "bench_formats_encoders": "bench-formats-encoders.json",
    "bench_eta": "bench-eta.json",
    "bench_prior": "bench-prior.json",
    "bench_finishing": "bench-finishing.json",
    "bench_fanout": "bench-fanout.json",
    "bench_export": "bench-export.json",
    "bench_memory": "bench-memory.json",
    "bench_latency": "bench-latency.json",
}
# bench_finishing's earlier runs, newest first: each variant's row comes from the newest run
# that measured it (a run of some variants keeps the others' figures). To keep the current
# figures of variants a new run leaves out, move results/bench-finishing.json to
# results/bench-finishing-<its commit>.json and add the commit here before recording.
FINISHING_EARLIER = ("ed62cb1", "08ceb51")


def _fmt_ratio(value: float) -> str:
    return f"{value:.2f}x"


def _signed_percent(value: float) -> str:
    return f"{value:+.0%}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


# --- bench_corpus ---------------------------------------------------------------------------


def corpus_tables(report: dict) -> str:
    """Per class (the default preset), per preset and class, the targets per preset, per
    phase of the export (default preset), and the export on a running daemon."""
    default = report["default_preset"]
    targets = report["targets"]
    extra = report.get("daemon", {}).get("extra_over_in_process_s", 0.0)
    lines = [f"Classes at the default preset `{default}` (whole export = in-process export "
             f"+ {extra:.1f} s measured daemon overhead):", "",
             "| class | source | clips | reference | SSIM ref / pipeline | size ref / pipeline "
             "| whole export | ratio | encode step | one FFmpeg run, same settings |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, c in report["classes"].items():
        if default not in c["presets"]:
            continue
        p, s, ref = (
            c["presets"][default]["pipeline"],
            c["presets"][default]["single"],
            c["reference"],
        )
        t = targets[default]["classes"][name]
        lines.append(
            f"| {name} | {c['source']} | {c['clips']} x {c['timeline_s'] / c['clips']:g} s "
            f"| {ref['seconds']:.1f} s "
            f"| {ref['ssim']:.4f} / {p['ssim']:.4f} ({t['ssim_diff']:+.4f}) "
            f"| {ref['bytes'] / 1e6:.1f} / {p['bytes'] / 1e6:.1f} MB ({t['size_ratio']:.2f}x) "
            f"| {t['whole_s']:.1f} s | **{t['time_ratio']:.2f}x** | {p['encode_s']:.1f} s"
            f"{' (stream copy)' if p.get('stream_copy') else ''} "
            + (f"| {s['seconds']:.1f} s ({t['single_ratio']:.2f}x), "
               f"SSIM {t['single_ssim_diff']:+.4f} |" if s else "| - |")
        )  # fmt: skip
    lines += ["", "Per preset and class (ratios against the reference; `ok`: SSIM >= "
              f"reference - {SSIM_MARGIN} and size <= {SIZE_LIMIT}x):", "",
              "| preset | class | SSIM diff | size | whole export | encode step | "
              "one FFmpeg run: time, SSIM diff, size | encode step / one run "
              "| CPU: export, one run | ok |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for preset, t in targets.items():
        for name, r in t["classes"].items():
            if r["single_ratio"] is not None:
                single = (f"{r['single_ratio']:.2f}x, {r['single_ssim_diff']:+.4f}, "
                          f"{r['single_size_ratio']:.2f}x | {r['encode_vs_single']:.2f} "
                          f"| {r['cpu_ratio']:.2f}x, {r['single_cpu_ratio']:.2f}x")  # fmt: skip
            else:
                single = f"- | - | {r['cpu_ratio']:.2f}x, -"
            lines.append(
                f"| {preset} | {name} | {r['ssim_diff']:+.4f} | {r['size_ratio']:.2f}x "
                f"| {r['time_ratio']:.2f}x | {r['encode_ratio']:.2f}x | {single} "
                f"| {'ok' if r['quality_ok'] else '**no**'} |"
            )  # fmt: skip
    lines += ["", "Targets per preset (whole export: median <= "
              f"{MEDIAN_TIME_LIMIT}x and worst <= {WORST_TIME_LIMIT}x of the reference):", "",
              "| preset | worst SSIM diff | worst size | median time | worst time (class) "
              "| all targets |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for preset, t in targets.items():
        lines.append(
            f"| {preset} | {t['worst_ssim_diff']:+.4f} | {t['worst_size_ratio']:.2f}x "
            f"| {t['median_time_ratio']:.2f}x | {t['worst_time_ratio']:.2f}x ({t['worst_class']}) "
            f"| {'**yes**' if t['meets_all'] else 'no'} |"
        )  # fmt: skip
    fastest = report.get("fastest_quality_preset", {})
    adaptive = report.get("adaptive_best_case")
    if adaptive:
        lines += ["", "A content-adaptive choice at best (each class at its fastest setting that "
                  f"keeps SSIM and size): median {adaptive['median_time_ratio']:.2f}x, worst "
                  f"{adaptive['worst_time_ratio']:.2f}x"
                  + ("" if adaptive["all_classes_covered"] else
                     "; some classes have no setting that keeps SSIM and size")
                  + "."]  # fmt: skip
    lines += ["", "Fastest setting keeping SSIM and size, per class (with the sources' bits "
              "per pixel, spatial and temporal information at 1080p): " + ", ".join(
                  f"{n}: {fastest.get(n) or 'none'} ({c['source_bpp']} bpp, "
                  f"SI {c.get('si')}, TI {c.get('ti')})"
                  for n, c in report["classes"].items())]  # fmt: skip
    lines += [
        "",
        f"Where the time goes, per class at `{default}` (seconds of wall time, in-process "
        "run; the segment encodes as the time they took together, with their count and "
        "mean length: two are encoded at once):",
        "",
    ]
    names = [n for n, c in report["classes"].items() if default in c["presets"]]
    phase_names: list[str] = []
    for n in names:
        for k in report["classes"][n]["presets"][default]["pipeline"]["phases"]:
            if k not in phase_names:
                phase_names.append(k)
    lines += ["| phase | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for phase in phase_names:
        cells = []
        for n in names:
            p = report["classes"][n]["presets"][default]["pipeline"]
            value = p["phases"].get(phase)
            cell = "" if value is None else f"{value:.2f}"
            if phase.endswith("segment encode") and value:
                # Wall time of the encodes (two run at once): their count and mean length.
                cell += f" ({len(p['segments_s'])} x {statistics.mean(p['segments_s']):.2f})"
            cells.append(cell)
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    lines.append("| **in-process export** | " + " | ".join(
        f"**{report['classes'][n]['presets'][default]['pipeline']['seconds']:.2f}**"
        for n in names) + " |")  # fmt: skip
    lines.append("| one FFmpeg run, same settings | " + " | ".join(
        f"{single['seconds']:.2f}" if (single := report["classes"][n]["presets"][default]
                                      ["single"]) else "-"
        for n in names) + " |")  # fmt: skip
    lines.append("| in-process export / one run | " + " | ".join(
        f"{p['seconds'] / single['seconds']:.2f}x" if (single := c["single"]) else "-"
        for n in names
        for c in [report["classes"][n]["presets"][default]]
        for p in [c["pipeline"]]) + " |")  # fmt: skip
    if any(report["classes"][n]["presets"][default]["pipeline"].get("check_s") for n in names):
        lines.append("| checks per clip / encode per clip | " + " | ".join(
            _check_share(report["classes"][n]["presets"][default]["pipeline"])
            for n in names) + " |")  # fmt: skip
    daemon = report.get("daemon")
    if daemon:
        timeline = ", ".join(f"{k} {v:.1f} s" for k, v in daemon["timeline"].items())
        samples = ", ".join(f"{v:.1f}" for v in daemon["overhead_samples_s"])
        lines += ["", f"On a running daemon (class `{daemon['class']}`, `{daemon['preset']}`, "
                  f"{daemon.get('intake', 'sensor interval 5 s')}, after a warm-up export): "
                  f"INSERT -> complete "
                  f"{daemon['seconds']:.1f} s, of which the steps' own work "
                  f"{daemon['step_bodies_s']:.1f} s and Dagster/daemon overhead "
                  f"{daemon['overhead_s']:.1f} s ({timeline}). Overhead over "
                  f"{len(daemon['overhead_samples_s'])} exports: {samples} s, median "
                  f"{daemon['overhead_median_s']:.1f} s, against "
                  f"{daemon['in_process_overhead_s']:.1f} s in process: "
                  f"{daemon['extra_over_in_process_s']:.1f} s added to every class."]  # fmt: skip
    return "\n".join(lines) + "\n"


# --- bench_formats --------------------------------------------------------------------------


def formats_tables(report: dict) -> str:
    """Every format at every tier, per class, against the H.264 output (the plain run)."""
    rows = []
    for cls, tiers in report["classes"].items():
        for quality, formats in tiers.items():
            base = formats["mp4"]
            for name, r in formats.items():
                diff = r["ssim"] - base["ssim"]
                size = r["bytes"] / base["bytes"]
                ok = name == "mp4" or (diff >= -SSIM_MARGIN and size < 1.0)
                rows.append([
                    cls, quality, name, f"{r['ssim']:.4f} ({diff:+.4f})",
                    f"{r['bytes'] / 1e6:.1f} MB ({size:.2f}x)",
                    f"{r['cpu_s']:.0f} ({r['cpu_s'] / base['cpu_s']:.1f}x)",
                    f"{r['seconds']:.0f}", "ok" if ok else "**no**",
                ])  # fmt: skip
    header = ["class", "tier", "format", "SSIM (vs H.264)", "size (vs H.264)",
              "CPU s (vs H.264)", "wall s", "ok"]  # fmt: skip
    return "\n".join(_table(header, rows)) + "\n"


def calibration_tables(report: dict) -> str:
    """The CRF chosen per codec and tier, then every calibration point per class."""
    chosen = report.get("chosen", {})
    tiers = sorted({t for codec in chosen.values() for t in codec}, key=_tier_order)
    lines = ["CRF chosen per codec and tier (the lowest matching CRF over the classes):", ""]
    lines += _table(["codec", *tiers], [
        [codec, *(str(by_tier.get(t, "-")) for t in tiers)] for codec, by_tier in chosen.items()
    ])  # fmt: skip
    rows = []
    for cls, by_tier in report["calibration"].items():
        for tier, formats in by_tier.items():
            (h264,) = formats["mp4"].values()
            for name, points in formats.items():
                if name == "mp4":
                    continue
                measured = "; ".join(
                    f"CRF {crf}: {p['ssim']:.4f}, {p['bytes'] / h264['bytes']:.2f}x"
                    for crf, p in points.items()
                    if crf != "match_crf"
                )
                rows.append([cls, tier, name, f"{h264['ssim']:.4f}", measured,
                             f"{points['match_crf']}"])  # fmt: skip
    lines += ["", "Per class and tier: H.264's SSIM, each codec's SSIM and size (against "
              "H.264's) at the CRFs measured, and the CRF that matches:", ""]  # fmt: skip
    header = ["class", "tier", "format", "H.264 SSIM", "SSIM, size vs H.264", "matching CRF"]
    lines += _table(header, rows)
    return "\n".join(lines) + "\n"


def _tier_order(tier: str) -> int:
    return {"low": 0, "medium": 1, "high": 2}.get(tier, 3)


def encoders_tables(report: dict) -> str:
    """`--encoders`: each candidate WebM encoder on the timeline, per class."""
    lines: list[str] = []
    for cls, rows in report.items():
        lines += [f"Class `{cls}` (1080p, video only, one FFmpeg run of the timeline each):", ""]
        lines += _table(["encoder", "CPU s", "size", "SSIM"], [
            [r["encoder"], f"{r['cpu_s']:.1f}", f"{r['bytes'] / 1000:.0f} KB", f"{r['ssim']:.5f}"]
            for r in rows
        ])  # fmt: skip
        lines.append("")
    return "\n".join(lines)


# --- bench_eta ------------------------------------------------------------------------------

MARKS = ("25", "50", "75")
STEPS = ("download", "encode", "publish")


def eta_tables(results: list[dict]) -> str:
    """The error of `eta_s` at 25, 50 and 75 % progress, and each step's share of the time."""
    classes = ", ".join(dict.fromkeys(r["class"] for r in results))
    lengths = " and ".join(f"{s:g} s" for s in sorted({r["length_s"] for r in results}))
    lines = [f"{len(results)} exports ({classes}; {lengths} each), `eta_s` against the time "
             "really left:", ""]  # fmt: skip
    rows = []
    for mark in MARKS:
        values = [r["errors"][mark] for r in results if r["errors"].get(mark) is not None]
        if not values:
            rows.append([f"{mark} %", "-", "-", "no estimate", "no estimate"])
            continue
        relative = [v[0] for v in values]
        inside = sum(1 for v in relative if abs(v) <= ETA_TARGET)
        near = sum(
            1 for rel, sec in values if abs(rel) <= ETA_TARGET or abs(sec) <= ETA_RESOLUTION_S
        )
        rows.append([
            f"{mark} %", _signed_percent(statistics.median(relative)),
            _signed_percent(max(relative, key=abs)), f"{inside} of {len(values)}",
            f"{near} of {len(values)}",
        ])  # fmt: skip
    lines += _table(["progress", "median error", "worst", f"within ±{ETA_TARGET:.0%}",
                     f"within ±{ETA_TARGET:.0%} or ±{ETA_RESOLUTION_S:g} s"], rows)  # fmt: skip
    lines += ["", "Where the time goes (share of each export's time, from the progress writes):",
              ""]  # fmt: skip
    rows = []
    for step in STEPS:
        values = [r["shares"][step] for r in results if r["shares"].get(step) is not None]
        if values:
            rows.append([step, f"{statistics.median(values):.0%}",
                         f"{min(values):.0%}–{max(values):.0%}"])  # fmt: skip
    lines += _table(["step", "median share", "range"], rows)
    return "\n".join(lines) + "\n"


def _check_share(pipeline: dict) -> str:
    """A clip's probe and checks (the mean over the clips) against its share of the segment
    encodes (their wall time over the clips): what the download step adds per clip."""
    clips, check = pipeline.get("clip_count"), pipeline.get("check_s")
    encode = pipeline["phases"].get("encoded_video: segment encode")
    if not clips or check is None or not encode:
        return "-"
    return f"{check / clips:.2f} / {encode / clips:.2f} s"


def prior_tables(report: dict) -> str:
    """Per kind of output: the processing time per second of video measured over the classes,
    its cost relative to 1080p H.264, what `domain.eta` assumes for both, and how the first
    `eta_s` (the built-in prior alone) and the one at 25 % compare with the real time."""
    from export_pipeline.domain import eta

    exports = report["exports"]
    rate = {(r["class"], r["resolution"], r["format"]): r["seconds"] / r["length_s"]
            for r in exports}  # fmt: skip
    kinds = list(dict.fromkeys((r["resolution"], r["format"]) for r in exports))
    classes = list(dict.fromkeys(r["class"] for r in exports))
    lines = [f"{len(exports)} exports on {report['machine']}, each on an app database of "
             f"its own (no history), {len(classes)} classes ({', '.join(classes)}):", ""]  # fmt: skip
    rows = []
    for resolution, format in kinds:
        mine = [r for r in exports if (r["resolution"], r["format"]) == (resolution, format)]
        rates = [rate[(r["class"], resolution, format)] for r in mine]
        costs = [rate[(c, resolution, format)] / rate[(c, "1080p", "mp4")] for c in classes
                 if (c, "1080p", "mp4") in rate and (c, resolution, format) in rate]  # fmt: skip
        first = [(r["first_eta_s"] - r["seconds"]) / r["seconds"] for r in mine
                 if r["first_eta_s"] is not None]  # fmt: skip
        at25 = [r["errors"]["25"][0] for r in mine if r["errors"].get("25") is not None]
        rows.append([
            f"{resolution} {format}",
            f"{statistics.median(rates):.2f} ({min(rates):.2f}–{max(rates):.2f})",
            f"{statistics.median(costs):.2f}" if costs else "-",
            f"{eta.cost(resolution, format):.2f}",
            _signed_percent(statistics.median(first)) if first else "-",
            _signed_percent(statistics.median(at25)) if at25 else "-",
            _signed_percent(max(at25, key=abs)) if at25 else "-",
            f"{sum(abs(v) <= ETA_TARGET for v in at25)} of {len(at25)}",
        ])  # fmt: skip
    lines += _table(["output", "s per s of video (range)", "cost measured", "cost assumed",
                     "first eta_s (prior alone)", "error at 25 %", "worst at 25 %",
                     f"within ±{ETA_TARGET:.0%} at 25 %"], rows)  # fmt: skip
    lines += ["", f"Assumed (`export_pipeline/domain/eta.py`): {eta.BUILTIN_RATE:g} s per "
              f"second of 1080p H.264 plus {eta.BUILTIN_FIXED_S:g} s per export."]  # fmt: skip
    return "\n".join(lines) + "\n"


# --- bench_finishing ------------------------------------------------------------------------


def finishing_tables(runs: list[tuple[str, dict]]) -> str:
    """`runs`: (label, results) newest first. Each variant from the newest run that measured
    it, shown with that run's plain render (the extras are against it)."""
    shown: set[str] = set()
    rows = []
    for label, report in runs:
        new = [v for v in report if v != "plain" and v not in shown]
        if rows and not new:
            continue
        base = report["plain"]
        for variant in ["plain", *new]:
            r = report[variant]
            runs_each = f"{label}, {len(base['runs'])} each" if variant == "plain" else label
            rows.append([
                variant, f"{r['seconds']:.1f}", _signed_percent(r["seconds"] / base["seconds"] - 1),
                f"{r['cpu_s']:.0f}", _signed_percent(r["cpu_s"] / base["cpu_s"] - 1),
                f"{r['duration_s']}", runs_each,
            ])  # fmt: skip
        shown.update(new)
    header = ["variant", "wall s", "extra", "CPU s", "extra", "video s", "run"]
    return "\n".join(_table(header, rows)) + "\n"


def finishing_runs(results: Path) -> list[tuple[str, dict]]:
    runs = []
    for label, name in [("latest", FILES["bench_finishing"]),
                        *((c, f"bench-finishing-{c}.json") for c in FINISHING_EARLIER)]:  # fmt: skip
        report = _load(results, name)
        if report is not None:
            runs.append((label, report))
    return runs


# --- bench_fanout ---------------------------------------------------------------------------

EXPORTS = {"1-minute": "1 minute", "10-minute": "10 minutes", "4k-30s": "30 s of 4k"}
EXECUTORS = {
    "in_process": "in process (default)",
    "in_process_each": "in process, a step each",
    "multiprocess": "multiprocess",
}


def fanout_tables(report: dict) -> str:
    """The exports per executor (from Dagster's event log), the 4k join's memory, and the
    predicted wall time of a 10-minute export on more workers."""
    entries: list[tuple[str, dict]] = []
    for name, runs in report.items():
        if name not in EXPORTS:
            continue
        if "executor" in runs:  # one export, not one per executor
            entries.append((name, runs))
        else:
            entries += [(name, runs[e]) for e in EXECUTORS if e in runs]
    rows = []
    for name, r in entries:
        siblings = report[name] if "executor" not in report[name] else {}
        per_step = r["executor"] != "in_process"
        count = max((e["segments"] for e in siblings.values()), default=r["segments"])
        segment = r["segment_s"]
        rows.append([
            EXPORTS[name], EXECUTORS.get(r["executor"], r["executor"]), f"{r['wall_s']:.1f}",
            str(r["segments"]) if per_step else f"1 (all {count})",
            f"{segment['median']:.1f} / {segment['max']:.1f}" if per_step else "—",
            "(in the step)" if r["audio_s"] is None else f"{r['audio_s']:.1f}",
            f"{r['plan_s']:.2f}", f"{r['join_s']:.1f}", f"{r['download_s']:.1f}",
            f"{r['publish_s']:.2f}", f"{r['step_overhead_s']:.1f}",
        ])  # fmt: skip
    header = ["export", "executor", "wall s", "segment steps", "per segment s (median / max)",
              "audio track s", "plan s", "join s", "download s", "publish s",
              "step start-up s"]  # fmt: skip
    lines = _table(header, rows)
    join = report.get("join_10_minutes_4k")
    if join:
        lines += ["", "The join of a 10-minute 4k video (60 copies of one 4k chunk and a "
                  f"10-minute audio track, {join['bytes'] / 1e9:.2f} GB): peak "
                  f"**{join['ffmpeg_mb']:.0f} MB** for FFmpeg and {join['python_mb']:.0f} MB "
                  f"for the Python process, {join['seconds']:.1f} s."]  # fmt: skip
    predicted = report.get("predicted_10_minutes")
    if predicted:
        lines += ["", "Predicted wall time of the 10-minute export on workers of 2 CPUs each "
                  f"(each step paying {predicted['step_overhead_s']:.1f} s of start-up):", ""]  # fmt: skip
        rows = []
        ten = report.get("10-minute", {})
        four_k = report.get("4k-30s")
        if "in_process" in ten and four_k and "in_process_each" in ten:
            chunks = ten["in_process_each"]["segments"]
            mean = four_k["segment_s"]["sum"] / four_k["segments"]
            rows.append(["1 (in process)", f"{ten['in_process']['wall_s']:.1f} s (measured)",
                         f"~{chunks * mean:.0f} s ({chunks} x {mean:.1f} s, the 4k chunks' mean)"])  # fmt: skip
        for workers in predicted["1080p"]:
            cells = [f"{predicted[r][workers]:.1f} s" for r in ("1080p", "4k")]
            if workers == FANOUT_TARGET_WORKERS:
                cells[0] = f"**{cells[0]}**"
            rows.append([workers, *cells])
        lines += _table(["workers", "1080p", "4k"], rows)
        value = predicted["1080p"].get(FANOUT_TARGET_WORKERS)
        if value is not None:
            verdict = "met" if value <= FANOUT_TARGET_S else "missed"
            lines += ["", f"Target: a 10-minute 1080p export on {FANOUT_TARGET_WORKERS} workers "
                      f"within {FANOUT_TARGET_S:.0f} s: **{verdict}** ({value:.1f} s)."]  # fmt: skip
    return "\n".join(lines) + "\n"


# --- bench_export ---------------------------------------------------------------------------


def export_tables(r: dict) -> str:
    """The original benchmark's table, and how time grows with resolution."""
    ratios = r["ratios"]
    ref, p, fast = r["reference"], r["pipeline"], r["pipeline_veryfast"]
    rows = [
        ["reference (doc's command), encode only", f"{ref['seconds']:.1f} s", "1.00x", ""],
        ["pipeline, full 1080p high export", f"{p['seconds']:.1f} s (encode step "
         f"{p['encode_s']:.1f} s)", f"**{_fmt_ratio(ratios['full_vs_reference_time'])}**",
         f"<= {MEDIAN_TIME_LIMIT}x"],
        ["SSIM reference / pipeline", f"{ref['ssim']:.4f} / {p['ssim']:.4f}",
         f"{ratios['ssim_difference']:+.4f}", f">= -{SSIM_MARGIN}"],
        ["size reference / pipeline", f"{ref['bytes'] / 1e6:.1f} / {p['bytes'] / 1e6:.1f} MB",
         _fmt_ratio(ratios["size_vs_reference"]), f"<= {SIZE_LIMIT}x"],
        ["same export at x264 `veryfast`", f"{fast['seconds']:.1f} s, SSIM {fast['ssim']:.4f}, "
         f"{fast['bytes'] / 1e6:.1f} MB", _fmt_ratio(fast["seconds"] / ref["seconds"]), ""],
        ["stream-copy path, encode step", f"{r['stream_copy']['encode_s']:.1f} s",
         f"**{ratios['stream_copy_encode_vs_reference']:.3f}x**", "<= 0.05x"],
        ["stream-copy path, whole export", f"{r['stream_copy']['seconds']:.1f} s",
         f"{ratios['stream_copy_total_vs_reference']:.3f}x", ""],
        ["re-export with one of the 12 clips changed", f"{r['reexport_one_changed']['seconds']:.1f} s",
         f"**{ratios['reexport_vs_full']:.2f}x** of a full export", "<= 0.25x"],
        ["peak RSS, pipeline process / FFmpeg, 1 minute",
         f"{p['rss_pipeline_mb']:.0f} / {p['rss_ffmpeg_mb']:.0f} MB", "", ""],
        ["peak RSS of the reference FFmpeg", f"{ref['rss_ffmpeg_mb']:.0f} MB", "", ""],
    ]  # fmt: skip
    if "ten_minutes" in r:
        t = r["ten_minutes"]
        rows += [
            ["10-minute export (120 distinct clips)", f"{t['seconds']:.0f} s", "", "completes"],
            ["peak RSS of the pipeline process, 10 minutes", f"{t['rss_pipeline_mb']:.0f} MB",
             f"**{ratios['rss_10min_vs_1min']:.2f}x** of 1 minute", "<= 300 MB, <= 1.2x"],
        ]  # fmt: skip
    latency = r["latency"]
    rows.append(["latency INSERT -> `processing`, real daemon (median)",
                 f"{latency['median_s']:.1f} s (samples {', '.join(map(str, latency['samples']))})",
                 "", "<= 10 s"])  # fmt: skip
    lines = [f"Medians of {r['repeat']} runs on {r['machine']['cores']} cores:", ""]
    lines += _table(["measure", "value", "ratio", "target"], rows)
    if "resolutions" in r:
        lines += ["", "How time and memory grow (1 minute of video):", ""]
        lines += _table(["resolution", "time", "encode step", "output", "FFmpeg peak RSS"], [
            [res, f"{v['seconds']:.1f} s", f"{v['encode_s']:.1f} s", f"{v['bytes'] / 1e6:.1f} MB",
             f"{v['rss_ffmpeg_mb']:.0f} MB"]
            for res, v in r["resolutions"].items()
        ])  # fmt: skip
    return "\n".join(lines) + "\n"


# --- bench_memory ---------------------------------------------------------------------------


def memory_tables(report: dict) -> str:
    """Peak memory of each FFmpeg/ffprobe process per source, the worker memory each output
    needs, and a 4k render by encoder threads."""

    def peak(p: dict) -> str:
        return f"{p['rss_mb']:.0f} / {p['data_mb']:.0f}"

    kinds = list(report["sources"][0]["peaks"])
    lines = [f"Peak resident / data segment (MB), one process each, {report['seconds']:g} s "
             f"sources, {report['encoder_threads']} encoder threads:", ""]  # fmt: skip
    lines += _table(["source", *kinds], [
        [s["source"], *(peak(s["peaks"][k]) for k in kinds)] for s in report["sources"]
    ])  # fmt: skip
    pipeline_mb, headroom = report["pipeline_process_mb"], report["headroom"]
    lines += ["", f"Worker memory for one run: the largest FFmpeg peak for the output, plus "
              f"the ~{pipeline_mb:.0f} MB pipeline process, times {headroom:g} as headroom:", ""]  # fmt: skip
    rows = []
    for kind in kinds:
        if not kind.startswith("render "):
            continue
        worst = max((s["peaks"][kind] for s in report["sources"]), key=lambda p: p["rss_mb"])
        need = (worst["rss_mb"] + pipeline_mb) * headroom
        rows.append(
            [kind.removeprefix("render "), f"{peak(worst)} MB", f"**{need / 1024:.1f} GB**"]
        )
    lines += _table(["output", "largest FFmpeg peak (resident / data)", "worker memory"], rows)
    lines += ["", "A 4k render from the 4k source by encoder (and filter) threads:", ""]
    lines += _table(["threads", "resident / data (MB)"], [
        [n, peak(p)] for n, p in report["thread_sweep"].items()
    ])  # fmt: skip
    return "\n".join(lines) + "\n"


# --- headline figures (the repository's README) ---------------------------------------------

LINK = "export_pipeline_tests/benchmarks/README.md"


def headline(results: Path) -> str:
    """One line per benchmark with a result worth knowing without reading the tables."""
    lines = []
    corpus = _load(results, FILES["bench_corpus"])
    if corpus:
        t = corpus["targets"][corpus["default_preset"]]
        lines.append(
            f"- A whole 1-minute 1080p export (INSERT to `complete` on the daemon) takes a median "
            f"{t['median_time_ratio']:.2f}x of the time of the product doc's FFmpeg command "
            f"alone over {len(t['classes'])} kinds of footage (worst {t['worst_time_ratio']:.2f}x, "
            f"{t['worst_class']}), its SSIM at most {abs(t['worst_ssim_diff']):.4f} below "
            f"([footage]({LINK}#every-kind-of-footage-bench_corpus))."
        )  # fmt: skip
    fanout = _load(results, FILES["bench_fanout"])
    if fanout and "predicted_10_minutes" in fanout:
        ten = fanout.get("10-minute", {}).get("in_process")
        predicted = fanout["predicted_10_minutes"]["1080p"][FANOUT_TARGET_WORKERS]
        alone = f"{ten['wall_s']:.0f} s in one process on 2 CPUs, " if ten else ""
        lines.append(
            f"- A 10-minute 1080p export: {alone}{predicted:.1f} s predicted on "
            f"{FANOUT_TARGET_WORKERS} workers ([segments as steps]({LINK}#segments-as-steps-bench_fanout))."
        )  # fmt: skip
    eta = _load(results, FILES["bench_eta"])
    if eta:
        counts = []
        for mark in MARKS:
            values = [r["errors"][mark][0] for r in eta if r["errors"].get(mark) is not None]
            counts.append(
                f"{sum(abs(v) <= ETA_TARGET for v in values)} of {len(values)} at {mark} %"
            )
        lines.append(
            f"- The time left (`eta_s`) is within ±{ETA_TARGET:.0%} for {', '.join(counts)} "
            f"([time left]({LINK}#time-left-bench_eta))."
        )  # fmt: skip
    latency = _load(results, FILES["bench_latency"])
    if latency:
        medians = []
        for db, variants in latency.items():
            label = [name for name in variants if "after" in name][-1]  # the newest "after"
            samples = [s["total_s"] for run in variants[label] for s in run["samples"]]
            medians.append(f"{statistics.median(samples):.1f} s on {db}")
        lines.append(
            f"- A new request is `processing` a median {' and '.join(medians)} after its "
            f"INSERT on a warm daemon ([latency]({LINK}#insert-to-processing-bench_latency))."
        )  # fmt: skip
    runs = finishing_runs(results)
    if runs:
        extras = []
        for variant in ("transitions", "loudness", "everything"):
            for _, report in runs:
                if variant in report:
                    extra = report[variant]["seconds"] / report["plain"]["seconds"] - 1
                    extras.append(f"{variant} {_signed_percent(extra)}")
                    break
        lines.append(
            f"- Finishing features, wall time over a plain render: {', '.join(extras)} "
            f"([finishing]({LINK}#finishing-features-bench_finishing))."
        )  # fmt: skip
    memory = _load(results, FILES["bench_memory"])
    if memory:
        needs = []
        for kind in memory["sources"][0]["peaks"]:
            if kind.startswith("render "):
                worst = max(s["peaks"][kind]["rss_mb"] for s in memory["sources"])
                need = (worst + memory["pipeline_process_mb"]) * memory["headroom"]
                needs.append(f"{kind.removeprefix('render ')} {need / 1024:.1f} GB")
        lines.append(
            f"- Worker memory for one run: {', '.join(needs)} "
            f"([memory]({LINK}#memory-per-export-kind-bench_memory))."
        )  # fmt: skip
    return "\n".join(lines) + "\n"


# --- bench_latency --------------------------------------------------------------------------


def latency_tables(report: dict) -> str:
    """Per database and variant (runs recorded alternately, their requests pooled): the
    median INSERT -> `processing` and the median of each phase."""
    lines = [
        f"Medians in seconds over the requests of every run of a variant (target: INSERT -> "
        f"`processing` <= {LATENCY_TARGET_S:g} s). Phases: sensor = INSERT -> the run's record "
        "(the tick took the row); dequeue = -> RUN_STARTING; worker "
        "start = -> RUN_START; to step = -> first STEP_START; step -> processing = -> the "
        "row's `processing_started_at`.",
        "",
    ]
    header = ["database", "variant", "runs", "requests", "INSERT -> processing", "worst",
              *LATENCY_PHASES, "load avg"]  # fmt: skip
    rows = []
    for db, variants in report.items():
        for label, runs in variants.items():
            samples = [s for run in runs for s in run["samples"]]
            median = statistics.median(s["total_s"] for s in samples)
            mark = "**" if median <= LATENCY_TARGET_S else ""
            rows.append([
                db, label, str(len(runs)), str(len(samples)), f"{mark}{median:.2f}{mark}",
                f"{max(s['total_s'] for s in samples):.2f}",
                *(f"{statistics.median(s['phases'][p] for s in samples):.2f}"
                  for p in LATENCY_PHASES),
                ", ".join(f"{run['load_average']:.1f}" for run in runs),
            ])  # fmt: skip
    return "\n".join(lines + _table(header, rows)) + "\n"


# --- the blocks -----------------------------------------------------------------------------


def _load(results: Path, name: str) -> Any:
    path = results / name
    return json.loads(path.read_text()) if path.is_file() else None


def _missing(name: str) -> str:
    return (f"_No results recorded: `results/{name}` is not there yet. Run the benchmark "
            "with its output in `results/` (see above) to fill this in._\n")  # fmt: skip


def _from_file(key: str, render: Callable[[Any], str]) -> Callable[[Path], str]:
    def block(results: Path) -> str:
        data = _load(results, FILES[key])
        return _missing(FILES[key]) if data is None else render(data)

    return block


TABLES: dict[str, Callable[[Any], str]] = {
    "bench_corpus": corpus_tables,
    "bench_formats": formats_tables,
    "bench_formats_calibration": calibration_tables,
    "bench_formats_encoders": encoders_tables,
    "bench_eta": eta_tables,
    "bench_prior": prior_tables,
    "bench_finishing": lambda report: finishing_tables([("this run", report)]),
    "bench_fanout": fanout_tables,
    "bench_export": export_tables,
    "bench_memory": memory_tables,
    "bench_latency": latency_tables,
}
BLOCKS: dict[str, Callable[[Path], str]] = {
    **{key: _from_file(key, render) for key, render in TABLES.items()},
    "bench_finishing": lambda results: (
        finishing_tables(runs)
        if (runs := finishing_runs(results))
        else _missing(FILES["bench_finishing"])
    ),
    "bench_headline": headline,
}
# Which blocks each README holds.
READMES: dict[Path, tuple[str, ...]] = {
    BENCH_README: tuple(TABLES),
    REPO_README: ("bench_headline",),
}


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


# What each block is generated from, where it is not its one file.
SOURCES = {"bench_finishing": "results/bench-finishing*.json", "bench_headline": "results/*.json"}


def _wrap(name: str, body: str) -> str:
    begin, end = _markers(name)
    source = SOURCES.get(name) or f"results/{FILES[name]}"
    note = f"<!-- generated from {source} by `{COMMAND}`: edit the renderer, not this -->"
    return f"{begin}\n{note}\n\n{body.rstrip()}\n\n{end}"


def blocks_in(text: str) -> dict[str, str]:
    """The generated blocks of a README, markers included, by name."""
    found: dict[str, str] = {}
    for match in re.finditer(r"<!-- (\w+):begin -->.*?<!-- \1:end -->", text, re.DOTALL):
        if match.group(1) in found:
            raise ValueError(f"block {match.group(1)} appears twice")
        found[match.group(1)] = match.group(0)
    return found


def rendered(text: str, names: tuple[str, ...], results: Path) -> str:
    """`text` with the blocks `names` rendered anew from `results`; each must be there once."""
    present = blocks_in(text)
    for name in names:
        if name not in present:
            raise ValueError(f"no {_markers(name)[0]} ... {_markers(name)[1]} block")
        text = text.replace(present[name], _wrap(name, BLOCKS[name](results)))
    return text


def stale(
    results: Path | None = None, readmes: dict[Path, tuple[str, ...]] | None = None
) -> list[str]:
    """The blocks whose text differs from what their JSON gives, as `README: name`."""
    results, readmes = results or RESULTS, readmes or READMES
    out = []
    for path, names in readmes.items():
        current, expected = (
            blocks_in(path.read_text()),
            blocks_in(rendered(path.read_text(), names, results)),
        )
        out += [f"{path.name}: {name}" for name in names if current.get(name) != expected[name]]
    return out


def update(
    results: Path | None = None, readmes: dict[Path, tuple[str, ...]] | None = None
) -> list[Path]:
    """Rewrite the generated blocks; returns the files that changed."""
    results, readmes = results or RESULTS, readmes or READMES
    # All rendered before any is written: a README missing a block changes nothing.
    texts = {path: (path.read_text(), names) for path, names in readmes.items()}
    new = {path: rendered(text, names, results) for path, (text, names) in texts.items()}
    changed = [path for path in texts if new[path] != texts[path][0]]
    for path in changed:
        path.write_text(new[path])
    return changed


def record(key: str, path: Path) -> None:
    """What a benchmark does after writing its results to `path`: print the tables, and
    regenerate the READMEs when `path` is the recorded results file of `key`."""
    print("\n" + TABLES[key](json.loads(path.read_text())))
    if path.resolve() == (RESULTS / FILES[key]).resolve():
        for changed in update():
            print(f"rewrote the generated blocks of {changed}")
    else:
        print(f"(not recorded: the README's tables come from results/{FILES[key]})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="list stale blocks, exit 1")
    args = parser.parse_args(argv)
    if args.check:
        blocks = stale()
        for name in blocks:
            print(f"stale: {name} (run `{COMMAND}`)")
        return 1 if blocks else 0
    for changed in update():
        print(f"rewrote {changed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
