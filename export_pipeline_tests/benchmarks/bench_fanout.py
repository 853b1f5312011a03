"""Benchmark: one export's segments spread over Dagster's executors (issue 13).

    .venv/bin/python -m export_pipeline_tests.benchmarks.bench_fanout [--skip-ten] \\
        [--json results/bench-fanout.json]          # ~45 min on 2 cores; --skip-ten: ~6
    ... --json results/bench-fanout.json --redo 10-minute:in_process_each   # one export again

Real exports at 1080p `high` through real Dagster runs (`execute_job`, a persistent
instance, so the multiprocess executor really starts a process per step) of `bench_export`'s
clips served over loopback: the 1-minute export (twelve 5 s clips) and a 10-minute export
of one 10-minute clip (cut into 60 chunks of 10 s), each with the in-process executor (the
embedded default), the multiprocess executor with 2 processes, and in process with one part
per step (one at a time on both CPUs: what a part costs a worker of its own), from a cold
cache. From Dagster's event log: every step's time, the segment steps' times, the audio
track's step, the join, and each step's start-up overhead (multiprocess: from launching its
process to the step's start). Then a 30 s 4k export (3 chunks) gives the 4k segment time,
the join's peak memory is measured on a 10-minute 4k video (60 copies of one 4k chunk and
its audio track, joined as the join step joins them), and the wall time of the 10-minute
1080p and 4k exports with 4, 16 and 64 workers of 2 CPUs is predicted: download + plan +
the parts (the audio track first, then the 60 chunks, each on the first free worker, each
paying the step start-up) + join + publish. Target (issue 13): 10-minute 1080p with 16
workers <= 60 s. Run it on a quiet machine. Prints the tables (`report.py`); with `--json
export_pipeline_tests/benchmarks/results/bench-fanout.json` it also rewrites those of the
benchmarks' README.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, execute_job, reconstructable

from export_pipeline.cli.demo import serve_directory
from export_pipeline.media.audio import encode_audio_track
from export_pipeline.media.encoding import audio_sample_count, encode_settings, frame_count
from export_pipeline_tests.benchmarks import report as tables
from export_pipeline_tests.benchmarks.bench_export import CLIPS, make_clip

WORKERS = (4, 16, 64)


def export_job():
    """The export job as a code location loads it (from the environment)."""
    from export_pipeline.definitions import build_definitions
    from export_pipeline.defs.settings import Settings

    return build_definitions(Settings.from_env()).resolve_job_def("export_video_job")


def timeline(instance: DagsterInstance, run_id: str) -> dict:
    """Per step: start, end, and when its process was launched (multiprocess), from the
    run's event log."""
    steps: dict[str, dict] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or not event.step_key:
            continue
        entry = steps.setdefault(event.step_key, {})
        kind = event.event_type
        if kind == DagsterEventType.STEP_WORKER_STARTING:
            entry.setdefault("launched", record.timestamp)
        elif kind == DagsterEventType.STEP_START:
            entry["start"] = record.timestamp
        elif kind == DagsterEventType.STEP_SUCCESS:
            entry["end"] = record.timestamp
    return steps


