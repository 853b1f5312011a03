"""One export's segments as Dagster steps of their own (issue 13), in real runs with real
FFmpeg: a step per segment, the same video as rendering in one process, a long clip cut into
chunks, one failing segment retried alone, a re-execution from failure that reuses the
finished segments, and a cancel during the fan-out."""

from __future__ import annotations

import stat
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from dagster import DagsterEventType, ReexecutionOptions, execute_job, reconstructable

from export_pipeline.domain import status as st
from export_pipeline.domain.layout import encoded_record_key
from export_pipeline.io.storage import LocalStorage
from export_pipeline.media.clip import Clip
from export_pipeline.media.encoding import encode_settings
from export_pipeline.media.probe import probe
from export_pipeline.media.render import render_video
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.e2e.test_pipeline import export, ffprobe
from export_pipeline_tests.faults.test_faults_in_process import crashing_ffmpeg

pytestmark = pytest.mark.e2e


def steps_of(result, event_type=DagsterEventType.STEP_SUCCESS) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type == event_type]


def decoded_md5(path: Path) -> tuple[str, str]:
    """What a player shows and plays: the MD5 of the decoded pictures and of the sound."""
    digests = []
    for stream in ("0:v:0", "0:a:0"):
        raw = subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(path), "-map", stream, "-f", "md5", "-"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        digests.append(raw.strip())
    return digests[0], digests[1]


def encoded_file(settings, request_id: int) -> Path:
    """The published video (publishing moved the encoded file there)."""
    return LocalStorage(Path(settings.storage.local_root)).path(f"videos/exp-{request_id}.mp4")


def test_each_segment_is_a_step_and_the_video_is_the_single_process_one(
    settings, store, instance, cdn, tmp_path
):
    settings = settings.replace(media={"segments_per_step": 1})  # as under a distributed executor
    clips = [
        clip(cdn.url("landscape.mp4"), 1, duration=1.5),
        clip(cdn.url("portrait.mp4"), 2),
        clip(cdn.url("classic.mp4"), 3, trim=0.25),
    ]
    request_id, result, _ = export(settings, store, instance, clips)
    assert result.success and store.get(request_id)["status"] == st.COMPLETE
    steps = steps_of(result)
    segments = sorted(s for s in steps if s.startswith("encoded_video.encoded_video_segment"))
    assert segments == [  # the audio track is a step of its own, beside the pictures
        "encoded_video.encoded_video_segment[audio]",
        *(f"encoded_video.encoded_video_segment[segment_{n:04d}]" for n in range(3)),
    ], steps
    assert {"encoded_video.encoded_video_plan", "encoded_video.encoded_video_join"} <= set(steps)
    (materialized,) = result.asset_materializations_for_node("encoded_video")
    assert materialized.metadata["segments"].value == 3
    assert materialized.metadata["rendered_in_join"].value == 0  # all by the segment steps

    # The same request rendered in one process, as before the fan-out: the same pictures
    # and sound, the same length.
    record = LocalStorage(Path(settings.storage.local_root)).get_json(
        encoded_record_key(f"exp-{request_id}")
    )
    fanned = encoded_file(settings, request_id)
    inputs = []
    for n, name in enumerate(("landscape.mp4", "portrait.mp4", "classic.mp4")):
        local = tmp_path / name
        local.write_bytes((cdn.root / name).read_bytes())
        spec = clips[n]
        inputs.append(
            Clip(
                local,
                spec.get("trim_start", 0.0),
                spec.get("duration"),
                probe(local),
                f"clip {n + 1}",
            )  # fmt: skip
        )
    one = encode_settings("720p", "16:9", "medium", Fraction(record["fps"]),
                          settings.media.x264_preset, loudness=-14.0)  # fmt: skip
    single = render_video(inputs, one, tmp_path / "work", tmp_path / "single.mp4")
    assert decoded_md5(fanned) == decoded_md5(single.output)
    assert float(ffprobe(fanned)["format"]["duration"]) == pytest.approx(
        single.duration_s, abs=0.01
    )


