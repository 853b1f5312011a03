"""The finishing touches of issue 12 through the production intake path (sensor ->
partition -> run) with real FFmpeg: transitions, even loudness, a soundtrack and captions
fetched from the CDN, checked on the published file; then a re-export of the same request
after its CDN files are gone (everything was archived)."""

import json
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from export_pipeline.cli.local_runner import evaluate_intake, run_requested
from export_pipeline.domain import status as st
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.e2e.test_pipeline import export, ffprobe

pytestmark = pytest.mark.e2e


def loudness_of(path: Path, start: float, length: float) -> float:
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-ss", str(start), "-t", str(length), "-i",
         str(path), "-map", "0:a:0", "-af", "ebur128=framelog=verbose", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    summary = done.stderr[done.stderr.rindex("Integrated loudness") :]
    return float(summary.split("I:")[1].split("LUFS")[0])


def test_transitions_soundtrack_and_captions_end_to_end(settings, store, instance, cdn):
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=f=220:d=2",
         str(cdn.root / "song.mp3")],
        check=True,
    )  # fmt: skip
    (cdn.root / "subs.srt").write_text("1\n00:00:00,500 --> 00:00:01,500\nHello there\n")
    clips = [
        clip(cdn.url("landscape.mp4"), 1, duration=2.0),
        {**clip(cdn.url("portrait.mp4"), 2, duration=2.0),
         "transition": {"type": "crossfade", "duration": 0.5}},
        {**clip(cdn.url("classic.mp4"), 3, duration=1.5), "transition": {"type": "fade"}},
    ]  # fmt: skip
    request_id, result, defs = export(
        settings, store, instance, clips,
        soundtrack={"url": cdn.url("song.mp3"), "volume": 0.2},
        captions={"url": cdn.url("subs.srt"), "burn_in": False},
    )  # fmt: skip
    assert result.success, store.get(request_id)["error_message"]
    row = store.get(request_id)
    assert row["status"] == st.COMPLETE
    # 2 + 2 + 1.5 s of clips, less the 0.5 s crossfade and the 0.5 s fade.
    assert row["output_duration_s"] == pytest.approx(4.5, abs=0.05)
    video = Path(unquote(urlsplit(row["video_url"]).path))
    kinds = {s["codec_type"]: s["codec_name"] for s in ffprobe(video)["streams"]}
    assert kinds == {"video": "h264", "audio": "aac", "subtitle": "mov_text"}
    # The two clips with sound were brought to one loudness (the music ducked under them);
    # the silent one (2.0-3.0 s alone) carries the music alone, quieter.
    levels = [loudness_of(video, 0.0, 1.4), loudness_of(video, 3.6, 0.8)]
    assert all(abs(level - -14.0) <= 1.5 for level in levels), levels
    assert -45 < loudness_of(video, 2.1, 0.8) < min(levels) - 6

    # The CDN forgets everything; the same export runs again from our archive.
    for name in ("song.mp3", "subs.srt", "landscape.mp4", "portrait.mp4", "classic.mp4"):
        (cdn.root / name).unlink()
    again = defs.resolve_job_def("export_video_job").execute_in_process(
        instance=instance, partition_key=f"exp-{request_id}", raise_on_error=False
    )
    assert again.success
    manifest = json.loads(
        (Path(settings.storage.local_root) / f"work/exp-{request_id}/clips.json").read_text()
    )
    assert manifest["soundtrack"]["reused"] is True
    assert manifest["captions"]["text"].startswith("1\n")

    # A re-export is a new request, with a partition of its own: it finds the soundtrack
    # and the captions by their URLs in the archive too, as it does the clips.
    new_id = store.reexport(request_id)
    tick = evaluate_intake(instance, defs, cursor=str(new_id - 1))
    (rerun,) = run_requested(instance, defs, tick)
    assert rerun.success, store.get(new_id)["error_message"]
    manifest = json.loads(
        (Path(settings.storage.local_root) / f"work/exp-{new_id}/clips.json").read_text()
    )
    assert manifest["soundtrack"]["reused"] is True
    assert manifest["captions"]["text"].startswith("1\n")
    kinds = {
        s["codec_type"]
        for s in ffprobe(Path(unquote(urlsplit(store.get(new_id)["video_url"]).path)))["streams"]
    }
    assert kinds == {"video", "audio", "subtitle"}


def test_a_soundtrack_that_is_not_audio_fails_with_a_message(settings, store, instance, cdn):
    (cdn.root / "song.mp3").write_bytes(b"<html>not found</html>" * 20)
    request_id, result, _ = export(
        settings, store, instance, [clip(cdn.url("landscape.mp4"), 1, duration=1.0)],
        soundtrack={"url": cdn.url("song.mp3")},
    )  # fmt: skip
    assert not result.success
    row = store.get(request_id)
    assert row["status"] == st.FAILED
    assert "soundtrack: the file has no audio that can be read" in row["error_message"]
