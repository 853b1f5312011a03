"""Benchmark: every output format at every quality tier, on classes of the corpus.

    .venv/bin/python -m export_pipeline_tests.benchmarks.bench_formats \\
        [--classes real,detail,cartoon] [--clips 6] [--real A.mp4,B.mp4] [--work DIR] \\
        [--out bench-formats.json] [--calibrate]

`--calibrate` chooses the CRFs of the other codecs instead (`calibrate`): per class and tier,
each codec at three CRFs around today's, SSIM interpolated to the CRF that matches the H.264
output's; the choice per tier is the lowest over the classes (every class meets the target).
Calibrate on some classes and check the result on others (the plain run).

`--encoders` compares candidate WebM encoders on each class: libvpx-vp9 with the pipeline's
own arguments against SVT-AV1 at several presets, each over a range of CRFs, one FFmpeg run
of the whole timeline each (the same decode and scale for all), CPU seconds against SSIM
and size. It is how `webm` came to be VP9 (README, Formats).

For each class (`corpus.CLASSES`, or `real` from files), tier (low, medium, high) and format
(`domain.formats.FORMATS`), the timeline is rendered as the pipeline renders it (`render_video`:
segments, join, the format's encoder settings) at 1080p 16:9, and measured: wall time, CPU
seconds of FFmpeg, size, and SSIM against the sources (one pass per class). The targets:
at each tier, every format within 0.005 of the H.264 output's SSIM with a smaller file.
Writes JSON (`--out`) and prints its table (`report.py`); with `--out` in
`export_pipeline_tests/benchmarks/results/` (`bench-formats.json`, with `--calibrate`
`bench-formats-calibration.json`, with `--encoders` `bench-formats-encoders.json`) it also
rewrites that table of the benchmarks' README. CPU seconds are the speed figure that holds
when the machine is shared; wall time is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

from export_pipeline.domain.formats import FORMATS
from export_pipeline.domain.target import QUALITIES
from export_pipeline.media.clip import Clip
from export_pipeline.media.encoding import encode_settings, video_encoder_args
from export_pipeline.media.frame import choose_frame_rate
from export_pipeline.media.probe import probe
from export_pipeline.media.render import render_video
from export_pipeline_tests.benchmarks import report as tables
from export_pipeline_tests.benchmarks.bench_corpus import ssim_many
from export_pipeline_tests.benchmarks.corpus import CLASSES, make_clips, real_footage, run_ffmpeg
from export_pipeline_tests.benchmarks.report import SSIM_MARGIN


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# Trial values (`--crf`, `--cap-factor`) for the other codecs, before they go into the code.
TRIAL: dict = {"crf": {}, "cap_factor": None}


def settings_for(quality: str, name: str, fps: Fraction):
    """The pipeline's settings for this tier and format, with the trial values applied."""
    settings = encode_settings("1080p", "16:9", quality, fps, format=name)
    if name == "mp4":
        return settings
    crf = TRIAL["crf"].get((settings.codec, quality), settings.crf)
    factor = TRIAL["cap_factor"]
    if factor:
        cap = round(settings.maxrate * factor / 1000) * 1000
        settings = replace(settings, maxrate=cap, bufsize=cap)
    return replace(settings, crf=crf)


def measure(clips: list[Path], work: Path) -> dict:
    """Every tier and format on these clips: time, CPU, size, then SSIM of all outputs."""
    inputs = [Clip(c, 0.0, None, probe(c), f"clip {n}") for n, c in enumerate(clips, 1)]
    fps = choose_frame_rate([i.info.fps for i in inputs])
    results: dict[str, dict[str, dict]] = {}
    outputs: list[tuple[dict, Path]] = []
    for quality in QUALITIES:
        for name, target in FORMATS.items():
            settings = settings_for(quality, name, Fraction(fps))
            output = work / f"{quality}-{name}.{target.extension}"
            started, cpu = time.monotonic(), children_cpu()
            render_video(inputs, settings, work / "scratch", output)
            entry = {
                "seconds": round(time.monotonic() - started, 2),
                "cpu_s": round(children_cpu() - cpu, 1),
                "bytes": output.stat().st_size,
                "crf": settings.crf,
                "cap": settings.maxrate,
                "speed": settings.preset,
            }
            results.setdefault(quality, {})[name] = entry
            outputs.append((entry, output))
            print(f"  {quality} {name}: {entry}", flush=True)
    for (entry, path), score in zip(
        outputs, ssim_many([p for _, p in outputs], clips), strict=True
    ):
        entry["ssim"] = score
        path.unlink()
    return results


