"""One export through the production intake path (sensor -> partition -> run), in process,
checked with ffprobe; then re-execution, and the failure paths the creator would see."""

import json
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from export_pipeline.cli.local_runner import evaluate_intake, run_requested
from export_pipeline.definitions import build_definitions
from export_pipeline.domain import status as st
from export_pipeline_tests.cdn import serve_normally, status
from export_pipeline_tests.conftest import clip

pytestmark = pytest.mark.e2e


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def top_level_boxes(path: Path) -> list[str]:
    boxes, offset, data = [], 0, path.read_bytes()
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        boxes.append(data[offset + 4 : offset + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        if size < 8:
            break
        offset += size
    return boxes


def frame_rgb(path: Path, at_s: float, width: int, height: int) -> bytes:
    return subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-ss",
            str(at_s),
            "-i",
            str(path),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout[: width * height * 3]


def brightness(frame: bytes, width: int, x: int, y: int) -> int:
    i = (y * width + x) * 3
    return sum(frame[i : i + 3])


def export(settings, store, instance, clips, **fields):
    defs = build_definitions(settings)
    request_id = store.insert(
        project_id=fields.get("project_id", "proj"),
        user_id=fields.get("user_id", "creator"),
        resolution=fields.get("resolution", "720p"),
        aspect_ratio=fields.get("aspect_ratio", "16:9"),
        quality=fields.get("quality", "medium"),
        clips=clips,
        format=fields.get("format"),
        audio_normalize=fields.get("audio_normalize"),
        soundtrack=fields.get("soundtrack"),
        captions=fields.get("captions"),
        retention_days=fields.get("retention_days"),
    )
    tick = evaluate_intake(instance, defs, cursor=str(request_id - 1))
    (result,) = run_requested(instance, defs, tick)
    return request_id, result, defs


def test_mixed_clips_export_end_to_end(settings, store, instance, cdn):
    clips = [
        clip(cdn.url("portrait.mp4"), 2, trim=0.5),  # 720x1280 30 fps, no audio: 1.5 s
        clip(cdn.url("landscape.mp4"), 1, duration=1.0),  # 1280x720 24 fps stereo: 1.0 s
        clip(cdn.url("classic.mp4"), 3, trim=0.25, duration=9),  # 640x480 25 fps mono: to the end
    ]
    request_id, result, _ = export(settings, store, instance, clips, resolution="720p")
    assert result.success, result.all_events
    row = store.get(request_id)
    assert row["status"] == st.COMPLETE and row["progress"] == 100
    assert row["error_message"] is None and row["run_id"] == result.run_id
    assert row["processing_started_at"] and row["completed_at"]
    path = Path(unquote(urlsplit(row["video_url"]).path))
    assert row["video_url"].startswith("file://") and path.is_file()
    assert row["output_bytes"] == path.stat().st_size

    info = ffprobe(path)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert (video["width"], video["height"]) == (1280, 720)
    assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
    assert video.get("sample_aspect_ratio", "1:1") == "1:1"
    assert audio["codec_name"] == "aac" and int(audio["sample_rate"]) == 48000
    assert audio["channels"] == 2
    expected = 1.0 + 1.5 + 1.25  # trimmed total
    fps = 30  # the fastest clip's rate
    assert abs(float(video["duration"]) - expected) <= 3 / fps  # one frame per clip
    assert abs(float(audio["duration"]) - float(video["duration"])) <= 0.05
    assert abs(row["output_duration_s"] - expected) <= 3 / fps
    boxes = top_level_boxes(path)
    assert boxes.index("moov") < boxes.index("mdat")  # faststart

    # Scene 2 (portrait) plays from 1.0 s: pillarboxed, never stretched.
    frame = frame_rgb(path, 1.6, 1280, 720)
    assert brightness(frame, 1280, 20, 360) < 40  # left bar black
    assert brightness(frame, 1280, 1260, 360) < 40  # right bar black
    assert brightness(frame, 1280, 640, 360) > 60  # picture in the middle

    # What operators see in the Dagster UI.
    events = {
        m.asset_key.path[-1]: m.metadata
        for m in result.asset_materializations_for_node("downloaded_clips")
        + result.asset_materializations_for_node("encoded_video")
        + result.asset_materializations_for_node("published_video")
    }
    assert set(events) == {"downloaded_clips", "encoded_video", "published_video"}
    assert events["downloaded_clips"]["clip_count"].value == 3
    assert events["downloaded_clips"]["fetched"].value == 3
    # Each fetched clip's download and checks are timed, and shown per clip.
    table = events["downloaded_clips"]["clips"].value.splitlines()[2:]
    timings = [line.rstrip(" |").split(" | ")[-2:] for line in table]
    assert len(timings) == 3 and all(float(d) > 0 and float(c) > 0 for d, c in timings), table
    total = sum(float(c) for _, c in timings)
    assert events["downloaded_clips"]["check_s"].value == pytest.approx(total, abs=0.01)
    assert events["published_video"]["url"].value == row["video_url"]
    assert events["published_video"]["clip_count"].value == 3


def test_reexecution_reuses_archived_clips_after_the_cdn_forgot_them(
    settings, store, instance, cdn
):
    request_id, first, defs = export(
        settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)], resolution="720p"
    )
    assert first.success
    first_url = store.get(request_id)["video_url"]
    cdn.fail("landscape.mp4", status(404))
    hits = cdn.hits["landscape.mp4"]

    again = defs.resolve_job_def("export_video_job").execute_in_process(
        instance=instance, partition_key=f"exp-{request_id}", raise_on_error=False
    )
    assert again.success
    assert cdn.hits["landscape.mp4"] == hits  # the CDN was not asked again
    metadata = again.asset_materializations_for_node("downloaded_clips")[0].metadata
    assert metadata["reused"].value == 1 and metadata["fetched"].value == 0
    assert metadata["check_s"].value == 0  # nothing fetched, nothing checked again
    assert metadata["clips"].value.splitlines()[2].endswith("| reused | - | - |")
    row = store.get(request_id)
    assert row["status"] == st.COMPLETE and row["run_id"] == again.run_id
    assert row["video_url"] == first_url  # the stable key: one video per request
    videos = list((Path(settings.storage.local_root) / "videos").iterdir())
    assert sorted(v.name for v in videos) == [f"exp-{request_id}.jpg", f"exp-{request_id}.mp4"]