def test_in_process_one_step_renders_every_segment_two_at_once(settings, store, instance, cdn):
    """The embedded default: steps run one after another in process, so the segments and
    the audio track go to one step, which keeps two FFmpeg busy as the encode did before
    the fan-out."""
    clips = [clip(cdn.url(name), n) for n, name in
             enumerate(("landscape.mp4", "portrait.mp4", "classic.mp4"), 1)]  # fmt: skip
    request_id, result, _ = export(settings, store, instance, clips)
    assert result.success and store.get(request_id)["status"] == st.COMPLETE
    segments = [s for s in steps_of(result) if "encoded_video_segment" in s]
    assert segments == ["encoded_video.encoded_video_segment[audio_segments_0000_0002]"]
    (materialized,) = result.asset_materializations_for_node("encoded_video")
    assert materialized.metadata["segments"].value == 3
    assert materialized.metadata["rendered_in_join"].value == 0


def test_a_long_clip_is_cut_into_chunks_that_join_seamlessly(
    settings, store, instance, cdn, tmp_path
):
    """A 4 s clip with chunks of at most 1.5 s: three segment steps, the frames and the sound
    of the whole clip, in sync."""
    settings = settings.replace(media={"max_segment_s": 1.5, "segments_per_step": 1})
    source = cdn.root / "long-4s.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=4",
         "-f", "lavfi", "-i", "sine=f=440:d=4", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-shortest", str(source)],
        check=True,
    )  # fmt: skip
    request_id, result, _ = export(settings, store, instance, [clip(cdn.url("long-4s.mp4"), 1)])
    assert result.success
    segments = [s for s in steps_of(result) if "encoded_video_segment" in s]
    assert len(segments) == 3 + 1  # and the audio track
    video = ffprobe(encoded_file(settings, request_id))
    (v,) = [s for s in video["streams"] if s["codec_type"] == "video"]
    (a,) = [s for s in video["streams"] if s["codec_type"] == "audio"]
    assert int(v["nb_frames"]) == 100  # 4 s at 25 fps, no frame lost or doubled at a seam
    assert float(a["duration"]) == pytest.approx(4.0, abs=0.03)


def test_one_failing_segment_is_retried_alone(settings, store, instance, cdn, tmp_path):
    ffmpeg = crashing_ffmpeg(tmp_path, writing="segment-0001.mp4")
    settings = settings.replace(media={"ffmpeg": str(ffmpeg), "segments_per_step": 1})
    clips = [clip(cdn.url("landscape.mp4"), n) for n in (1, 2, 3)]
    clips[1] = clip(cdn.url("portrait.mp4"), 2)
    request_id, result, _ = export(settings, store, instance, clips)
    row = store.get(request_id)
    assert result.success and row["status"] == st.COMPLETE and row["retry_count"] == 1
    retried = steps_of(result, DagsterEventType.STEP_UP_FOR_RETRY)
    assert retried == ["encoded_video.encoded_video_segment[segment_0001]"]
    # Its retry used safer settings, so the join rendered the other two again with them
    # (segments of one video share their settings); the first attempt of the others ran
    # once each in their own steps.
    (materialized,) = result.asset_materializations_for_node("encoded_video")
    assert materialized.metadata["attempt"].value == 2
    assert materialized.metadata["rendered_in_join"].value == 2
    assert row["progress"] == 100