def calibrate(clips: list[Path], work: Path, step: int = 4, only: tuple[str, ...] = ()) -> dict:
    """Per tier: H.264's SSIM and size, then for each other codec its SSIM and size at
    today's CRF and `step` either side, and the CRF at which its SSIM would equal H.264's
    minus half the margin (linear between the two CRFs that bracket it; clamped to the
    measured range)."""
    inputs = [Clip(c, 0.0, None, probe(c), f"clip {n}") for n, c in enumerate(clips, 1)]
    fps = Fraction(choose_frame_rate([i.info.fps for i in inputs]))
    runs: list[tuple[str, str, int, Path, dict]] = []
    for quality in QUALITIES:
        for name, target in FORMATS.items():
            if only and name != "mp4" and name not in only:
                continue
            base = settings_for(quality, name, fps)
            crfs = [base.crf] if name == "mp4" else [base.crf - step, base.crf, base.crf + step]
            for crf in crfs:
                output = work / f"{quality}-{name}-{crf}.{target.extension}"
                cpu = children_cpu()
                render_video(inputs, replace(base, crf=crf), work / "scratch", output)
                entry = {"bytes": output.stat().st_size, "cpu_s": round(children_cpu() - cpu, 1)}
                runs.append((quality, name, crf, output, entry))
                print(f"  {quality} {name} crf {crf}: {entry}", flush=True)
    scores = ssim_many([r[3] for r in runs], clips)
    result: dict[str, dict] = {}
    for (quality, name, crf, output, entry), score in zip(runs, scores, strict=True):
        entry["ssim"] = score
        result.setdefault(quality, {}).setdefault(name, {})[crf] = entry
        output.unlink()
    for tier in result.values():
        (h264,) = tier["mp4"].values()
        goal = h264["ssim"] - SSIM_MARGIN / 2
        for name, points in tier.items():
            if name != "mp4":
                points["match_crf"] = matching_crf(
                    {crf: p["ssim"] for crf, p in points.items()}, goal
                )
    return result


def matching_crf(ssim_at: dict[int, float], goal: float) -> float:
    """The CRF at which SSIM (falling as CRF rises) would reach `goal`."""
    points = sorted(ssim_at.items())
    for (c0, s0), (c1, s1) in zip(points, points[1:], strict=False):
        if s0 >= goal >= s1 and s0 != s1:
            return round(c0 + (c1 - c0) * (s0 - goal) / (s0 - s1), 1)
    return float(points[0][0] if goal > points[0][1] else points[-1][0])


# SVT-AV1 (libsvtav1) presets and CRFs tried against VP9 by `--encoders`.
AV1_PRESETS = (8, 10, 12)
AV1_CRFS = (32, 40, 48)


def compare_encoders(clips: list[Path], work: Path) -> list[dict]:
    """VP9 (the pipeline's arguments, medium tier, CRF steps either side) and SVT-AV1
    (AV1_PRESETS x AV1_CRFS) on the timeline at 1080p: CPU seconds, size, SSIM."""
    fps = Fraction(choose_frame_rate([probe(c).fps for c in clips]))
    vp9 = encode_settings("1080p", "16:9", "medium", fps, format="webm")
    candidates = [
        (f"vp9 speed {vp9.preset} crf {crf}", video_encoder_args(replace(vp9, crf=crf)))
        for crf in (vp9.crf - 6, vp9.crf, vp9.crf + 6)
    ] + [
        (f"svt-av1 preset {p} crf {crf}",
         ["-c:v", "libsvtav1", "-preset", str(p), "-crf", str(crf), "-pix_fmt", "yuv420p"])
        for p in AV1_PRESETS
        for crf in AV1_CRFS
    ]  # fmt: skip
    inputs = [arg for c in clips for arg in ("-i", str(c))]
    refs = "".join(f"[{i}:v]" for i in range(len(clips)))
    graph = f"{refs}concat=n={len(clips)}:v=1:a=0,scale=1920:1080,fps={fps},format=yuv420p[v]"
    rows, outputs = [], []
    for name, args in candidates:
        output = work / f"encoders-{len(outputs)}.webm"
        started, cpu = time.monotonic(), children_cpu()
        run_ffmpeg([*inputs, "-filter_complex", graph, "-map", "[v]", *args,
                    "-an", "-f", "webm", str(output)])  # fmt: skip
        rows.append({
            "encoder": name,
            "cpu_s": round(children_cpu() - cpu, 1),
            "seconds": round(time.monotonic() - started, 1),
            "bytes": output.stat().st_size,
        })  # fmt: skip
        outputs.append(output)
        print(f"  {rows[-1]}", flush=True)
    for row, output, score in zip(rows, outputs, ssim_many(outputs, clips), strict=True):
        row["ssim"] = score
        output.unlink()
    return rows