def test_expired_clip_fails_with_a_message_naming_it(settings, store, instance, cdn):
    cdn.fail("portrait.mp4", status(403))
    clips = [clip(cdn.url("landscape.mp4"), 1), clip(cdn.url("portrait.mp4"), 7)]
    request_id, result, _ = export(settings, store, instance, clips)
    assert not result.success
    row = store.get(request_id)
    assert row["status"] == st.FAILED
    assert row["error_message"].startswith("downloaded_clips failed: clip 2 (scene 7):")
    assert "expired or was removed" in row["error_message"]
    assert row["error_cause"] == "expired_clip_url"
    assert row["retry_count"] == 0  # permanent: no retries burnt
    assert cdn.hits["portrait.mp4"] == 1


def test_not_a_video_fails_permanently(settings, store, instance, cdn):
    (cdn.root / "page.mp4").write_text("<html><body>Access denied</body></html>")
    request_id, result, _ = export(settings, store, instance, [clip(cdn.url("page.mp4"), 1)])
    row = store.get(request_id)
    assert not result.success and row["status"] == st.FAILED
    assert "clip 1 (scene 1): the file" in row["error_message"]
    assert "HTML" in row["error_message"]
    assert row["error_cause"] == "invalid_clip_file"


def test_transient_error_is_retried_then_succeeds(settings, store, instance, cdn):
    cdn.fail("landscape.mp4", status(503), serve_normally)
    request_id, result, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    assert result.success
    row = store.get(request_id)
    assert row["status"] == st.COMPLETE and row["retry_count"] == 1
    assert cdn.hits["landscape.mp4"] == 2


