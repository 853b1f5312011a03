"""One export through a real Dagster run, in a process of its own, for the benchmark.

Reads a JSON job on argv[1]: {"home", "clips": [urls], "resolution", "aspect_ratio",
"quality", "preset" (optional)}; prints one JSON line: times, step seconds, the output and peak RSS
of this process (the pipeline) and of its children (FFmpeg)."""

import json
import resource
import sys
import time
from urllib.parse import unquote, urlsplit

from dagster import DagsterInstance

from export_pipeline.cli.local_runner import evaluate_intake, run_requested
from export_pipeline.definitions import build_definitions
from export_pipeline.defs.settings import Settings
from export_pipeline.io.appdb.store import RequestStore


def main() -> None:
    job = json.loads(sys.argv[1])
    settings = Settings.from_env({"EXPORT_PIPELINE_HOME": job["home"]}).replace(
        downloads={
            "allow_http": True,
            "private_networks": list(("127.0.0.0/8",)),
            "max_total_duration_s": 3600,
        }
    )
    if job.get("preset"):  # otherwise the pipeline's default
        settings = settings.replace(media={"x264_preset": job["preset"]})
    settings.home.mkdir(parents=True, exist_ok=True)
    store = RequestStore.from_url(settings.app_db.url)
    store.create_schema()
    defs = build_definitions(settings)
    instance = DagsterInstance.ephemeral()
    started = time.monotonic()
    request_id = store.insert(
        project_id="bench",
        user_id="bench",
        resolution=job["resolution"],
        aspect_ratio=job.get("aspect_ratio", "16:9"),
        quality=job["quality"],
        clips=[{"url": url, "scene_number": n} for n, url in enumerate(job["clips"], 1)],
    )
    tick = evaluate_intake(instance, defs, cursor=str(request_id - 1))
    (result,) = run_requested(instance, defs, tick, log_level="ERROR")
    seconds = time.monotonic() - started
    row = store.get(request_id)
    meta = {
        m.asset_key.path[-1]: {k: v.value for k, v in m.metadata.items()}
        for node in ("downloaded_clips", "encoded_video", "published_video")
        for m in result.asset_materializations_for_node(node)
    }
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    output = unquote(urlsplit(row["video_url"]).path) if row["video_url"] else None
    print(
        json.dumps(
            {
                "status": row["status"],
                "error": row["error_message"],
                "seconds": round(seconds, 2),
                "download_s": meta.get("downloaded_clips", {}).get("seconds"),
                # The probe and checks of every fetched clip, summed over the clips.
                "check_s": meta.get("downloaded_clips", {}).get("check_s"),
                "clip_count": meta.get("downloaded_clips", {}).get("clip_count"),
                "encode_s": meta.get("encoded_video", {}).get("seconds"),
                "publish_s": meta.get("published_video", {}).get("seconds_publish"),
                "reused_segments": meta.get("encoded_video", {}).get("reused_segments"),
                "stream_copy": meta.get("encoded_video", {}).get("stream_copy"),
                "output": output,
                "bytes": row["output_bytes"],
                "duration_s": row["output_duration_s"],
                "rss_pipeline_mb": round(own / 1024, 1),
                "rss_ffmpeg_mb": round(children / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
