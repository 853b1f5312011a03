"""Benchmark: peak memory of FFmpeg per export kind, to size workers.

    .venv/bin/python -m export_pipeline_tests.benchmarks.bench_memory [--seconds 3]

For sources at 1080p, 4k and 6k (generated, H.264) it measures the peak resident memory of
each process the pipeline runs on a clip: the probe, the decode check, the completeness scan
and a one-segment render to 720p, 1080p and 4k (16:9, `high`, the default preset), each in
a process of its own (`wait4` rusage). Prints a table and the worker memory each output
resolution needs: the largest segment render for it plus the pipeline process (~150 MB,
README's Performance table) and headroom.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

from export_pipeline.media.commands import (
    SegmentJob,
    decode_check_argv,
    encode_settings,
    packets_argv,
    probe_argv,
    segment_argv,
)

SOURCES = {"1080p": (1920, 1080), "4k": (3840, 2160), "6k": (6144, 3456)}
OUTPUTS = ("720p", "1080p", "4k")
PIPELINE_PROCESS_MB = 150


def peak_mb(argv: list[str]) -> float:
    """Run `argv`; return the peak resident memory of that one process in MB."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[:3]} failed: {proc.stderr.read().decode()[-500:]}")
    return usage.ru_maxrss / 1024


def make_source(path: Path, width: int, height: int, seconds: float) -> None:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc2=size={width}x{height}:rate=30:duration={seconds},noise=alls=8:allf=t",
         "-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:v", "libx264", "-preset",
         "ultrafast", "-crf", "20", "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )  # fmt: skip


def measure(seconds: float) -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, (width, height) in SOURCES.items():
            source = work / f"{name}.mp4"
            make_source(source, width, height, seconds)
            row: dict = {"source": f"{name} ({width}x{height})"}
            row["probe"] = peak_mb(probe_argv(source))
            row["decode check"] = peak_mb(decode_check_argv(source))
            row["completeness scan"] = peak_mb(packets_argv(source))
            for output in OUTPUTS:
                settings = encode_settings(output, "16:9", "high", Fraction(30))
                job = SegmentJob(source, 0.0, seconds, True, work / "v.mp4", work / "a.wav",
                                 width, height)  # fmt: skip
                row[f"render {output}"] = peak_mb(segment_argv(job, settings))
            rows.append(row)
            print(row, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        cells = [row["source"], *(f"{row[c]:.0f} MB" for c in columns[1:])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| output | largest FFmpeg peak | worker memory to give a run |")
    lines.append("| --- | --- | --- |")
    for output in OUTPUTS:
        peak = max(row[f"render {output}"] for row in rows)
        need = (peak + PIPELINE_PROCESS_MB) * 1.5  # headroom: other footage, a join
        lines.append(f"| {output} | {peak:.0f} MB | {need / 1024:.1f} GB |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    print(table(measure(args.seconds)))


if __name__ == "__main__":
    main()