def one_export(home: Path, urls: list[str], executor: str, resolution: str = "1080p") -> dict:
    """One export through a real run with `executor`; its storage, database and Dagster
    instance are its own (a cold segment cache)."""
    from export_pipeline.cli.local_runner import evaluate_intake
    from export_pipeline.definitions import build_definitions
    from export_pipeline.defs.settings import Settings
    from export_pipeline.io.appdb.store import RequestStore

    home.mkdir(parents=True)
    # "in_process_each": in process, one segment per step (one at a time on all the CPUs:
    # what one segment costs a worker of its own).
    env = {
        "EXPORT_PIPELINE_HOME": str(home),
        "EXPORT_EXECUTOR": executor.removesuffix("_each"),
        "EXPORT_SEGMENTS_PER_STEP": "1" if executor.endswith("_each") else "auto",
        "EXPORT_MAX_CONCURRENT_STEPS": "2",
        "EXPORT_ALLOW_HTTP": "true",
        "EXPORT_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
        "EXPORT_MAX_DURATION_S": "3600",
        "EXPORT_DAILY_LIMIT": "0",
    }
    os.environ.update(env)
    settings = Settings.from_env()
    store = RequestStore.from_url(settings.app_db.url)
    store.create_schema()
    request_id = store.insert(
        project_id="bench", user_id="bench", resolution=resolution, quality="high",
        clips=[{"url": url, "scene_number": n} for n, url in enumerate(urls, 1)],
    )  # fmt: skip
    (home / "dagster").mkdir()
    with DagsterInstance.local_temp(str(home / "dagster")) as instance:
        defs = build_definitions(settings)
        tick = evaluate_intake(instance, defs, cursor=str(request_id - 1))
        (request,) = tick.run_requests
        started = time.monotonic()
        with execute_job(
            reconstructable(export_job), instance=instance, tags={
                **request.tags, "dagster/partition": request.partition_key},
        ) as result:  # fmt: skip
            wall = time.monotonic() - started
            assert result.success, f"{executor} export failed"
            steps = timeline(instance, result.run_id)
    row = store.get(request_id)
    segments = {k: v for k, v in steps.items() if "encoded_video_segment" in k}
    audio = {k: v for k, v in segments.items() if k.endswith("[audio]")}
    pictures = {k: v for k, v in segments.items() if k not in audio}
    seg_times = [v["end"] - v["start"] for v in pictures.values()] or [0.0]
    overheads = [v["start"] - v["launched"] for v in steps.values() if "launched" in v]

    def took(name: str) -> float:
        entry = next(v for k, v in steps.items() if k.endswith(name))
        return round(entry["end"] - entry["start"], 2)

    return {
        "executor": executor,
        "wall_s": round(wall, 2),
        "output_s": row["output_duration_s"],
        "segments": len(pictures),
        "audio_s": round(sum(v["end"] - v["start"] for v in audio.values()), 2) or None,
        "segment_s": {
            "median": round(statistics.median(seg_times), 2),
            "max": round(max(seg_times), 2),
            "sum": round(sum(seg_times), 1),
        },
        "plan_s": took("encoded_video_plan"),
        "join_s": took("encoded_video_join"),
        "download_s": took("downloaded_clips"),
        "publish_s": took("published_video"),
        "step_overhead_s": round(statistics.median(overheads), 2) if overheads else 0.0,
    }


def export_in_a_process(home: Path, urls: list[str], executor: str, resolution: str) -> dict:
    """`one_export` in a Python process of its own: Dagster caches a job it loaded, with
    the settings of the first export, for the life of a process."""
    job = json.dumps({"home": str(home), "urls": urls, "executor": executor,
                      "resolution": resolution})  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "export_pipeline_tests.benchmarks.bench_fanout", "--one", job],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def join_memory_4k(work: Path, chunk_video: Path, chunk_audio: Path, count: int) -> dict:
    """Peak memory of the join (as the join step runs it) of `count` copies of one 4k
    chunk and the audio track of `count` copies of its sound, in a process of its own."""
    track = work / "track-4k.m4a"
    settings = encode_settings("4k", "16:9", "high", Fraction(24))
    samples = count * audio_sample_count(frame_count(10.0, settings.fps), settings)
    encode_audio_track([chunk_audio] * count, track, settings, samples)
    code = (
        "import json, resource, sys\n"
        "from pathlib import Path\n"
        "from fractions import Fraction\n"
        "from export_pipeline.media.encoding import encode_settings\n"
        "from export_pipeline.media.join import join_segments\n"
        "v, a, n, out = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])\n"
        "s = encode_settings('4k', '16:9', 'high', Fraction(24))\n"
        "join_segments([v] * n, a, out, s)\n"
        "print(json.dumps({'ffmpeg_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss"
        " / 1024, 'python_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
        " 'bytes': out.stat().st_size}))\n"
    )
    out = work / "joined-4k.mp4"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code, str(chunk_video), str(track),
         str(count), str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["seconds"] = round(time.monotonic() - started, 1)
    out.unlink()
    return result


def makespan(parts: list[float], workers: int, overhead_s: float) -> float:
    """When the last of `parts` (seconds each, in the order the executor starts them) ends
    on `workers` workers, each part starting on the first free one after its start-up."""
    free = [0.0] * workers
    for seconds in parts:
        first = free.index(min(free))
        free[first] += overhead_s + seconds
    return max(free)


