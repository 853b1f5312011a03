"""Benchmark: the time left before any history (`domain.eta`'s built-in prior).

    .venv/bin/python -m export_pipeline_tests.benchmarks.bench_prior \\
        [--classes cartoon,detail,grain,motion,text] [--kinds 1080p:mp4,720p:webm,...]
        [--clips 6] [--seconds 4] [--json out.json] [--clips-dir DIR]

A fresh install has no finished export to estimate from. Each export here runs on an app
database of its own, so its `eta_s` comes from the built-in prior alone until the run's own
pace takes over: real exports (a Dagster run in this process, as `bench_eta` does) of the
corpus' footage (`corpus.py`) served on loopback, every kind of output (resolution and
format) of every class, each of `--clips` clips of its own. Recorded per export: the
processing time per second of video (what `BUILTIN_RATE` and the costs of `RESOLUTION_COST`
and `FORMAT_COST` in `export_pipeline/domain/eta.py` stand for), the first `eta_s` (the
prior alone) against the real time, and the error at 25, 50 and 75 % progress. Not run by
pytest; `--json export_pipeline_tests/benchmarks/results/bench-prior.json` also rewrites
the tables of the benchmarks' README.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from dagster import DagsterInstance

from export_pipeline.cli.demo import serve_directory
from export_pipeline.defs.settings import Settings
from export_pipeline.domain.clock import as_utc
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline_tests.benchmarks import report as tables
from export_pipeline_tests.benchmarks.bench_eta import errors_at_marks, export
from export_pipeline_tests.benchmarks.corpus import CLASSES, make_clips

KINDS = "720p:mp4,1080p:mp4,1440p:mp4,4k:mp4,1080p:mp4-hevc,1080p:webm,720p:webm"


def machine() -> str:
    """The hardware the figures hold for."""
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )  # fmt: skip
    return f"{os.cpu_count()} CPUs ({model})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="cartoon,detail,grain,motion,text")
    parser.add_argument("--kinds", default=KINDS, help="resolution:format, comma-separated")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--clips-dir", type=Path, help="keep the generated clips here")
    args = parser.parse_args()
    classes = args.classes.split(",")
    kinds = [tuple(kind.split(":")) for kind in args.kinds.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-prior-") as tmp:
        home = Path(tmp)
        clips_dir = args.clips_dir or home / "clips"
        # Clips of its own for every export: the segment cache would make a repeat free.
        footage = {
            name: make_clips(CLASSES[name], clips_dir / name, args.clips * len(kinds), args.seconds)
            for name in classes
        }
        base = Settings.from_env(
            {"EXPORT_PIPELINE_HOME": str(home / "home"), "EXPORT_DAILY_LIMIT": "0"}
        ).replace(downloads={"allow_http": True, "private_networks": ["127.0.0.0/8"]})
        base.home.mkdir(parents=True, exist_ok=True)
        instance = DagsterInstance.ephemeral()

        samples: dict[tuple[str, int], list[tuple[float, int, int | None]]] = {}
        write = RequestStore.set_progress

        def recording(self, request_id, progress, *a, **kw):
            changed = write(self, request_id, progress, *a, **kw)
            if changed:
                key = (str(self.engine.url), request_id)
                samples.setdefault(key, []).append((time.time(), progress, kw.get("eta_s")))
            return changed

        RequestStore.set_progress = recording

        results = []
        with serve_directory(clips_dir) as base_url:
            for name in classes:
                for n, (resolution, format) in enumerate(kinds):
                    # An app database of its own: no history, the built-in prior alone.
                    db = f"sqlite:///{home / f'app-{name}-{n}.db'}"
                    settings = base.replace(app_db={"url": db})
                    store = RequestStore.from_url(db)
                    store.create_schema()
                    clips = footage[name][n * args.clips : (n + 1) * args.clips]
                    request_id = export(
                        settings, store, instance, base_url, clips, resolution, format
                    )
                    row = store.get(request_id)
                    start = as_utc(row["processing_started_at"]).timestamp()
                    total = as_utc(row["completed_at"]).timestamp() - start
                    trace = samples.get((str(store.engine.url), request_id), [])
                    relative = [(t - start, p, e) for t, p, e in trace]
                    results.append(
                        {
                            "class": name,
                            "resolution": resolution,
                            "format": format,
                            "length_s": row["output_duration_s"],
                            "seconds": round(total, 2),
                            "first_eta_s": relative[0][2] if relative else None,
                            "errors": errors_at_marks(relative, total),
                        }
                    )
                    store.engine.dispose()
                    print(json.dumps(results[-1]), flush=True)

    report = {"machine": machine(), "exports": results}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        tables.record("bench_prior", args.json)
    else:
        print("\n" + tables.prior_tables(json.loads(json.dumps(report))))


if __name__ == "__main__":
    main()
