"""Benchmark: the pipeline against the product doc's command, per class of footage.

    .venv/bin/python -m export_pipeline_tests.benchmarks.bench_corpus \\
        [--classes detail,text] [--clips N] [--quick] [--presets superfast,veryfast,faster] \\
        [--variant LABEL:preset=veryfast,bufsize=16000000,vbv_init=0.9 ...] \\
        [--daemon-class detail | --no-daemon] [--real A.mp4,B.mp4] [--work DIR] [--out F.json]

For every class of `corpus.CLASSES` (twelve 5 s clips; six for 4k) served from an HTTP
server on loopback, and a 1080p `high` 16:9 export, it measures:

- the reference: `bench_export.reference_argv` (the product doc's command) on the clips on
  local disk, encode only;
- per x264 preset (or `--variant`: a preset with other EncodeSettings fields changed, to try
  a rate-control change before making it): the pipeline's export through a real Dagster
  run in a process of its own (`export_once`, instrumented: every FFmpeg run, probe, storage
  call and step body is timed, and Dagster's own events give run and step start-up), and
  one FFmpeg run of the same timeline (the reference's filter graph) at the pipeline's
  encoder settings, which is what the segment-and-join design costs against;
- SSIM of every output against the sources concatenated and scaled to 1080p
  (`bench_export.ssim`, the same near-lossless reference for all), and sizes;
- for one class, the whole export INSERT -> complete on a running `dagster-daemon` (sensor
  at its production interval of 5 s, a run process per run): its overhead beyond the
  in-process run is added to every class's in-process time to give the daemon figure.

Writes JSON (`--out`) and prints its tables (per class, per preset, per phase: `report.py`);
with `--out export_pipeline_tests/benchmarks/results/bench-corpus.json` it also rewrites
the tables of the benchmarks' README. Timings are single runs on a shared machine: the JSON
records the load average before each measurement.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import fields as dataclass_fields
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from export_pipeline.cli.demo import serve_directory
from export_pipeline.defs.settings import Settings
from export_pipeline.media.encoding import EncodeSettings, encode_settings
from export_pipeline.media.frame import choose_frame_rate
from export_pipeline_tests.benchmarks import report as tables
from export_pipeline_tests.benchmarks.bench_export import (
    export_in_process_of_its_own,
    reference_argv,
    run_usage,
)
from export_pipeline_tests.benchmarks.corpus import (
    CLASSES,
    SECONDS,
    Footage,
    make_clip,
    make_clips,
    probe,
    real_footage,
    siti,
)
from export_pipeline_tests.benchmarks.report import (  # the targets
    MEDIAN_TIME_LIMIT,
    SIZE_LIMIT,
    SSIM_MARGIN,
    WORST_TIME_LIMIT,
)

PYTHON = sys.executable
# The pipeline's defaults, as export_once runs it (its environment is not read).
DEFAULTS = Settings.from_env({})
PRESETS = ("superfast", "veryfast", "faster")
RESOLUTION, ASPECT, QUALITY = "1080p", "16:9", "high"
DAEMON_SAMPLES = 6  # small exports sampling the daemon's overhead, besides the full one
STARTED = time.monotonic()


def say(message: str) -> None:
    """Progress on stdout, stamped with minutes:seconds since the start."""
    elapsed = int(time.monotonic() - STARTED)
    print(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {message}", flush=True)


def run_timed(argv: list[str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, CPU seconds of it and its children)."""
    elapsed, usage = run_usage(argv)
    return elapsed, usage.ru_utime + usage.ru_stime


def pipeline_settings(footage: Footage, variant: dict[str, Any]) -> EncodeSettings:
    """The encoder settings the pipeline picks for this class's clips (first attempt), with
    the variant's preset and other fields."""
    fps = choose_frame_rate([Fraction(footage.fps)], cap=Fraction(DEFAULTS.media.max_fps))
    settings = encode_settings(RESOLUTION, ASPECT, QUALITY, fps, variant["preset"])
    return replace(settings, **{k: v for k, v in variant.items() if k != "preset"})


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """A variant from its text, `label:field=value,...`: for example
    `buf2s:preset=veryfast,bufsize=16000000` -> ("buf2s", {"preset": "veryfast", "bufsize":
    16000000}). A bare preset name is the variant of just that preset."""
    label, _, spec = text.partition(":")
    fields: dict[str, Any] = {} if spec else {"preset": label}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        for kind in (int, float, str):
            try:
                fields[key] = kind(value)
                break
            except ValueError:
                continue
    fields.setdefault("preset", DEFAULTS.media.x264_preset)
    known = {f.name for f in dataclass_fields(EncodeSettings)}
    if unknown := set(fields) - known:
        raise SystemExit(f"--variant {text}: not EncodeSettings fields: {sorted(unknown)}")
    return label, fields