def choose_crfs(report: dict) -> dict[str, dict[str, int]]:
    """Per codec and tier: the lowest matching CRF over the classes, rounded down."""
    chosen: dict[str, dict[str, int]] = {}
    for tiers in report["calibration"].values():
        for quality, formats in tiers.items():
            for name, points in formats.items():
                if name == "mp4":
                    continue
                codec = FORMATS[name].video_codec
                crf = int(points["match_crf"])
                old = chosen.setdefault(codec, {}).get(quality, crf)
                chosen[codec][quality] = min(old, crf)
    return chosen


def class_clips(name: str, args, work: Path) -> tuple[list[Path], Path]:
    """The clips of corpus class `name` (or `real`, from --real), and an output folder."""
    footage = (
        real_footage([Path(p) for p in args.real.split(",")]) if name == "real"
        else CLASSES[name]
    )  # fmt: skip
    print(f"[{name}] {footage.what}", flush=True)
    clips = make_clips(footage, work / "clips", args.clips, args.seconds)
    out = work / "outputs"
    out.mkdir(parents=True, exist_ok=True)
    return clips, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", default="detail,cartoon")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--real", default=None, help="real footage files, comma-separated")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench-formats.json"))
    parser.add_argument("--calibrate", action="store_true", help="choose CRFs (see above)")
    parser.add_argument("--formats", default="", help="calibrate only these (e.g. webm)")
    parser.add_argument("--encoders", action="store_true", help="VP9 against AV1 (see above)")
    parser.add_argument("--crf", default="", help="trial CRFs, e.g. hevc:low=30,vp9:high=33")
    parser.add_argument(
        "--cap-factor",
        type=float,
        default=None,
        help="trial: the other codecs' bitrate cap as a fraction of H.264's",
    )
    args = parser.parse_args()
    for item in filter(None, args.crf.split(",")):
        codec_tier, value = item.split("=")
        TRIAL["crf"][tuple(codec_tier.split(":"))] = int(value)
    TRIAL["cap_factor"] = args.cap_factor
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-formats-"))
    if args.encoders:
        report = {}
        for name in args.classes.split(","):
            clips = make_clips(CLASSES[name], work / "clips", args.clips, args.seconds)
            print(f"[{name}]", flush=True)
            report[name] = compare_encoders(clips, work)
            args.out.write_text(json.dumps(report, indent=2))
        tables.record("bench_formats_encoders", args.out)
        return
    if args.calibrate:
        today = {f.video.codec: dict(f.video.crf) for f in FORMATS.values()}
        report = {"today": today, "calibration": {}}
        for name in args.classes.split(","):
            clips, out = class_clips(name, args, work)
            only = tuple(filter(None, args.formats.split(",")))
            report["calibration"][name] = calibrate(clips, out, only=only)
            report["chosen"] = choose_crfs(report)
            args.out.write_text(json.dumps(report, indent=2))
        tables.record("bench_formats_calibration", args.out)
        return
    report: dict = {"classes": {}}
    for name in args.classes.split(","):
        clips, out = class_clips(name, args, work)
        report["classes"][name] = measure(clips, out)
        shutil.rmtree(out / "scratch", ignore_errors=True)
        args.out.write_text(json.dumps(report, indent=2))
    tables.record("bench_formats", args.out)
    ratios = [
        f["bytes"] / t["mp4"]["bytes"]
        for tiers in report["classes"].values()
        for t in tiers.values()
        for n, f in t.items()
        if n != "mp4"
    ]
    print(f"median size vs H.264 over formats, tiers and classes: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
