"""Benchmark: the pipeline against the product doc's reference FFmpeg command.

    .venv/bin/python -m export_pipeline_tests.benchmarks.bench_export [--repeat 3] [--quick]

Generates a deterministic clip set (twelve 5 s 1280x720 24 fps H.264/AAC clips with motion
and noise), serves it from an HTTP server on loopback and measures, reporting medians:
the reference command (encode only, clips on local disk); a full 1080p `high` export
through a real Dagster run; SSIM of both against one reference rendering (the source clips
scaled to 1080p, built on the fly) and their sizes; peak RSS of the pipeline process and of
FFmpeg; the stream-copy path; a re-export after one clip changed; a 10-minute export; the
INSERT -> `processing` latency with the real daemon; and how time grows with resolution.
Writes JSON (`--out`, default `bench-export.json`) and prints its tables (`report.py`); with
`--out export_pipeline_tests/benchmarks/results/bench-export.json` it also rewrites the
tables of the benchmarks' README.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from export_pipeline.cli.demo import serve_directory
from export_pipeline_tests.benchmarks import report as tables

PYTHON = sys.executable
CLIPS = 12
SECONDS = 5


def run_usage(argv: list[str]):
    """Run a command; return (wall seconds, its and its children's resource usage)."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[:4]}... failed: {proc.stderr.read().decode()[-2000:]}")
    return elapsed, usage


def run(argv: list[str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS in MB of it and its children)."""
    elapsed, usage = run_usage(argv)
    return elapsed, usage.ru_maxrss / 1024


def make_clip(path: Path, n: int, size: str = "1280x720", bitrate: str | None = None) -> None:
    """Clip `n`: moving test pattern with its own hue and temporal noise, and a tone."""
    video = f"testsrc2=size={size}:rate=24:duration={SECONDS},hue=h={n * 29 % 360},noise=alls=10:allf=t+u:all_seed={n + 1}"
    rate = (
        ["-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate] if bitrate else ["-crf", "18"]
    )
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", video, "-f", "lavfi", "-i",
         f"sine=frequency={220 + 40 * n}:duration={SECONDS}:sample_rate=48000",
         "-c:v", "libx264", "-preset", "veryfast", *rate, "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "128k", "-shortest", str(path)],
        check=True,
    )  # fmt: skip


def reference_argv(clips: list[Path], out: Path) -> list[str]:
    """The product doc's command: trim + concat filter graph, libx264 medium at 8 Mbit/s."""
    inputs = [arg for c in clips for arg in ("-i", str(c))]
    parts = "".join(
        f"[{i}:v]trim=0:{SECONDS},setpts=PTS-STARTPTS[v{i}];"
        f"[{i}:a]atrim=0:{SECONDS},asetpts=PTS-STARTPTS[a{i}];"
        for i in range(len(clips))
    )
    joined = "".join(f"[v{i}][a{i}]" for i in range(len(clips)))
    graph = f"{parts}{joined}concat=n={len(clips)}:v=1:a=1[v][a]"
    return ["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", graph, "-map", "[v]",
            "-map", "[a]", "-c:v", "libx264", "-preset", "medium", "-b:v", "8M", "-s",
            "1920x1080", "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart",
            str(out)]  # fmt: skip


def ssim(output: Path, clips: list[Path]) -> float:
    """SSIM of `output` against the reference rendering: the source clips, concatenated and
    scaled to 1920x1080 (what an ideal encoder would show), frame by frame."""
    inputs = [arg for c in clips for arg in ("-i", str(c))]
    refs = "".join(f"[{i + 1}:v]" for i in range(len(clips)))
    graph = (
        f"{refs}concat=n={len(clips)}:v=1:a=0,scale=1920:1080,format=yuv420p,"
        "setpts=PTS-STARTPTS[ref];[0:v]format=yuv420p,setpts=PTS-STARTPTS[out];[out][ref]ssim"
    )
    done = subprocess.run(
        ["ffmpeg", "-i", str(output), *inputs, "-filter_complex", graph, "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(x for x in done.stderr.splitlines() if "SSIM" in x and "All:" in x)
    return float(line.split("All:")[1].split()[0])


def export(home: Path, urls: list[str], resolution="1080p", quality="high", preset=None) -> dict:
    job = {"home": str(home), "clips": urls, "resolution": resolution, "quality": quality}
    if preset:
        job["preset"] = preset
    return export_in_process_of_its_own(
        ["-m", "export_pipeline_tests.benchmarks.export_once", json.dumps(job)]
    )


def export_in_process_of_its_own(args: list[str]) -> dict:
    """Run `python <args>` (an export that prints its result as the last JSON line); the
    result, or RuntimeError unless the export ended `complete`."""
    done = subprocess.run([PYTHON, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["status"] != "complete":
        raise RuntimeError(f"export ended {result['status']}: {result['error']}")
    return result


def median(values):
    return round(statistics.median(values), 3)


def latency_with_daemon(urls: list[str], samples: int) -> list[float]:
    """INSERT -> `processing` with the real daemon (PostgreSQL instance, default launcher)."""
    import uuid

    from sqlalchemy import create_engine, text

    from export_pipeline_tests.daemon import DaemonWorld, wait_for

    admin = create_engine(
        "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    names = [f"bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    urls_pg = [f"postgresql+psycopg2://postgres@127.0.0.1:5432/{n}" for n in names]
    root = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    world = DaemonWorld(root, urls_pg[0], urls_pg[1], {}).start()
    waits = []
    try:
        for _ in range(samples):
            started = time.monotonic()
            request_id = world.request("latency", *urls[:2])
            wait_for(
                lambda i=request_id: (
                    world.store.get(i)["status"] != "pending"
                    and world.store.get(i)["processing_started_at"] is not None
                ),
                180,
                "processing",
                poll_s=0.1,
            )
            waits.append(time.monotonic() - started)
            world.wait_rows([request_id], lambda r: r["status"] == "complete", 300, "complete")
    finally:
        world.stop()
        from export_pipeline.io.appdb.store import engine_for

        engine_for.cache_clear()
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        shutil.rmtree(root, ignore_errors=True)
    return waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one repeat, skip 10-min and 4k")
    parser.add_argument("--out", type=Path, default=Path("bench-export.json"))
    parser.add_argument("--work", type=Path, default=None, help="keep files here")
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    work = args.work or Path(tempfile.mkdtemp(prefix="export-bench-"))
    clips_dir = work / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {"machine": {"cores": os.cpu_count()}, "repeat": repeat}

    def say(message: str) -> None:
        print(message, flush=True)

    say(f"work directory: {work}")
    clips = [clips_dir / f"clip-{n:02d}.mp4" for n in range(CLIPS)]
    for n, path in enumerate(clips):
        if not path.exists():
            make_clip(path, n)
    ready = [clips_dir / f"ready-{n:02d}.mp4" for n in range(CLIPS)]  # already 1080p24 H.264
    for n, path in enumerate(ready):
        if not path.exists():
            make_clip(path, n, size="1920x1080", bitrate="6M")

    with serve_directory(clips_dir) as base:
        urls = [f"{base}/{p.name}" for p in clips]

        say("reference: the product doc's command (encode only) ...")
        ref_runs = [run(reference_argv(clips, work / "reference.mp4")) for _ in range(repeat)]
        ref_s = median([t for t, _ in ref_runs])
        report["reference"] = {
            "seconds": ref_s,
            "runs": [round(t, 2) for t, _ in ref_runs],
            "rss_ffmpeg_mb": round(max(m for _, m in ref_runs), 1),
            "bytes": (work / "reference.mp4").stat().st_size,
            "ssim": ssim(work / "reference.mp4", clips),
        }
        say(f"  {ref_s:.1f} s")

        say("pipeline: full 1080p high export through a Dagster run ...")
        full = [export(work / f"home-full-{i}", urls) for i in range(repeat)]
        full_s = median([r["seconds"] for r in full])
        report["pipeline"] = {
            "seconds": full_s,
            "runs": [r["seconds"] for r in full],
            "encode_s": median([r["encode_s"] for r in full]),
            "download_s": median([r["download_s"] for r in full]),
            "bytes": full[0]["bytes"],
            "ssim": ssim(Path(full[0]["output"]), clips),
            "rss_pipeline_mb": max(r["rss_pipeline_mb"] for r in full),
            "rss_ffmpeg_mb": max(r["rss_ffmpeg_mb"] for r in full),
        }
        say(f"  {full_s:.1f} s")

        say("the same export at preset veryfast, for comparison ...")
        slower = export(work / "home-veryfast", urls, preset="veryfast")
        report["pipeline_veryfast"] = {
            "seconds": slower["seconds"],
            "encode_s": slower["encode_s"],
            "bytes": slower["bytes"],
            "ssim": ssim(Path(slower["output"]), clips),
        }

        say("stream-copy path: clips already 1080p24 H.264 ...")
        ready_urls = [f"{base}/{p.name}" for p in ready]
        copies = [export(work / f"home-copy-{i}", ready_urls) for i in range(repeat)]
        assert all(r["stream_copy"] for r in copies), copies
        report["stream_copy"] = {
            "seconds": median([r["seconds"] for r in copies]),
            "encode_s": median([r["encode_s"] for r in copies]),
        }

        say("re-export after one clip changed (same storage: segment cache) ...")
        home = work / "home-full-0"
        reexports = []
        for i in range(repeat):
            # Each run swaps scene 7 for a clip never rendered before.
            variant = clips_dir / f"clip-changed-{i}.mp4"
            if not variant.exists():
                make_clip(variant, 100 + i)
            again = urls[:6] + [f"{base}/{variant.name}"] + urls[7:]
            reexports.append(export(home, again))
        report["reexport_one_changed"] = {
            "seconds": median([r["seconds"] for r in reexports]),
            "reused_segments": reexports[0]["reused_segments"],
        }

        if not args.quick:
            say("10-minute export (120 clips) ...")
            long_urls = []
            for k in range(10):
                for n, src in enumerate(clips):
                    # Same pictures, a different file (new sha256): no segment is reused.
                    copy = clips_dir / f"long-{k:02d}-{n:02d}.mp4"
                    if not copy.exists():
                        subprocess.run(
                            ["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c", "copy",
                             "-metadata", f"comment=copy {k}", str(copy)],
                            check=True,
                        )  # fmt: skip
                    long_urls.append(f"{base}/{copy.name}")
            long = export(work / "home-long", long_urls)
            report["ten_minutes"] = {
                k: long[k] for k in ("seconds", "encode_s", "duration_s", "rss_pipeline_mb",
                                     "rss_ffmpeg_mb", "bytes")
            }  # fmt: skip

            say("scaling with resolution (1 minute) ...")
            report["resolutions"] = {}
            for resolution in ("720p", "1080p", "4k"):
                r = export(work / f"home-res-{resolution}", urls, resolution=resolution)
                report["resolutions"][resolution] = {
                    k: r[k] for k in ("seconds", "encode_s", "bytes", "rss_ffmpeg_mb")
                }

        say("latency INSERT -> processing with the daemon ...")
        waits = latency_with_daemon(urls, 3 if args.quick else 5)
        report["latency"] = {"median_s": median(waits), "samples": [round(w, 2) for w in waits]}

    p = report["pipeline"]
    ref = report["reference"]
    report["ratios"] = {
        "full_vs_reference_time": round(full_s / ref_s, 3),
        "ssim_difference": round(p["ssim"] - ref["ssim"], 4),
        "size_vs_reference": round(p["bytes"] / ref["bytes"], 3),
        "stream_copy_encode_vs_reference": round(report["stream_copy"]["encode_s"] / ref_s, 3),
        "stream_copy_total_vs_reference": round(report["stream_copy"]["seconds"] / ref_s, 3),
        "reexport_vs_full": round(report["reexport_one_changed"]["seconds"] / full_s, 3),
    }
    if "ten_minutes" in report:
        report["ratios"]["rss_10min_vs_1min"] = round(
            report["ten_minutes"]["rss_pipeline_mb"] / p["rss_pipeline_mb"], 3
        )
    args.out.write_text(json.dumps(report, indent=2))
    tables.record("bench_export", args.out)
    say(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