def single_run_argv(clips: list[Path], out: Path, settings: EncodeSettings) -> list[str]:
    """The whole timeline in one FFmpeg run at the pipeline's encoder settings: the reference
    command's own inputs and trim/concat graph, then the pipeline's scaling, frame rate and
    x264/AAC options (CRF under the VBV cap, the same preset and profile)."""
    ref = reference_argv(clips, out)
    inputs = ref[ref.index("-y") + 1 : ref.index("-filter_complex")]
    graph = ref[ref.index("-filter_complex") + 1]
    rate = settings.fps
    fps = str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"
    graph += f";[v]fps={fps},scale={settings.width}:{settings.height},setsar=1,format=yuv420p[vout]"
    return ["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", graph,
            "-map", "[vout]", "-map", "[a]", "-c:v", "libx264", "-preset", settings.preset,
            "-crf", str(settings.crf), "-maxrate", str(settings.maxrate),
            "-bufsize", str(settings.bufsize), "-x264-params", f"vbv-init={settings.vbv_init}",
            "-profile:v", settings.profile, "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", str(settings.audio_bitrate), "-ar", str(settings.audio_rate),
            "-ac", "2", "-movflags", "+faststart", str(out)]  # fmt: skip


# --- the instrumented export (runs in a child process) --------------------------------------


