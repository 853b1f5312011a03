"""Benchmark: INSERT -> `processing` on a warm daemon (issue 24, target <= 3 s median).

    .venv/bin/python -m export_pipeline_tests.benchmarks.bench_latency \\
        [--db sqlite|postgresql] [--requests 10] [--spread 5] [--label after] [--code DIR]
        [--env NAME=VALUE ...] [--json out.json]

Starts the real `dagster-daemon run` with the repository's workspace.yaml (its code server,
the sensors, Dagster's run queue, the default run launcher) on a fresh DAGSTER_HOME and a
fresh app database: SQLite for both, or with `--db postgresql` fresh PostgreSQL databases
for both (127.0.0.1:5432, as the tests use). Settings are the defaults but for what a
loopback export needs. One warm-up request, then `--requests` rows inserted one after
another, each after a random pause of 0 to `--spread` seconds (an app inserts at any moment
of the daemon's 5 s sensor loop; a fixed rhythm would hit the same moment each time, seeded
so that variants get the same pauses); each is polled every 50 ms until it is `processing`,
and its run is let end before the next INSERT (the clip's URL refuses connections: the
export fails at its first download, so only the time to `processing` is spent). Per
request, where the time went:

- sensor: INSERT -> the run's record (the sensor's tick took the row and requested the
  run; the row's `queued_at` says the same: the run sets it to its creation time);
- dequeue: run created -> RUN_STARTING (the queue daemon hands it to the launcher);
- worker start: RUN_STARTING -> RUN_START (a new process: Python, Dagster, our code);
- to step: RUN_START -> the first STEP_START;
- step -> processing: STEP_START -> the row's `processing_started_at`.

`--code DIR` runs the daemon on another checkout's code (e.g. `git archive main`), so
before and after are measured by the same harness; `--label` names the variant in the
JSON. With `--json` the results are merged into that file under `<db>/<label>`, so
variants recorded one after another (alternately) land in one file; to
`export_pipeline_tests/benchmarks/results/bench-latency.json` it also rewrites the
benchmarks' README tables (`report.py`). Not run by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from export_pipeline.domain.clock import as_utc
from export_pipeline_tests.benchmarks import report as tables

POSTGRES = os.environ.get(
    "EXPORT_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
PHASES = ("sensor", "dequeue", "worker start", "to step", "step -> processing")
# A port nothing listens on: the export fails at once at its first download.
REFUSED_CLIP = "http://127.0.0.1:9/clip.mp4"


@contextmanager
def world(db: str, code: Path, env: dict[str, str]) -> Iterator[Any]:
    """A running daemon on fresh databases; everything is stopped and dropped after."""
    from sqlalchemy import create_engine, text

    from export_pipeline.io.appdb.store import engine_for
    from export_pipeline_tests.daemon import DaemonWorld

    root = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    names: list[str] = []
    admin = None
    if db == "postgresql":
        admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
        names = [f"bench_latency_{uuid.uuid4().hex[:8]}" for _ in range(2)]
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        dagster_url, app_url = (
            admin.url.set(database=n).render_as_string(hide_password=False) for n in names
        )
    else:
        dagster_url, app_url = None, f"sqlite:///{root / 'app.db'}"
    daemon = DaemonWorld(
        root, dagster_url, app_url, {"EXPORT_MAX_RETRIES": "0", "EXPORT_DAILY_LIMIT": "0", **env}
    )
    # The settings' own sensor interval, not the daemon tests' 1 s (unless --env sets it).
    if "EXPORT_SENSOR_INTERVAL_S" not in env:
        daemon.env.pop("EXPORT_SENSOR_INTERVAL_S", None)
    daemon.start(code)
    try:
        yield daemon
    finally:
        daemon.stop()
        engine_for.cache_clear()
        if admin is not None:
            with admin.connect() as conn:
                for name in names:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        shutil.rmtree(root, ignore_errors=True)


def run_marks(instance: Any, run_id: str) -> dict[str, float]:
    """First RUN_STARTING, RUN_START and STEP_START of a run, as timestamps."""
    marks: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        name = event.event_type_value
        if name in ("PIPELINE_STARTING", "PIPELINE_START", "STEP_START") and name not in marks:
            marks[name] = entry.timestamp
    return marks


def one_request(daemon: Any, n: int) -> dict:
    """INSERT one row, wait for `processing` (polled every 50 ms), then for its run's end."""
    from dagster import DagsterInstance

    from export_pipeline_tests.daemon import wait_for

    request_id = daemon.store.insert(
        project_id="bench-latency", user_id=f"user-{n}", resolution="720p", quality="low",
        clips=[{"url": REFUSED_CLIP, "scene_number": 1}],
    )  # fmt: skip
    inserted = time.time()
    row = wait_for(
        lambda: (r := daemon.store.get(request_id))["status"] not in ("pending", "queued") and r,
        120, f"request {request_id} to leave the queue", poll_s=0.05,
    )  # fmt: skip
    seen = time.time() - inserted
    if row["processing_started_at"] is None:
        raise RuntimeError(f"request {request_id} is {row['status']}: {row['error_message']}")
    (record,) = wait_for(lambda: daemon.finished_runs(request_id), 120, "the run's end")
    with DagsterInstance.from_config(str(daemon.home)) as instance:
        marks = run_marks(instance, record.dagster_run.run_id)
    points = [
        inserted,
        record.create_timestamp.timestamp(),
        marks["PIPELINE_STARTING"],
        marks["PIPELINE_START"],
        marks["STEP_START"],
        as_utc(row["processing_started_at"]).timestamp(),
    ]
    return {
        "id": request_id,
        "total_s": round(points[-1] - inserted, 3),
        "seen_s": round(seen, 3),
        "phases": {
            name: round(b - a, 3)
            for name, a, b in zip(PHASES, points[:-1], points[1:], strict=True)
        },
    }


def summary(samples: list[dict]) -> dict:
    return {
        "requests": len(samples),
        "total_s": round(statistics.median(s["total_s"] for s in samples), 3),
        "seen_s": round(statistics.median(s["seen_s"] for s in samples), 3),
        "phases": {p: round(statistics.median(s["phases"][p] for s in samples), 3) for p in PHASES},
        "max_total_s": round(max(s["total_s"] for s in samples), 3),
    }


def measure(db: str, code: Path, env: dict[str, str], requests: int, spread_s: float) -> dict:
    pauses = random.Random(24)
    with world(db, code, env) as daemon:
        warmup = one_request(daemon, 0)  # the code server's first load, the first run
        samples = []
        for n in range(1, requests + 1):
            time.sleep(pauses.uniform(0, spread_s))
            samples.append(one_request(daemon, n))
            print(json.dumps(samples[-1]), flush=True)
    return {**summary(samples), "warmup_s": warmup["total_s"], "samples": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--spread", type=float, default=5.0, help="seconds: pauses 0 to this")
    parser.add_argument("--label", default="this checkout", help="the variant's name")
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the daemon")
    parser.add_argument("--json", type=Path, help="merge the results into this file")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)

    result = measure(args.db, args.code.resolve(), env, args.requests, args.spread)
    result["env"] = env
    result["load_average"] = os.getloadavg()[0]
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}))
    if args.json:
        data = json.loads(args.json.read_text()) if args.json.is_file() else {}
        data.setdefault(args.db, {}).setdefault(args.label, []).append(result)
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        tables.record("bench_latency", args.json)


if __name__ == "__main__":
    main()