def predict(run: dict, segments: int, segment_s: float, audio_s: float, overhead_s: float) -> dict:
    """Wall time with W workers of 2 CPUs each (one part at a time per worker): the audio
    track first, then the segments, between the serial steps."""
    fixed = run["download_s"] + run["plan_s"] + run["join_s"] + run["publish_s"]
    parts = [audio_s] + [segment_s] * segments
    return {str(w): round(fixed + makespan(parts, w, overhead_s), 1) for w in WORKERS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-ten", action="store_true", help="only the 1-minute export")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument(
        "--redo",
        help="with --json FILE holding an earlier run: measure again only these exports "
        "(e.g. 10-minute:in_process_each,10-minute:in_process), keep the rest, predict anew",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a child: one export, as JSON
    args = parser.parse_args()
    if args.one:
        job = json.loads(args.one)
        entry = one_export(Path(job["home"]), job["urls"], job["executor"], job["resolution"])
        print(json.dumps(entry))
        return
    report: dict = {}
    redo = set(args.redo.split(",")) if args.redo else None
    if redo is not None:
        report = json.loads(args.json.read_text())
        report.pop("predicted_10_minutes", None)

    def wanted(name: str, executor: str) -> bool:
        return redo is None or f"{name}:{executor}" in redo

    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        root = Path(tmp)
        clips_dir = root / "clips"
        clips_dir.mkdir()
        clips = []
        for n in range(CLIPS):
            clips.append(clips_dir / f"clip{n:02d}.mp4")
            make_clip(clips[-1], n)
        listing = root / "ten.txt"
        listing.write_text("".join(f"file '{c}'\n" for _ in range(10) for c in clips))
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing),
             "-c", "copy", str(clips_dir / "ten-minutes.mp4")],
            check=True,
        )  # fmt: skip
        four_k = clips_dir / "four-k.mp4"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
             "testsrc2=size=3840x2160:rate=24:duration=30,noise=alls=10:allf=t+u",
             "-f", "lavfi", "-i", "sine=f=330:d=30", "-c:v", "libx264", "-preset",
             "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
             str(four_k)],
            check=True,
        )  # fmt: skip
        with serve_directory(clips_dir) as base:
            short = [f"{base}/{c.name}" for c in clips]
            cases = [("1-minute", short)]
            if not args.skip_ten:
                cases.append(("10-minute", [f"{base}/ten-minutes.mp4"]))
            for name, urls in cases:
                executors = ["in_process", "multiprocess", "in_process_each"]
                for executor in filter(lambda e, n=name: wanted(n, e), executors):
                    entry = export_in_a_process(
                        root / f"{name}-{executor}", urls, executor, "1080p"
                    )
                    report.setdefault(name, {})[executor] = entry
                    print(f"{name} {executor}: {json.dumps(entry)}", flush=True)
            if wanted("4k-30s", "in_process_each"):
                entry = export_in_a_process(
                    root / "4k", [f"{base}/four-k.mp4"], "in_process_each", "4k"
                )
                report["4k-30s"] = entry
                print(f"4k 30 s in_process: {json.dumps(entry)}", flush=True)
        if wanted("4k-30s", "in_process_each"):
            # The join of a 10-minute 4k video: one of the 4k export's chunks, 60 times.
            cache = root / "4k" / "storage" / "segments"
            video = next(p for p in cache.rglob("*.mp4"))
            audio = next(p for p in cache.rglob("*.wav"))
            report["join_10_minutes_4k"] = join_memory_4k(root, video, audio, 60)
            print(f"join of 10 minutes of 4k: {report['join_10_minutes_4k']}", flush=True)

    overhead = report["1-minute"]["multiprocess"]["step_overhead_s"]
    ten = report.get("10-minute", {}).get("in_process_each")
    if ten is None:  # --skip-ten: from the 1-minute export's 5 s segments, doubled
        ten = dict(report["1-minute"]["in_process_each"])
        ten["segment_s"] = {"max": 2 * ten["segment_s"]["max"]}
        ten["audio_s"] = 10 * ten["audio_s"]
    # A 10-minute export is 60 chunks of 10 s and its audio track, each part on a worker of
    # 2 CPUs: 1080p from the 10-minute export rendered a part at a time, 4k's chunks from
    # the 4k export's (its audio track as long as 1080p's); download, plan, join and publish
    # from the 10-minute run.
    seg_1080 = ten["segment_s"]["max"]
    seg_4k = report["4k-30s"]["segment_s"]["max"]
    report["predicted_10_minutes"] = {
        "1080p": predict(ten, 60, seg_1080, ten["audio_s"], overhead),
        "4k": predict(ten, 60, seg_4k, ten["audio_s"], overhead),
        "step_overhead_s": overhead,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        tables.record("bench_fanout", args.json)
    else:
        print("\n" + tables.fanout_tables(report))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this process peaked at {peak:.0f} MB)")


if __name__ == "__main__":
    main()