class Timeline:
    """Intervals of named phases, each attributed to the Dagster step whose body ran then."""

    def __init__(self) -> None:
        self.step = "-"
        self.entries: list[dict[str, Any]] = []

    def timed(self, phase: str, function: Callable, *, body_of: str | None = None) -> Callable:
        """`function`, recording every call as `phase` (or, with `body_of`, as that step's
        body, which also makes it the current step)."""

        def wrapper(*args, **kwargs):
            if body_of:
                self.step = body_of
            started, cpu = time.time(), _children_cpu()
            try:
                return function(*args, **kwargs)
            finally:
                self.entries.append({"step": body_of or self.step, "phase": phase,
                                     "start": started, "end": time.time(),
                                     "cpu": _children_cpu() - cpu})  # fmt: skip

        return wrapper


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _union(intervals: list[tuple[float, float]]) -> float:
    """Wall seconds covered by possibly overlapping intervals (downloads run in threads)."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def child(job_json: str) -> None:
    """`export_once` with timing wrappers around each phase; prints its JSON line plus
    `phases`, `segments_s` and `events` (Dagster's run and step timestamps)."""
    from dagster import DagsterEventType

    import export_pipeline.defs.export.clips as clips_assets
    import export_pipeline.defs.export.encode as encode_assets
    import export_pipeline.defs.export.publish as publish_assets
    import export_pipeline.media.execute as execute
    import export_pipeline.media.render as render
    from export_pipeline.io.appdb.store import RequestStore
    from export_pipeline.io.storage.local import LocalStorage
    from export_pipeline_tests.benchmarks import export_once

    tl = Timeline()
    marks: dict[str, float] = {}
    captured: dict[str, Any] = {}
    patches = [
        (clips_assets, "download_clips", tl.timed("body", clips_assets.download_clips,
                                                  body_of="downloaded_clips")),
        # The encode's steps (plan, a step per segment, join) make one body together.
        (encode_assets, "plan_encode", tl.timed("body", encode_assets.plan_encode,
                                                body_of="encoded_video")),
        (encode_assets, "render_batch", tl.timed("body", encode_assets.render_batch,
                                                 body_of="encoded_video")),
        (encode_assets, "join_encode", tl.timed("body", encode_assets.join_encode,
                                                body_of="encoded_video")),
        (publish_assets, "publish", tl.timed("body", publish_assets.publish,
                                             body_of="published_video")),
        (clips_assets, "download", tl.timed("HTTP download", clips_assets.download)),
        (clips_assets, "probe_and_check", tl.timed("probe + decode check",
                                                   clips_assets.probe_and_check)),
        (encode_assets, "probe", tl.timed("probe", encode_assets.probe)),
        (render, "probe", tl.timed("probe", render.probe)),
        (execute, "render_pictures", tl.timed("segment encode", execute.render_pictures)),
        (render, "join_planned", tl.timed("join + mux (concat, AAC, faststart)",
                                          render.join_planned)),
        (publish_assets, "make_posters", tl.timed("poster", publish_assets.make_posters)),
        (LocalStorage, "put_file", tl.timed("storage put", LocalStorage.put_file)),
        (LocalStorage, "get_file", tl.timed("storage get", LocalStorage.get_file)),
        (LocalStorage, "copy", tl.timed("storage copy", LocalStorage.copy)),
    ]  # fmt: skip
    for owner, name, wrapper in patches:
        setattr(owner, name, wrapper)
    job = json.loads(job_json)
    changes = {k: v for k, v in job.get("variant", {}).items() if k != "preset"}
    if changes:  # a variant: the pipeline's settings with these fields changed
        settings_for = encode_assets.encode_settings
        encode_assets.encode_settings = lambda *a, **kw: replace(settings_for(*a, **kw), **changes)

    insert = RequestStore.insert

    def timed_insert(self, **kwargs):
        try:
            return insert(self, **kwargs)
        finally:
            marks["inserted"] = time.time()

    RequestStore.insert = timed_insert
    evaluate, run_requested = export_once.evaluate_intake, export_once.run_requested

    def timed_evaluate(*args, **kwargs):
        try:
            return evaluate(*args, **kwargs)
        finally:
            marks["ticked"] = time.time()

    def capture_run(instance, defs, tick, log_level="INFO"):
        results = run_requested(instance, defs, tick, log_level)
        marks["returned"] = time.time()
        captured.update(instance=instance, run_id=results[0].run_id)
        return results

    export_once.evaluate_intake, export_once.run_requested = timed_evaluate, capture_run
    sys.argv = [sys.argv[0], job_json]
    out = io.StringIO()
    with redirect_stdout(out):
        export_once.main()
    result = json.loads(out.getvalue().strip().splitlines()[-1])

    events = []
    for entry in captured["instance"].all_logs(captured["run_id"]):
        event = entry.dagster_event
        if event and event.event_type in (
            DagsterEventType.RUN_START, DagsterEventType.RUN_SUCCESS,
            DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS,
        ):  # fmt: skip
            # The encode's own steps (encoded_video.encoded_video_plan, ...) count as one.
            step = entry.step_key.split(".")[0] if entry.step_key else None
            events.append({"type": event.event_type_value, "step": step,
                           "ts": entry.timestamp})  # fmt: skip
    result["phases"] = phase_breakdown(tl.entries, events, marks)
    own, children = resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN
    result["cpu_s"] = round(
        sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
            for who in (own, children)), 1
    )  # fmt: skip
    result["segments_s"] = [
        round(e["end"] - e["start"], 2) for e in tl.entries if e["phase"] == "segment encode"
    ]
    result["segments_cpu_s"] = round(
        sum(e["cpu"] for e in tl.entries if e["phase"] == "segment encode"), 2
    )
    print(json.dumps(result))


STEPS = ("downloaded_clips", "encoded_video", "published_video")