def test_transient_error_fails_after_the_last_attempt(settings, store, instance, cdn):
    cdn.fail("landscape.mp4", status(503))
    request_id, result, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    assert not result.success
    row = store.get(request_id)
    assert row["status"] == st.FAILED and row["retry_count"] == settings.runs.max_retries
    assert f"after {settings.runs.max_retries + 1} attempts" in row["error_message"]
    assert "HTTP 503" in row["error_message"]
    assert row["error_cause"] == "clip_download"
    assert cdn.hits["landscape.mp4"] == settings.runs.max_retries + 1


def test_trim_beyond_the_clip_fails_naming_it(settings, store, instance, cdn):
    clips = [clip(cdn.url("landscape.mp4"), 1), clip(cdn.url("classic.mp4"), 2, trim=5)]
    request_id, result, _ = export(settings, store, instance, clips)
    row = store.get(request_id)
    assert not result.success and row["status"] == st.FAILED
    assert (
        "clip 2 (scene 2): trim_start 5 s is at or beyond the clip's length" in row["error_message"]
    )
    assert row["error_cause"] == "invalid_request"


def test_no_temporary_files_are_left(settings, store, instance, cdn):
    export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    cdn.fail("portrait.mp4", status(404))
    export(settings, store, instance, [clip(cdn.url("portrait.mp4"), 1)])
    assert list(Path(settings.media.work_dir).iterdir()) == []


def test_reexport_renders_only_the_clip_that_changed(settings, store, instance, cdn):
    names = ["landscape.mp4", "portrait.mp4", "classic.mp4"]
    first_id, first, _ = export(
        settings, store, instance, [clip(cdn.url(n), i) for i, n in enumerate(names, 1)]
    )
    assert first.success
    (encoded,) = first.asset_materializations_for_node("encoded_video")
    assert encoded.metadata["reused_segments"].value == 0

    # The creator regenerates scene 3 and exports again: a new request, one new clip.
    from export_pipeline.media.samples import make_sample_clip

    make_sample_clip(cdn.root / "classic-v2.mp4", width=640, height=480, fps=25, duration=1.5,
                     tone_hz=660)  # fmt: skip
    changed = [clip(cdn.url("landscape.mp4"), 1), clip(cdn.url("portrait.mp4"), 2),
               clip(cdn.url("classic-v2.mp4"), 3)]  # fmt: skip
    second_id, second, _ = export(settings, store, instance, changed)
    assert second.success
    (encoded,) = second.asset_materializations_for_node("encoded_video")
    assert encoded.metadata["reused_segments"].value == 2  # only scene 3 was rendered
    path = Path(unquote(urlsplit(store.get(second_id)["video_url"]).path))
    info = ffprobe(path)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert abs(float(video["duration"]) - (2.0 + 2.0 + 1.5)) <= 3 / 30
    assert abs(float(audio["duration"]) - float(video["duration"])) <= 0.05


def test_clips_already_in_the_target_format_are_stream_copied(
    settings, store, instance, cdn, tmp_path
):
    # Two clips as an upstream encoder would make them: 1280x720 30 fps H.264 + AAC, within
    # the 720p `high` bitrate cap.
    for n, name in enumerate(("ready-1.mp4", "ready-2.mp4")):
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=s=1280x720:r=30:d=1,hue=h={n * 90}",
             "-f", "lavfi", "-i", "sine=f=440:d=1:sample_rate=48000", "-c:v", "libx264",
             "-preset", "veryfast", "-b:v", "2M", "-maxrate", "2M", "-bufsize", "2M",
             "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(cdn.root / name)],
            check=True,
        )  # fmt: skip
    clips = [clip(cdn.url("ready-1.mp4"), 1), clip(cdn.url("ready-2.mp4"), 2)]
    request_id, result, _ = export(
        settings, store, instance, clips, resolution="720p", quality="high"
    )
    assert result.success
    (encoded,) = result.asset_materializations_for_node("encoded_video")
    assert encoded.metadata["stream_copy"].value is True
    path = Path(unquote(urlsplit(store.get(request_id)["video_url"]).path))
    info = ffprobe(path)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert (video["width"], video["height"], video["r_frame_rate"]) == (1280, 720, "30/1")
    assert int(video["nb_frames"]) == 60
    assert abs(float(audio["duration"]) - float(video["duration"])) < 0.05
    assert top_level_boxes(path).index("moov") < top_level_boxes(path).index("mdat")


