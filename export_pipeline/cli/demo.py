"""`export-pipeline demo`: one export end to end on the embedded defaults.

Sample clips (different sizes and aspect ratios, one without audio) are generated with
FFmpeg and served from an HTTP server on loopback, standing in for the CDN. A request
row goes into the SQLite app database and through the same sensor -> partition -> run
code as production, on a Dagster instance on disk, so `dagster dev` shows it afterwards.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from export_pipeline.cli.local_runner import evaluate_intake, run_requested
from export_pipeline.cli.session import Session
from export_pipeline.definitions import build_definitions
from export_pipeline.defs.settings import Settings
from export_pipeline.io.appdb.store import for_display
from export_pipeline.media.ffmpeg import FFmpeg
from export_pipeline.media.samples import make_sample_clip

# (name, width, height, fps, seconds, audio)
SAMPLE_CLIPS = [
    ("landscape-720p", 1280, 720, 24, 3.0, True),
    ("portrait-9x16", 720, 1280, 30, 3.0, False),
    ("square", 720, 720, 25, 2.0, True),
    ("classic-4x3", 640, 480, 30, 3.0, True),
]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature from the stdlib
        pass


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve `directory` over HTTP on 127.0.0.1; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def make_samples(directory: Path, ffmpeg: str = "ffmpeg") -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, width, height, fps, seconds, audio in SAMPLE_CLIPS:
        path = directory / f"{name}.mp4"
        if not path.exists():
            make_sample_clip(
                path,
                width=width,
                height=height,
                fps=fps,
                duration=seconds,
                audio=audio,
                ffmpeg=FFmpeg(ffmpeg=ffmpeg),
            )
        paths.append(path)
    return paths


def row_json(row: dict) -> str:
    return json.dumps(for_display(row), indent=2, default=str)


def run_demo(settings: Settings, say: Callable[[str], None] = print) -> dict:
    # The demo's CDN is on loopback over plain HTTP; production refuses both by default.
    settings = settings.replace(downloads={"allow_http": True, "allow_private_hosts": True})
    settings.home.mkdir(parents=True, exist_ok=True)
    store = settings.app_db.store()
    store.create_schema()
    started = time.monotonic()
    say("Generating sample clips with FFmpeg ...")
    samples = make_samples(settings.home / "demo" / "clips", settings.media.ffmpeg)

    with serve_directory(samples[0].parent) as base_url:
        clips = [
            {"url": f"{base_url}/{path.name}", "scene_number": n, "scene_id": path.stem}
            for n, path in enumerate(samples, start=1)
        ]
        clips[0]["trim_start"] = 0.5  # show trimming: the first clip starts half a second in
        clips[2]["duration"] = 1.5
        request_id = store.insert(
            project_id="demo-project",
            user_id="demo-user",
            resolution="1080p",
            aspect_ratio="16:9",
            quality="medium",
            clips=clips,
        )
        say(f"Inserted export request {request_id} ({len(clips)} clips, 1080p 16:9 medium).")

        instance = Session(settings).instance()
        defs = build_definitions(settings)
        tick = evaluate_intake(instance, defs, cursor=str(request_id - 1))
        say(f"Sensor queued {len(tick.run_requests or [])} run(s): partition exp-{request_id}.")

        runner = threading.Thread(target=run_requested, args=(instance, defs, tick), daemon=True)
        runner.start()
        last = None
        while runner.is_alive():
            row = store.get(request_id) or {}
            now = (row.get("status"), row.get("progress"))
            if now != last:
                say(f"  status={now[0]:<10} progress={now[1]:>3}%")
                last = now
            runner.join(timeout=0.5)

    row = store.get(request_id) or {}
    say(f"Final row (after {time.monotonic() - started:.1f} s):")
    say(row_json(row))
    url = row.get("video_url")
    if url and url.startswith("file://"):
        say(f"Output video: {unquote(urlsplit(url).path)}")
    say("See the run, its logs and the assets' metadata in the Dagster UI: `dagster dev`.")
    return row