def phase_breakdown(entries: list[dict], events: list[dict], marks: dict[str, float]) -> dict:
    """Seconds per phase of one in-process export, adding up to INSERT -> run returned.

    Dagster's share: the sensor tick, run start, each step's start-up (STEP_START to the
    asset body, after the previous step's end) and wrap-up (body end to STEP_SUCCESS).
    Inside each body: the timed phases (wall time, overlaps merged), and what is left."""
    first = {e["step"] or "run": e["ts"] for e in reversed(events) if e["type"] != "STEP_SUCCESS"}
    done = {e["step"] or "run": e["ts"] for e in events if e["type"] != "STEP_START"}
    start = {e["type"]: e["ts"] for e in events if e["step"] is None}
    phases: dict[str, float] = {
        "sensor tick (in process)": marks["ticked"] - marks["inserted"],
        "run start": start.get("RUN_START", marks["ticked"]) - marks["ticked"],
        "step start-up": 0.0,
        "step wrap-up": 0.0,
    }
    previous = start.get("RUN_START", marks["ticked"])
    for step in STEPS:
        bodies = [e for e in entries if e["phase"] == "body" and e["step"] == step]
        if not bodies or step not in first:
            continue
        body = {"start": min(b["start"] for b in bodies), "end": max(b["end"] for b in bodies)}
        phases["step start-up"] += (first[step] - previous) + (body["start"] - first[step])
        phases["step wrap-up"] += done.get(step, body["end"]) - body["end"]
        previous = done.get(step, body["end"])
        timed = 0.0
        for phase in dict.fromkeys(e["phase"] for e in entries if e["step"] == step):
            if phase == "body":
                continue
            spans = [(e["start"], e["end"]) for e in entries
                     if e["step"] == step and e["phase"] == phase]  # fmt: skip
            phases[f"{step}: {phase}"] = _union(spans)
            timed += phases[f"{step}: {phase}"]
        phases[f"{step}: other"] = max(0.0, body["end"] - body["start"] - timed)
    phases["run end"] = marks["returned"] - previous
    return {k: round(v, 2) for k, v in phases.items()}


def pipeline_export(home: Path, urls: list[str], variant: dict[str, Any]) -> dict:
    """One 1080p high export through a Dagster run in a process of its own, instrumented."""
    job = {"home": str(home), "clips": urls, "resolution": RESOLUTION, "aspect_ratio": ASPECT,
           "quality": QUALITY, "preset": variant["preset"], "variant": variant}  # fmt: skip
    return export_in_process_of_its_own(
        ["-m", "export_pipeline_tests.benchmarks.bench_corpus", "--child", json.dumps(job)]
    )


# --- the export on a running daemon ---------------------------------------------------------