def test_the_work_copy_goes_once_published_and_publishing_alone_again_works(
    settings, store, instance, cdn
):
    """The encoded work copy would double every video in storage (and count twice against
    the quota) until retention: it goes once published; an operator re-executing only
    `published_video` republishes from the published video."""
    from dagster import AssetKey

    request_id, first, defs = export(settings, store, instance, [clip(cdn.url("classic.mp4"), 1)])
    assert first.success
    part = f"exp-{request_id}"
    root = Path(settings.storage.local_root)
    assert not (root / "work" / part / "encoded.mp4").exists()
    assert (root / "work" / part / "encoded.json").exists()  # the record stays
    video = root / "videos" / f"{part}.mp4"
    published = video.read_bytes()

    again = defs.resolve_job_def("export_video_job").execute_in_process(
        instance=instance,
        partition_key=part,
        asset_selection=[AssetKey("published_video")],
        raise_on_error=False,
    )
    assert again.success
    assert video.read_bytes() == published
    row = store.get(request_id)
    assert row["status"] == st.COMPLETE and row["run_id"] == again.run_id
    assert row["output_bytes"] == len(published)


def test_the_encode_step_does_not_probe_clips_again(settings, store, instance, cdn, tmp_path):
    """The clip manifest keeps each clip's whole probe (exact, versioned): the encode step
    starts its segments without running ffprobe on them again (it probes only its output)."""
    log = tmp_path / "ffprobe.log"
    wrapper = tmp_path / "ffprobe-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec ffprobe "$@"\n')
    wrapper.chmod(0o755)
    settings = settings.replace(media={"ffprobe": str(wrapper)})
    clips = [clip(cdn.url("landscape.mp4"), 1), clip(cdn.url("classic.mp4"), 2)]
    request_id, result, _ = export(settings, store, instance, clips)
    assert result.success, result.all_events
    calls = log.read_text().splitlines()
    assert sum(".download" in call for call in calls) >= 2  # the download step's checks
    assert not [call for call in calls if "source-" in call]  # the encode step's inputs
    assert sum("encoded.mp4" in call for call in calls) == 1
    manifest = json.loads(
        (Path(settings.storage.local_root) / f"work/exp-{request_id}/clips.json").read_text()
    )
    assert all(entry["media"]["version"] >= 1 for entry in manifest["clips"])


@pytest.mark.parametrize(("name", "codec", "extension"), [("webm", "vp9", "webm"),
                                                          ("mp4-hevc", "hevc", "mp4")])  # fmt: skip
def test_other_formats_are_published_at_their_own_key(
    settings, store, instance, cdn, name, codec, extension
):
    """The format reaches the published file: its codec, its key and extension, a poster;
    re-executing the export replaces it in place (one video per request)."""
    clips = [clip(cdn.url("landscape.mp4"), 1, duration=1.0), clip(cdn.url("classic.mp4"), 2)]
    request_id, result, defs = export(settings, store, instance, clips, format=name)
    assert result.success, result.all_events
    row = store.get(request_id)
    path = Path(unquote(urlsplit(row["video_url"]).path))
    assert path.name == f"exp-{request_id}.{extension}"
    assert row["poster_url"] and row["output_bytes"] == path.stat().st_size
    streams = ffprobe(path)["streams"]
    assert next(s for s in streams if s["codec_type"] == "video")["codec_name"] == codec
    metadata = result.asset_materializations_for_node("published_video")[0].metadata
    assert metadata["format"].value == name

    again = defs.resolve_job_def("export_video_job").execute_in_process(
        instance=instance, partition_key=f"exp-{request_id}", raise_on_error=False
    )
    assert again.success
    videos = sorted(v.name for v in (Path(settings.storage.local_root) / "videos").iterdir())
    assert videos == [f"exp-{request_id}.jpg", f"exp-{request_id}.{extension}"]
