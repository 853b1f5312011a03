"""Benchmark: how good is the time left (`eta_s`) the creator sees?

    .venv/bin/python -m export_pipeline_tests.benchmarks.bench_eta \\
        [--classes cartoon,detail,grain,motion,text] [--clips 6] [--seconds 4] [--json out.json]
        [--clips-dir DIR]

Runs real exports (a real Dagster run in this process, as `export_once.py` does) of footage
from the benchmark corpus (`corpus.py`), served from an HTTP server on loopback, at 1080p.
The history the estimate starts from is what a real deployment has: recent exports of
every kind of footage (one of each class, of `--clips` clips). Then each class is exported
again at two lengths (`--clips` and 1.5x as many clips), so a class encodes faster or
slower than the history's median and a length differs from the history's. Every export has
clips of its own (the segment cache would make a repeated clip free). Every progress
write is recorded with the `eta_s` it carried, and at 25 %, 50 % and 75 % progress the
estimate is compared with the time that was really left (from the first write at or past
the mark to `completed_at`). Target: within ±25 % from 25 % on (or within the display's
1 s: `eta_s` is whole seconds, written at most once a second). Not run by pytest. Prints the
tables (`report.py`); `--json export_pipeline_tests/benchmarks/results/bench-eta.json` also
rewrites those of the benchmarks' README.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

from dagster import DagsterInstance

from export_pipeline.cli.demo import serve_directory
from export_pipeline.cli.local_runner import evaluate_intake, run_requested
from export_pipeline.definitions import build_definitions
from export_pipeline.defs.export.clips import PROGRESS_BAND as DOWNLOAD_BAND
from export_pipeline.defs.export.encode import PROGRESS_BAND as ENCODE_BAND
from export_pipeline.defs.export.publish import PROGRESS_BAND as PUBLISH_BAND
from export_pipeline.defs.settings import Settings
from export_pipeline.domain.clock import as_utc
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline_tests.benchmarks import report as tables
from export_pipeline_tests.benchmarks.corpus import CLASSES, make_clips

MARKS = (25, 50, 75)
BANDS = {"download": DOWNLOAD_BAND, "encode": ENCODE_BAND, "publish": PUBLISH_BAND}
RESOLUTION = "1080p"


def export(
    settings,
    store,
    instance,
    base_url: str,
    clips: list[Path],
    resolution: str = RESOLUTION,
    format: str = "mp4",
) -> int:
    """One export of `clips` (served from `base_url`, named by their path under clips_dir),
    with storage of its own: corpus clips repeat their pictures (a recipe's variations
    cycle), and the segment cache would make a repeated clip free."""
    own = settings.home / f"storage-{uuid.uuid4().hex[:8]}"
    defs = build_definitions(settings.replace(storage={"local_root": str(own)}))
    request_id = store.insert(
        project_id="bench-eta",
        user_id="bench",
        resolution=resolution,
        format=format,
        quality="medium",
        clips=[
            {"url": f"{base_url}/{c.parent.name}/{c.name}", "scene_number": n}
            for n, c in enumerate(clips, 1)
        ],
    )
    tick = evaluate_intake(instance, defs, cursor=str(request_id - 1))
    (result,) = run_requested(instance, defs, tick, log_level="ERROR")
    if not result.success:
        raise RuntimeError(f"export {request_id} failed: {store.get(request_id)['error_message']}")
    return request_id


def errors_at_marks(samples: list[tuple[float, int, int | None]], total_s: float) -> dict:
    """samples: (seconds since processing started, progress, eta_s) at each progress write.
    Returns {mark: (relative error of eta_s against the time really left, the error in
    seconds)} (None: no sample or no estimate)."""
    errors = {}
    for mark in MARKS:
        hit = next((s for s in samples if s[1] >= mark), None)
        if hit is None or hit[2] is None:
            errors[mark] = None
            continue
        actual = total_s - hit[0]
        errors[mark] = ((hit[2] - actual) / actual, hit[2] - actual) if actual > 0 else None
    return errors


def step_shares(samples: list[tuple[float, int, int | None]], total_s: float) -> dict:
    """The share of the run's time each step took (from the first progress write at or past
    each band's end), to check that the bar's bands follow where the time goes."""
    ends = {}
    for name, (_, high) in BANDS.items():
        hit = next((s for s in samples if s[1] >= high), None)
        ends[name] = total_s if hit is None or high == 100 else hit[0]
    shares, start = {}, 0.0
    for name in BANDS:
        shares[name] = round((ends[name] - start) / total_s, 3) if total_s > 0 else None
        start = ends[name]
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="cartoon,detail,grain,motion,text")
    parser.add_argument("--clips", type=int, default=6, help="clips of the shorter exports")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument(
        "--clips-dir", type=Path, help="keep the generated clips here, for the next run"
    )
    args = parser.parse_args()
    classes = args.classes.split(",")
    longer = args.clips * 3 // 2

    with tempfile.TemporaryDirectory(prefix="bench-eta-") as tmp:
        home = Path(tmp)
        clips_dir = args.clips_dir or home / "clips"
        # Every export gets clips of its own: the segment cache would make a repeat free.
        footage = {
            name: make_clips(CLASSES[name], clips_dir / name, args.clips * 2 + longer, args.seconds)
            for name in classes
        }
        settings = Settings.from_env(
            {"EXPORT_PIPELINE_HOME": str(home / "home"), "EXPORT_DAILY_LIMIT": "0"}
        ).replace(downloads={"allow_http": True, "private_networks": list(("127.0.0.0/8",))})
        settings.home.mkdir(parents=True, exist_ok=True)
        store = RequestStore.from_url(settings.app_db.url)
        store.create_schema()
        instance = DagsterInstance.ephemeral()

        # Record every progress write with the ETA it carried, as the app would read the row.
        samples: dict[int, list[tuple[float, int, int | None]]] = {}
        write = RequestStore.set_progress

        def recording(self, request_id, progress, *a, **kw):
            changed = write(self, request_id, progress, *a, **kw)
            if changed:
                samples.setdefault(request_id, []).append((time.time(), progress, kw.get("eta_s")))
            return changed

        RequestStore.set_progress = recording

        results = []
        with serve_directory(clips_dir) as base_url:
            for name in classes:  # the history: one recent export of each kind
                export(settings, store, instance, base_url, footage[name][: args.clips])
            for name in classes:
                fresh = footage[name][args.clips :]
                for clips in (fresh[: args.clips], fresh[args.clips :]):
                    count = len(clips)
                    request_id = export(settings, store, instance, base_url, clips)
                    row = store.get(request_id)
                    start = as_utc(row["processing_started_at"]).timestamp()
                    total = as_utc(row["completed_at"]).timestamp() - start
                    relative = [(t - start, p, e) for t, p, e in samples.get(request_id, [])]
                    results.append(
                        {
                            "class": name,
                            "length_s": count * args.seconds,
                            "seconds": round(total, 2),
                            "first_eta_s": relative[0][2] if relative else None,
                            "errors": errors_at_marks(relative, total),
                            "shares": step_shares(relative, total),
                            "trace": [(round(t, 2), p, e) for t, p, e in relative],
                        }
                    )
                    print(json.dumps(results[-1]), flush=True)

    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        tables.record("bench_eta", args.json)
    else:  # as the JSON holds them (the marks as strings)
        print("\n" + tables.eta_tables(json.loads(json.dumps(results))))


if __name__ == "__main__":
    main()