@contextmanager
def daemon_world(preset: str) -> Iterator[Any]:
    """A running `dagster-daemon` on PostgreSQL (throwaway databases) with the default
    intake settings (as in production) and the given x264 preset."""
    from sqlalchemy import create_engine, text

    from export_pipeline.io.appdb.store import engine_for
    from export_pipeline_tests.daemon import DaemonWorld

    admin = create_engine(
        os.environ.get("EXPORT_TEST_POSTGRES_URL",
                       "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"),
        isolation_level="AUTOCOMMIT",
    )  # fmt: skip
    names = [f"bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    urls = [admin.url.set(database=name).render_as_string(hide_password=False) for name in names]
    root = Path(tempfile.mkdtemp(prefix="bench-corpus-daemon-"))
    env = {"EXPORT_X264_PRESET": preset, "EXPORT_MAX_RETRIES": "0", "EXPORT_DAILY_LIMIT": "0"}
    world = DaemonWorld(root, urls[0], urls[1], env).start()
    try:
        yield world
    finally:
        world.stop()
        engine_for.cache_clear()
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        shutil.rmtree(root, ignore_errors=True)


def run_timeline(instance: Any, run_id: str, since: float) -> tuple[dict, dict]:
    """A run's events as seconds after `since` (the INSERT): first occurrence per event type
    and step (last for STEP_SUCCESS); and each step's materialization metadata."""
    from dagster import DagsterEventType

    marks: dict[str, float] = {}
    metadata: dict[str, Any] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        key = f"{event.event_type_value}:{entry.step_key or 'run'}"
        if key.startswith("STEP_SUCCESS") or key not in marks:
            marks[key] = round(entry.timestamp - since, 2)
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            metadata[entry.step_key] = {k: v.value for k, v in materialization.metadata.items()}
    return marks, metadata


def daemon_export(urls: list[str], small: list[list[str]], preset: str) -> dict:
    """INSERT -> `complete` on a running daemon: one export of `urls` (1080p high), and one
    of each small clip set in `small` (the first is a warm-up: the first run after start
    also waits for the code server; the others sample the fixed overhead again). Every set
    must be new to the daemon's storage, or its segments would come from the cache.

    Overhead = INSERT -> complete minus the three steps' own seconds (their metadata)."""
    from dagster import DagsterInstance

    from export_pipeline_tests.daemon import wait_for

    def export(world: Any, clip_urls: list[str], user: str) -> dict:
        request_id = world.store.insert(
            project_id="bench", user_id=user, resolution=RESOLUTION, aspect_ratio=ASPECT,
            quality=QUALITY,
            clips=[{"url": url, "scene_number": n} for n, url in enumerate(clip_urls, 1)],
        )  # fmt: skip
        inserted = time.time()
        row = wait_for(
            lambda: (r := world.store.get(request_id))["status"] in ("complete", "failed") and r,
            1800, "the export to end", poll_s=0.1,
        )  # fmt: skip
        seconds = time.time() - inserted
        if row["status"] != "complete":
            raise RuntimeError(f"daemon export failed: {row['error_message']}")
        (record,) = wait_for(lambda: world.finished_runs(request_id), 120, "the run's end")
        with DagsterInstance.from_config(str(world.home)) as instance:
            marks, metadata = run_timeline(instance, record.dagster_run.run_id, inserted)
        marks["run created"] = round(record.create_timestamp.timestamp() - inserted, 2)
        meta = metadata.get("published_video", {})
        bodies = sum(meta.get(k) or 0 for k in
                     ("seconds_download", "seconds_encode", "seconds_publish"))  # fmt: skip
        return {"seconds": round(seconds, 2), "step_bodies_s": round(bodies, 2),
                "overhead_s": round(seconds - bodies, 2), "events": marks,
                **{k: meta.get(k) for k in
                   ("seconds_download", "seconds_encode", "seconds_publish")}}  # fmt: skip

    with daemon_world(preset) as world:
        warmup = export(world, small[0], "warmup")
        full = export(world, urls, "bench")
        samples = [export(world, clips, f"sample-{i}") for i, clips in enumerate(small[1:])]
    events = full["events"]
    started = events.get("PIPELINE_START:run", 0.0)
    full["timeline"] = {
        "sensor: INSERT -> run created": events["run created"],
        "queue + launch: run created -> run process started": started - events["run created"],
        "run started -> first step started": events.get("STEP_START:downloaded_clips", started)
        - started,
    }
    overheads = [full["overhead_s"], *(s["overhead_s"] for s in samples)]
    intake = DEFAULTS.intake
    return {
        "preset": preset,
        "intake": f"sensor interval {intake.interval_s} s, a tick waiting up to "
        f"{intake.wait_s:g} s for a row",
        "clips": len(urls),
        **full,
        "timeline": {k: round(v, 2) for k, v in full["timeline"].items()},
        "warmup_overhead_s": warmup["overhead_s"],
        "overhead_samples_s": overheads,
        "overhead_median_s": round(statistics.median(overheads), 2),
    }


# --- measuring one class --------------------------------------------------------------------


def code_version() -> str:
    """The commit measured, and whether the pipeline's code had uncommitted changes."""
    repo = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "export_pipeline"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return f"{head}{' + uncommitted changes' if dirty else ''}"


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


def measure_class(
    footage: Footage,
    clips: list[Path],
    urls: list[str],
    variants: dict[str, dict[str, Any]],
    work: Path,
    singles: set[str],
) -> dict:
    """Reference, then per preset the pipeline's export and (for the labels in `singles`)
    one FFmpeg run of the timeline; SSIM and size of every output."""
    infos = [probe(c) for c in clips]
    seconds = sum(i["duration"] for i in infos)
    bits = sum(c.stat().st_size * 8 for c in clips)
    out = work / "outputs" / footage.name
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "what": footage.what,
        "source": f"{footage.width}x{footage.height} {footage.fps} fps",
        "clips": len(clips),
        "timeline_s": round(seconds, 2),
        "source_mbps": round(bits / seconds / 1e6, 1),
        # Bits per pixel of the CRF 16 sources: how hard the content is to compress.
        "source_bpp": round(bits / (seconds * footage.fps * footage.width * footage.height), 3),
        # Spatial and temporal information at 1080p, first second of each clip: candidates
        # for a content-adaptive preset rule (cheap to measure before encoding).
        **{k: round(statistics.mean(siti(c)[k] for c in clips), 1) for k in ("si", "ti")},
        "presets": {},
    }

    # Every output of the class is kept until the end, where one FFmpeg pass measures them
    # all against the sources (decoded and scaled once, not once per output).
    measured: dict[str, tuple[dict, Path]] = {}
    say(f"[{footage.name}] reference (doc's command, encode only) ...")
    load = loadavg()
    wall, cpu = run_timed(reference_argv(clips, out / "reference.mp4"))
    report["reference"] = {
        "seconds": round(wall, 2), "cpu_s": round(cpu, 1), "load": load,
        "bytes": (out / "reference.mp4").stat().st_size,
    }  # fmt: skip
    measured["reference"] = (report["reference"], out / "reference.mp4")
    say(f"  {wall:.1f} s, {report['reference']['bytes'] / 1e6:.1f} MB")

    for preset, variant in variants.items():
        say(f"[{footage.name}] pipeline export at {preset} ...")
        load = loadavg()
        home = work / "homes" / f"{footage.name}-{preset}-{uuid.uuid4().hex[:6]}"
        result = pipeline_export(home, urls, variant)
        pipeline = {
            k: result[k] for k in ("seconds", "download_s", "encode_s", "publish_s", "bytes",
                                   "rss_pipeline_mb", "rss_ffmpeg_mb", "phases", "segments_s",
                                   "segments_cpu_s", "cpu_s", "stream_copy")
        }  # fmt: skip
        pipeline["load"] = load
        kept = out / f"pipeline-{preset}.mp4"
        shutil.move(result["output"], kept)
        shutil.rmtree(home, ignore_errors=True)
        measured[f"pipeline {preset}"] = (pipeline, kept)
        say(f"  {pipeline['seconds']:.1f} s (encode step {pipeline['encode_s']:.1f} s), "
            f"{pipeline['bytes'] / 1e6:.1f} MB")  # fmt: skip

        report["presets"][preset] = {"pipeline": pipeline, "single": None}
        if preset not in singles:
            continue
        say(f"[{footage.name}] one FFmpeg run of the timeline at {preset} ...")
        load = loadavg()
        single_out = out / f"single-{preset}.mp4"
        wall, cpu = run_timed(
            single_run_argv(clips, single_out, pipeline_settings(footage, variant))
        )
        single = {"seconds": round(wall, 2), "cpu_s": round(cpu, 1), "load": load,
                  "bytes": single_out.stat().st_size}  # fmt: skip
        measured[f"single {preset}"] = (single, single_out)
        say(f"  {single['seconds']:.1f} s, {single['bytes'] / 1e6:.1f} MB")
        report["presets"][preset]["single"] = single

    say(f"[{footage.name}] SSIM of {len(measured)} outputs against the sources ...")
    scores = ssim_many([path for _, path in measured.values()], clips)
    for (entry, path), score in zip(measured.values(), scores, strict=True):
        entry["ssim"] = score
        path.unlink()
    say(
        "  "
        + ", ".join(f"{label} {score:.4f}" for label, score in zip(measured, scores, strict=True))
    )
    return report