def test_reexecution_from_failure_reuses_the_finished_segments(cdn, tmp_path, monkeypatch):
    """The run fails for good in one segment; re-executed from failure (as an operator does
    in the UI), only that segment and the join run again, and the others come from the
    segment cache."""
    from dagster import DagsterInstance

    from export_pipeline.defs.settings import Settings
    from export_pipeline.io.appdb.store import RequestStore

    broken = tmp_path / "ffmpeg-fails-segment-2"
    broken.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{tmp_path}/ffmpeg.log"\n'
        'case "$*" in *segment-0002.mp4*) '
        f'if [ ! -e "{tmp_path}/fixed" ]; then echo "Invalid data" >&2; exit 1; fi;; esac\n'
        'exec ffmpeg "$@"\n'
    )
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    # The re-execution loads the job as a code location does: settings from the environment.
    for name, value in {
        "EXPORT_PIPELINE_HOME": str(tmp_path / "home"),
        "EXPORT_WORK_DIR": str(tmp_path / "work"),
        "EXPORT_FFMPEG": str(broken),
        "EXPORT_MAX_RETRIES": "0",
        "EXPORT_SEGMENTS_PER_STEP": "1",
        "EXPORT_ALLOW_HTTP": "true",
        "EXPORT_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    settings.home.mkdir(parents=True)
    store = RequestStore.from_url(settings.app_db.url)
    store.create_schema()
    (tmp_path / "dagster").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        clips = [clip(cdn.url(name), n) for n, name in
                 enumerate(("landscape.mp4", "portrait.mp4", "classic.mp4"), 1)]  # fmt: skip
        request_id, first, _ = export(settings, store, instance, clips)
        assert not first.success
        failed = steps_of(first, DagsterEventType.STEP_FAILURE)
        assert failed == ["encoded_video.encoded_video_segment[segment_0002]"]
        assert store.get(request_id)["status"] == st.FAILED
        (tmp_path / "fixed").touch()
        (tmp_path / "ffmpeg.log").unlink()
        # The audio track's step succeeded, but its file is gone from storage (swept, lost):
        # the join renders it again from the cached sound of the segments.
        (track,) = Path(settings.storage.local_root).glob(f"work/exp-{request_id}/audio-*.m4a")
        track.unlink()
        options = ReexecutionOptions.from_failure(first.run_id, instance)
        with execute_job(
            reconstructable(_job_for_reexecution),
            instance=instance,
            reexecution_options=options,
            tags=first.dagster_run.tags,  # the partition and the request, as the UI copies them
        ) as again:
            assert again.success
            rerun = steps_of(again)
    assert "encoded_video.encoded_video_segment[segment_0002]" in rerun
    assert not [s for s in rerun if s.endswith(("[segment_0000]", "[segment_0001]"))]
    ran = (tmp_path / "ffmpeg.log").read_text().splitlines()
    encodes = [x for x in ran if "libx264" in x]
    assert len(encodes) == 1 and "segment-0002.mp4" in encodes[0]  # the others were cached
    assert [x for x in ran if "-c:a aac" in x]  # the audio track, encoded again in the join
    assert not [x for x in ran if "pcm_s16le" in x]  # from the sound the cache had
    assert not list(Path(settings.storage.local_root).glob(f"work/exp-{request_id}/audio-*"))
    assert store.get(request_id)["status"] == st.COMPLETE


def _job_for_reexecution():
    """The export job as a code location would load it (from the environment)."""
    from export_pipeline.definitions import build_definitions
    from export_pipeline.defs.settings import Settings

    return build_definitions(Settings.from_env()).resolve_job_def("export_video_job")


def test_a_cancel_during_the_fan_out_stops_every_segment(settings, store, instance, cdn, tmp_path):
    """The app cancels while the second segment encodes: that step stops, no later segment
    starts, the join never runs, and the row ends canceled without a retry."""
    script = tmp_path / "ffmpeg-cancel-in-segment-1"
    cancel = (
        "from export_pipeline.io.appdb.store import RequestStore; "
        f"s = RequestStore.from_url({settings.app_db.url!r}); "
        "[s.request_cancel(r['id']) for r in s.list(status='processing', limit=10)]"
    )
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{tmp_path}/ffmpeg.log"\n'
        'case "$*" in *segment-0001.mp4*)\n'
        f'  "{sys.executable}" -c "{cancel}"\n'
        '  echo "Exiting normally, received signal 2." >&2; exit 255;;\n'
        "esac\n"
        'exec ffmpeg "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    settings = settings.replace(media={"ffmpeg": str(script), "segments_per_step": 1})
    clips = [clip(cdn.url("landscape.mp4"), n) for n in (1, 2, 3)]
    clips[1], clips[2] = clip(cdn.url("portrait.mp4"), 2), clip(cdn.url("classic.mp4"), 3)
    request_id, result, _ = export(settings, store, instance, clips)
    row = store.get(request_id)
    assert not result.success
    assert row["status"] == st.CANCELED and row["retry_count"] == 0, row
    assert not steps_of(result, DagsterEventType.STEP_UP_FOR_RETRY)
    # In process the last segment's step still starts, finds the row canceled and stops
    # before any FFmpeg (under the daemon the cancel sensor ends the run instead).
    started = steps_of(result, DagsterEventType.STEP_START)
    assert "encoded_video.encoded_video_join" not in started
    assert "published_video" not in started
    log = (tmp_path / "ffmpeg.log").read_text()
    assert "segment-0001.mp4" in log and "segment-0002.mp4" not in log
