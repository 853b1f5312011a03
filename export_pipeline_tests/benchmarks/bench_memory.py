"""Benchmark: peak memory of FFmpeg per export kind, to size workers and `Limits`.

    .venv/bin/python -m export_pipeline_tests.benchmarks.bench_memory [--seconds 3] [--out F.json]

For sources at 1080p, 4k and 6k (generated, H.264 + AAC) it measures each process the
pipeline runs on a clip: the probe, the decode check, the completeness scan and a
one-segment render to 720p, 1080p and 4k (16:9, `high`, the default preset, this machine's
encoder threads), one process per measurement. Two numbers per process:

- peak resident memory (`wait4` rusage, exact): what the worker's memory must hold;
- peak data segment (VmData, sampled every 20 ms from /proc): what `EXPORT_FFMPEG_MEMORY_MB`
  (RLIMIT_DATA) counts.

Then a 4k render at 3 to 48 encoder threads: what a worker that sees more CPUs would take
if the encoder's threads were not tied to the CPUs it really gets (`encoder_threads`).
Prints the tables and the worker memory each output resolution needs (`report.py`); writes
JSON with `--out`, and with `--out export_pipeline_tests/benchmarks/results/bench-memory.json`
also rewrites the tables of the benchmarks' README.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path

from export_pipeline.media.encoding import encode_settings
from export_pipeline.media.probe import decode_check_argv, packets_argv, probe_argv
from export_pipeline.media.segment import Segment, segment_argv
from export_pipeline_tests.benchmarks import report as tables
from export_pipeline_tests.media import tools

SOURCES = {"1080p": (1920, 1080), "4k": (3840, 2160), "6k": (6144, 3456)}
OUTPUTS = ("720p", "1080p", "4k")
THREAD_SWEEP = (3, 6, 12, 24, 48)
PIPELINE_PROCESS_MB = 150  # the run worker's own Python process (bench_export's peak RSS)
HEADROOM = 1.5  # other footage, a join, the page cache of the files in flight


@dataclass(frozen=True)
class Peak:
    rss_mb: float
    data_mb: float

    def __str__(self) -> str:
        return f"{self.rss_mb:.0f} / {self.data_mb:.0f}"


def peak(argv: list[str]) -> Peak:
    """Run `argv` in a process of its own; its peak resident memory and data segment."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    data_kb = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal data_kb
        while not done.wait(0.02):
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                return
            for line in status.splitlines():
                if line.startswith("VmData:"):
                    data_kb = max(data_kb, int(line.split()[1]))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed: {stderr.decode()[-500:]}")
    return Peak(usage.ru_maxrss / 1024, data_kb / 1024)


def make_source(path: Path, width: int, height: int, seconds: float) -> None:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc2=size={width}x{height}:rate=30:duration={seconds},noise=alls=8:allf=t",
         "-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:v", "libx264", "-preset",
         "ultrafast", "-crf", "20", "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )  # fmt: skip


def segment(source: Path, size: tuple[int, int], seconds: float, work: Path) -> Segment:
    width, height = size
    return tools.segment(source, 0.0, seconds, video=work / "v.mp4", audio=work / "a.wav",
                         width=width, height=height)  # fmt: skip


def measure(seconds: float, work: Path) -> list[dict]:
    rows: list[dict] = []
    for name, size in SOURCES.items():
        source = work / f"{name}.mp4"
        make_source(source, *size, seconds)
        row: dict = {"source": f"{name} ({size[0]}x{size[1]})"}
        row["probe"] = peak(probe_argv(source))
        row["decode check"] = peak(decode_check_argv(source))
        row["completeness scan"] = peak(packets_argv(source))
        for output in OUTPUTS:
            settings = encode_settings(output, "16:9", "high", Fraction(30))
            row[f"render {output}"] = peak(
                segment_argv(segment(source, size, seconds, work), settings)
            )
        rows.append(row)
        print(row, flush=True)
    return rows


def thread_sweep(seconds: float, work: Path) -> dict[int, Peak]:
    source = work / "4k.mp4"
    settings = encode_settings("4k", "16:9", "high", Fraction(30))
    job = segment(source, SOURCES["4k"], seconds, work)
    return {n: peak(segment_argv(job, replace(settings, threads=n))) for n in THREAD_SWEEP}


def results(seconds: float, rows: list[dict], sweep: dict[int, Peak]) -> dict:
    """The measurements as `report.memory_tables` reads them."""
    return {
        "machine": {"cores": os.cpu_count()},
        "seconds": seconds,
        "encoder_threads": encode_settings("1080p", "16:9", "high", Fraction(30)).threads,
        "pipeline_process_mb": PIPELINE_PROCESS_MB,
        "headroom": HEADROOM,
        "sources": [
            {
                "source": row["source"],
                "peaks": {k: asdict(v) for k, v in row.items() if k != "source"},
            }
            for row in rows
        ],
        "thread_sweep": {str(n): asdict(p) for n, p in sweep.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = measure(args.seconds, work)
        sweep = thread_sweep(args.seconds, work)
    report = results(args.seconds, rows, sweep)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
        tables.record("bench_memory", args.out)
    else:
        print("\n" + tables.memory_tables(report))


if __name__ == "__main__":
    main()