def ssim_many(outputs: list[Path], clips: list[Path]) -> list[float]:
    """SSIM (All) of each output against the sources concatenated and scaled to 1920x1080,
    in one FFmpeg run: the same measure as `bench_export.ssim`, which decodes the sources
    once per output."""
    inputs = [arg for path in [*outputs, *clips] for arg in ("-i", str(path))]
    n = len(outputs)
    refs = "".join(f"[{n + i}:v]" for i in range(len(clips)))
    # Frames are paired by number (the same made-up times on both sides), not by their
    # timestamps: WebM stores times in milliseconds, and 33.333 ms frames rounded to 33 or
    # 34 made SSIM pair neighbouring frames (a constant 0.997 on flat cartoons at any CRF).
    graph = [
        f"{refs}concat=n={len(clips)}:v=1:a=0,scale=1920:1080,format=yuv420p,"
        f"settb=1/30,setpts=N,split={n}" + "".join(f"[ref{i}]" for i in range(n))
    ]
    for i in range(n):
        graph.append(f"[{i}:v]format=yuv420p,settb=1/30,setpts=N[out{i}]")
        graph.append(f"[out{i}][ref{i}]ssim@out{i}")
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", *inputs, "-filter_complex", ";".join(graph),
         "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    scores: dict[int, float] = {}
    for line in done.stderr.splitlines():
        if line.startswith("[ssim@out") and "All:" in line:
            index = int(line[len("[ssim@out") :].split()[0])
            scores[index] = float(line.split("All:")[1].split()[0])
    return [scores[i] for i in range(n)]


