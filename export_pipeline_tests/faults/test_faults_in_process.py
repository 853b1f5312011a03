"""Fault injection through real Dagster runs (in process): for each fault, the row's final
state, its message, the number of attempts, no temporary files, no stray objects."""

import os
import stat
from pathlib import Path

import pytest

from export_pipeline.defs.export.publish import human_bytes
from export_pipeline.domain import status as st
from export_pipeline_tests.cdn import cut_short, serve_normally, stall, status
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.e2e.test_pipeline import export

pytestmark = pytest.mark.e2e


def no_leftovers(settings, request_id: int, published: bool):
    assert list(Path(settings.media.work_dir).iterdir()) == [], "temporary files left behind"
    video = Path(settings.storage.local_root) / "videos" / f"exp-{request_id}.mp4"
    assert video.exists() is published
    partials = [
        p for p in Path(settings.storage.local_root).rglob("*") if p.name.endswith(".partial")
    ]
    assert partials == []


@pytest.mark.parametrize(
    ("faults", "hits"),
    [
        pytest.param([status(503), serve_normally], 2, id="503-then-200"),
        pytest.param([cut_short(2000), serve_normally], 2, id="body-cut-short"),
        pytest.param([stall(3), serve_normally], 2, id="stalled-download"),
    ],
)
def test_transient_cdn_faults_are_retried(settings, store, instance, cdn, faults, hits):
    settings = settings.replace(downloads={"read_timeout_s": 1.0})
    cdn.fail("landscape.mp4", *faults)
    request_id, result, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    row = store.get(request_id)
    assert result.success and row["status"] == st.COMPLETE
    assert row["retry_count"] == 1 and row["error_message"] is None
    assert cdn.hits["landscape.mp4"] == hits
    no_leftovers(settings, request_id, published=True)


