"""Benchmark: what each finishing feature costs on the 1-minute export.

    .venv/bin/python -m export_pipeline_tests.benchmarks.bench_finishing [--repeat 2] \\
        [--out bench-finishing.json] [--variants plain,transitions]

The standard clip set of `bench_export` (twelve 5 s 720p24 clips with motion, noise and a
tone each) is rendered as the encode step renders it (`render_video`: segments, join) at
1080p `high`, with: nothing; loudness normalization; crossfades at all 11 boundaries
(0.5 s); a looped soundtrack; 12 burned-in captions; the same captions as a soft track;
everything together. Each variant runs `--repeat` times from a cold segment cache; the
median wall time and FFmpeg CPU seconds are reported with the extra over the plain render.
Target (issue 12): normalization and transitions each at most 10 % extra time. Run it on a
quiet machine: nothing else may share the CPUs. Writes JSON (`--out`) and prints the table
(`report.py`); with `--out export_pipeline_tests/benchmarks/results/bench-finishing.json` it
also rewrites the table of the benchmarks' README.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

from export_pipeline.domain.captions import parse_captions, parse_style
from export_pipeline.domain.soundtrack import Soundtrack
from export_pipeline.media.captions import BurnIn
from export_pipeline.media.clip import Clip, Transition
from export_pipeline.media.encoding import encode_settings
from export_pipeline.media.loudness import DEFAULT_LOUDNESS_LUFS
from export_pipeline.media.plan import RenderOptions
from export_pipeline.media.probe import probe
from export_pipeline.media.render import render_video
from export_pipeline.media.soundtrack import Music
from export_pipeline_tests.benchmarks import report as tables
from export_pipeline_tests.benchmarks.bench_export import CLIPS, SECONDS, make_clip

VARIANTS = ("plain", "loudness", "transitions", "soundtrack", "burned captions",
            "soft captions", "everything")  # fmt: skip


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def captions_text() -> str:
    """One cue per clip, 3 s each, in the middle of the clip (on the final timeline)."""
    lines = []
    for n in range(CLIPS):
        start = n * SECONDS + 1
        lines += [str(n + 1), f"00:00:{start:02d},000 --> 00:00:{start + 3:02d},000",
                  f"Scene {n + 1}: a caption of about forty characters", ""]  # fmt: skip
    return "\n".join(lines)


def render(variant: str, clips: list[Path], music: Path, work: Path) -> dict:
    inputs = [Clip(c, 0.0, None, probe(c), f"clip {n}") for n, c in enumerate(clips, 1)]
    loudness = DEFAULT_LOUDNESS_LUFS if variant in ("loudness", "everything") else None
    settings = encode_settings("1080p", "16:9", "high", Fraction(24), loudness=loudness)
    if variant in ("transitions", "everything"):
        inputs = [inputs[0]] + [replace(i, transition=Transition("crossfade", 0.5))
                                for i in inputs[1:]]  # fmt: skip
    cues = tuple(parse_captions(captions_text(), "srt"))
    options: dict = {}
    if variant in ("soundtrack", "everything"):
        options["music"] = Music(music, Soundtrack(volume=0.3), 20.0)
    if variant in ("burned captions", "everything"):
        options["captions"] = BurnIn(cues, parse_style(None))
    if variant == "soft captions":
        options["subtitles"] = cues
    output = work / f"{variant.replace(' ', '-')}.mp4"
    started, cpu = time.monotonic(), children_cpu()
    result = render_video(inputs, settings, work / "scratch", output, RenderOptions(**options))
    entry = {
        "seconds": round(time.monotonic() - started, 2),
        "cpu_s": round(children_cpu() - cpu, 1),
        "duration_s": round(result.duration_s, 2),
        "bytes": result.size_bytes,
    }
    output.unlink()
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench-finishing.json"))
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="a comma-separated subset (plain first)"
    )
    args = parser.parse_args()
    variants = [v for v in VARIANTS if v in args.variants.split(",")]
    if variants[:1] != ["plain"]:
        parser.error("--variants must include plain: the extras are measured against it")
    work = Path(tempfile.mkdtemp(prefix="bench-finishing-"))
    clips = []
    for n in range(CLIPS):
        clips.append(work / f"clip{n:02d}.mp4")
        make_clip(clips[-1], n)
    music = work / "music.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "sine=f=196:d=20,volume=0.5", str(music)], check=True)  # fmt: skip
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(args.repeat):  # interleaved, so a slow spell hits every variant alike
        for variant in variants:
            runs[variant].append(render(variant, clips, music, work))
            print(f"  {variant}: {runs[variant][-1]}", flush=True)
    report = {
        v: {
            "seconds": statistics.median(r["seconds"] for r in rs),
            "cpu_s": statistics.median(r["cpu_s"] for r in rs),
            "duration_s": rs[0]["duration_s"],
            "runs": rs,
        }
        for v, rs in runs.items()
    }
    args.out.write_text(json.dumps(report, indent=2))
    tables.record("bench_finishing", args.out)


if __name__ == "__main__":
    main()