# --- targets and tables ---------------------------------------------------------------------


def evaluate(report: dict) -> dict:
    """Per preset: each class's ratios against the reference and whether every target holds.
    The whole-export time is the in-process export plus the daemon's measured extra overhead
    (sensor interval, queue, run process launch)."""
    extra = report.get("daemon", {}).get("extra_over_in_process_s", 0.0)
    targets: dict[str, Any] = {}
    for preset in report["presets"]:
        rows = {}
        for name, c in report["classes"].items():
            if preset not in c["presets"]:
                continue
            p, s, ref = (
                c["presets"][preset]["pipeline"],
                c["presets"][preset]["single"],
                c["reference"],
            )
            whole = p["seconds"] + extra
            rows[name] = {
                "ssim_diff": round(p["ssim"] - ref["ssim"], 4),
                "size_ratio": round(p["bytes"] / ref["bytes"], 3),
                "whole_s": round(whole, 2),
                "time_ratio": round(whole / ref["seconds"], 3),
                "in_process_ratio": round(p["seconds"] / ref["seconds"], 3),
                "encode_ratio": round(p["encode_s"] / ref["seconds"], 3),
                # CPU seconds: less sensitive than wall time to other work on the machine.
                "cpu_ratio": round(p["cpu_s"] / ref["cpu_s"], 3),
                "single_ratio": None,
                "single_ssim_diff": None,
                "single_size_ratio": None,
                "encode_vs_single": None,
                "single_cpu_ratio": None,
            }
            if s:  # not measured for --variant entries
                rows[name].update(
                    single_ratio=round(s["seconds"] / ref["seconds"], 3),
                    single_ssim_diff=round(s["ssim"] - ref["ssim"], 4),
                    single_size_ratio=round(s["bytes"] / ref["bytes"], 3),
                    encode_vs_single=round(p["encode_s"] / s["seconds"], 3),
                    single_cpu_ratio=round(s["cpu_s"] / ref["cpu_s"], 3),
                )
            rows[name]["quality_ok"] = (
                rows[name]["ssim_diff"] >= -SSIM_MARGIN and rows[name]["size_ratio"] <= SIZE_LIMIT
            )
        if not rows:
            continue
        ratios = [r["time_ratio"] for r in rows.values()]
        median, worst = statistics.median(ratios), max(ratios)
        targets[preset] = {
            "classes": rows,
            "median_time_ratio": round(median, 3),
            "worst_time_ratio": round(worst, 3),
            "worst_class": max(rows, key=lambda n: rows[n]["time_ratio"]),
            "quality_ok_everywhere": all(r["quality_ok"] for r in rows.values()),
            "time_ok": median <= MEDIAN_TIME_LIMIT and worst <= WORST_TIME_LIMIT,
            "worst_ssim_diff": min(r["ssim_diff"] for r in rows.values()),
            "worst_size_ratio": max(r["size_ratio"] for r in rows.values()),
        }
        targets[preset]["meets_all"] = (
            targets[preset]["quality_ok_everywhere"] and targets[preset]["time_ok"]
        )
    # Per class, the fastest setting that keeps quality and size there: the best a
    # content-adaptive rule choosing among the measured settings could do (if something
    # cheap to measure, such as SI, told the classes apart).
    choice: dict[str, str | None] = {}
    for name in report["classes"]:
        ok = [p for p, t in targets.items() if t["classes"].get(name, {}).get("quality_ok")]
        choice[name] = min(
            ok, key=lambda p: targets[p]["classes"][name]["time_ratio"], default=None
        )
    report["fastest_quality_preset"] = choice
    chosen = [targets[p]["classes"][n]["time_ratio"] for n, p in choice.items() if p]
    if chosen:
        report["adaptive_best_case"] = {
            "all_classes_covered": all(choice.values()),
            "median_time_ratio": round(statistics.median(chosen), 3),
            "worst_time_ratio": round(max(chosen), 3),
        }
    return targets


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", default=",".join(CLASSES), help="comma-separated")
    parser.add_argument("--clips", type=int, default=None, help="clips per class")
    parser.add_argument("--seconds", type=float, default=None, help="clip length (5)")
    parser.add_argument("--quick", action="store_true", help="3 clips of 2 s per class")
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument(
        "--variant", action="append", default=[], help="LABEL:field=value,... (repeatable)"
    )
    parser.add_argument(
        "--singles", default="default",
        help="presets also run as one FFmpeg run of the timeline: default, all or none",
    )  # fmt: skip
    parser.add_argument("--daemon-class", default="detail", help="class run on the daemon")
    parser.add_argument("--no-daemon", action="store_true", help="skip the daemon export")
    parser.add_argument(
        "--real", default=None, help="real footage files, comma-separated: class 'real'"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-corpus.json"))
    parser.add_argument("--work", type=Path, default=None, help="keep clips here (cache)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    seconds = args.seconds or (2.0 if args.quick else SECONDS)
    count = args.clips or (3 if args.quick else None)
    default = DEFAULTS.media.x264_preset
    presets = [default, *args.presets.split(",")]
    variants = dict(map(parse_variant, [*presets, *args.variant]))
    # The one-run comparison for presets only: a variant's settings differ from its preset's
    # in rate control at the segment starts, which one run of the timeline barely has.
    singles = {"all": set(presets), "none": set()}.get(args.singles, {default})
    classes = {n: CLASSES[n] for n in args.classes.split(",") if n != "real"}
    if args.real:
        classes["real"] = real_footage([Path(p) for p in args.real.split(",")])
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-corpus-"))
    report: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "load_at_start": loadavg()},
        "code": code_version(),
        "resolution": RESOLUTION, "quality": QUALITY, "clip_seconds": seconds,
        "presets": variants, "default_preset": default, "classes": {},
    }  # fmt: skip
    say(f"work directory: {work}")
    served = work / "clips"
    all_urls: dict[str, list[str]] = {}
    with serve_directory(served) as base:
        for name, footage in classes.items():
            say(f"[{name}] clips ({footage.what}) ...")
            clips = make_clips(footage, served, count, seconds)
            urls = [f"{base}/{c.name}" for c in clips]
            all_urls[name] = urls
            report["classes"][name] = measure_class(footage, clips, urls, variants, work, singles)
            report["targets"] = evaluate(report)
            args.out.write_text(json.dumps(report, indent=2))  # partial results survive

        if not args.no_daemon and args.daemon_class in all_urls:
            name = args.daemon_class
            say(f"[{name}] the same export INSERT -> complete on a running daemon ...")
            # One-clip exports of clips no export has used: a warm-up and more samples of the
            # overhead, which varies with where the sensor and the run queue are in their
            # 5 s polling cycles when the row arrives.
            pattern = CLASSES["pattern"]
            small = [
                [f"{base}/{make_clip(pattern, 100 + i, served / f'daemon-{i}.mp4', 1.0).name}"]
                for i in range(1 + DAEMON_SAMPLES)
            ]
            daemon = daemon_export(all_urls[name], small, default)
            inproc = report["classes"][name]["presets"][default]["pipeline"]
            bodies = sum(inproc[k] or 0 for k in ("download_s", "encode_s", "publish_s"))
            daemon["class"] = name
            daemon["in_process_seconds"] = inproc["seconds"]
            daemon["in_process_overhead_s"] = round(inproc["seconds"] - bodies, 2)
            daemon["extra_over_in_process_s"] = round(
                daemon["overhead_median_s"] - daemon["in_process_overhead_s"], 2
            )
            report["daemon"] = daemon
            say(f"  {daemon['seconds']:.1f} s; overhead {daemon['overhead_samples_s']} s, "
                f"extra over in-process {daemon['extra_over_in_process_s']:.1f} s")  # fmt: skip

    report["targets"] = evaluate(report)
    report["machine"]["load_at_end"] = loadavg()
    args.out.write_text(json.dumps(report, indent=2))
    tables.record("bench_corpus", args.out)
    say(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