def test_429_retry_after_is_honoured(settings, store, instance, cdn):
    cdn.fail("landscape.mp4", status(429, headers={"Retry-After": "2"}), serve_normally)
    request_id, result, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    assert result.success
    first, second = cdn.hit_times["landscape.mp4"]
    assert second - first >= 2.0  # not the 0.1 s of the test retry policy
    assert store.get(request_id)["retry_count"] == 1


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(b"<!doctype html><html>Access denied</html>", "HTML", id="html-error-page"),
        pytest.param(b"", "empty", id="zero-length"),
        pytest.param(None, "is incomplete (its index", id="corrupt-mp4"),  # cut, moov lost
        pytest.param(
            b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n", "HLS playlist", id="hls-playlist"
        ),
        pytest.param(
            b"ffconcat version 1.0\nfile /etc/passwd\n", "ffconcat playlist", id="ffconcat-playlist"
        ),
    ],
)
def test_files_that_are_not_videos_fail_at_once(
    settings, store, instance, cdn, sample_dir, content, reason
):
    if content is None:  # a real MP4 with its middle overwritten
        data = bytearray((sample_dir / "landscape.mp4").read_bytes())
        data[len(data) // 3 : len(data) // 3 + 20000] = os.urandom(20000)
        content = bytes(data[: len(data) * 2 // 3])
    (cdn.root / "bad.mp4").write_bytes(content)
    request_id, result, _ = export(settings, store, instance, [clip(cdn.url("bad.mp4"), 4)])
    row = store.get(request_id)
    assert not result.success and row["status"] == st.FAILED
    assert row["error_message"].startswith("downloaded_clips failed: clip 1 (scene 4): the file")
    assert reason.lower() in row["error_message"].lower(), row["error_message"]
    assert row["error_cause"] == "invalid_clip_file"
    assert row["retry_count"] == 0 and cdn.hits["bad.mp4"] == 1
    no_leftovers(settings, request_id, published=False)


def test_redirect_to_a_private_address_is_refused(settings, store, instance, cdn):
    cdn.fail("moved.mp4", status(302, headers={"Location": "http://169.254.169.254/latest/"}))
    request_id, result, _ = export(settings, store, instance, [clip(cdn.url("moved.mp4"), 1)])
    row = store.get(request_id)
    assert row["status"] == st.FAILED and row["retry_count"] == 0
    assert "private or reserved address (169.254.169.254)" in row["error_message"]
    assert row["error_cause"] == "invalid_request"


def test_too_long_an_export_is_refused(settings, store, instance, cdn):
    settings = settings.replace(downloads={"max_total_duration_s": 3.0})
    clips = [clip(cdn.url("landscape.mp4"), 1), clip(cdn.url("portrait.mp4"), 2)]
    request_id, result, _ = export(settings, store, instance, clips)
    row = store.get(request_id)
    assert row["status"] == st.FAILED
    assert (
        "the export would be 0.1 minutes long; the maximum is 0.1 minutes" in row["error_message"]
    )
    assert row["error_cause"] == "invalid_request"


def test_expired_url_uses_the_archive_when_there_is_one(settings, store, instance, cdn):
    """The same clip URL was archived by an earlier export: its expiry does not matter."""
    first, ok, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    assert ok.success
    cdn.fail("landscape.mp4", status(410))
    second, result, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    assert result.success and store.get(second)["status"] == st.COMPLETE
    assert cdn.hits["landscape.mp4"] == 1


def crashing_ffmpeg(tmp_path: Path, writing: str = "") -> Path:
    """An ffmpeg that crashes (SIGSEGV) on its first encode (of a command line naming
    `writing`, e.g. one segment's file), then behaves."""
    script = tmp_path / "ffmpeg-crashes-once"
    script.write_text(
        "#!/bin/sh\n"
        f'marker="{tmp_path}/crashed"\n'
        f'case "$*" in *{writing}*libx264*|*libx264*{writing}*)\n'
        '  if [ ! -e "$marker" ]; then touch "$marker"; echo "simulated crash" >&2; kill -SEGV $$; fi;;\n'
        "esac\n"
        'exec ffmpeg "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_ffmpeg_crash_is_retried_with_safer_settings(settings, store, instance, cdn, tmp_path):
    settings = settings.replace(media={"ffmpeg": str(crashing_ffmpeg(tmp_path))})
    request_id, result, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    row = store.get(request_id)
    assert result.success and row["status"] == st.COMPLETE and row["retry_count"] == 1
    (encoded,) = result.asset_materializations_for_node("encoded_video")
    assert encoded.metadata["attempt"].value == 2
    used = encoded.metadata["encoder_settings"].value
    assert used["preset"] != settings.media.x264_preset  # the safer, faster preset of attempt 2
    no_leftovers(settings, request_id, published=True)


def test_storage_quota_refuses_with_sizes(settings, store, instance, cdn):
    settings = settings.replace(storage={"quota_mb": (300_000) / 1024**2})
    request_id, result, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    row = store.get(request_id)
    assert row["status"] == st.FAILED and row["retry_count"] == 0
    message = row["error_message"]
    assert message.startswith("published_video failed: storage is full: this video is")
    assert f"of the {human_bytes(300_000)} quota are used" in message  # 293.0 KB
    assert "delete old exports or upgrade" in message
    assert row["error_cause"] == "storage"
    no_leftovers(settings, request_id, published=False)


def test_cancel_before_start_launches_nothing(settings, store, instance, cdn):
    from export_pipeline.cli.local_runner import evaluate_intake
    from export_pipeline.definitions import build_definitions

    request_id = store.insert(
        project_id="p", user_id="u", resolution="720p", quality="low",
        clips=[clip(cdn.url("landscape.mp4"), 1)],
    )  # fmt: skip
    store.request_cancel(request_id)
    tick = evaluate_intake(instance, build_definitions(settings), cursor=None)
    assert not tick.run_requests
    row = store.get(request_id)
    assert row["status"] == st.CANCELED and "canceled at the app's request" in row["error_message"]
    assert row["error_cause"] == "canceled"
    assert cdn.hits["landscape.mp4"] == 0


def test_s3_throttling_is_absorbed_and_persistent_refusal_fails_cleanly(
    s3_settings, store, instance, cdn, s3_server, s3_client, s3_bucket
):
    settings = s3_settings
    # Two throttled uploads: boto3's own retries absorb them.
    s3_server.fail("PutObject", status=503, code="SlowDown", times=2)
    ok_id, ok, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    assert ok.success and store.get(ok_id)["retry_count"] == 0
    s3_server.clear_failures()

    # Publishing refused for good: the step retries, then fails; nothing is published.
    s3_server.fail("CopyObject", status=403, code="AccessDenied")
    bad_id, bad, _ = export(settings, store, instance, [clip(cdn.url("portrait.mp4"), 1)])
    s3_server.clear_failures()
    row = store.get(bad_id)
    assert not bad.success and row["status"] == st.FAILED
    assert row["error_message"].startswith("published_video failed (after 2 attempts)")
    assert "AccessDenied" in row["error_message"]
    assert row["error_cause"] == "storage"
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert f"videos/exp-{bad_id}.mp4" not in keys
    assert f"videos/exp-{ok_id}.mp4" in keys
    assert list(Path(settings.media.work_dir).iterdir()) == []


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 bytes"), (1023, "1023 bytes"), (300_000, "293.0 KB"), (5 * 1024**3, "5.0 GB")],
)
def test_human_bytes(n, text):
    assert human_bytes(n) == text


def ffmpeg_canceled_midway(tmp_path: Path, db_url: str) -> Path:
    """An ffmpeg whose encode is interrupted by a cancel: the app asks to cancel while it
    runs, and FFmpeg dies of the interrupt the way it does under a terminated run."""
    import sys

    script = tmp_path / "ffmpeg-canceled"
    cancel = (
        "from export_pipeline.io.appdb.store import RequestStore; "
        f"s = RequestStore.from_url({db_url!r}); "
        "[s.request_cancel(r['id']) for r in s.list(status='processing', limit=10)]"
    )
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in *libx264*)\n'
        f'  "{sys.executable}" -c "{cancel}"\n'
        '  echo "Exiting normally, received signal 2." >&2; exit 255;;\n'
        "esac\n"
        'exec ffmpeg "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_a_cancel_during_an_encode_never_waits_for_a_retry(
    settings, store, instance, cdn, tmp_path
):
    """The encode fails because the export is being canceled: that is the end, not a
    transient FFmpeg error to retry after a backoff with the run slot held."""
    from dagster import DagsterEventType

    settings = settings.replace(
        media={"ffmpeg": str(ffmpeg_canceled_midway(tmp_path, settings.app_db.url))}
    )
    request_id, result, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    row = store.get(request_id)
    assert not result.success
    assert row["status"] == st.CANCELED and row["retry_count"] == 0, row
    assert "canceled at the app's request" in row["error_message"]
    assert row["error_cause"] == "canceled"
    retries = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert retries == []
    no_leftovers(settings, request_id, published=False)
