"""The poster frame: where it is taken, the FFmpeg command, the picture it gives, and how
`published_video` stores it, puts its URL on the row and shows it in Dagster."""

import base64
import stat
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from export_pipeline.definitions import build_definitions
from export_pipeline.domain import status as st
from export_pipeline.media.ffmpeg import FFmpeg
from export_pipeline.media.poster import make_poster, poster_argv, poster_time
from export_pipeline.media.runner import FFmpegError, run_ffmpeg
from export_pipeline.media.samples import make_sample_clip
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.e2e.test_pipeline import export, ffprobe


@pytest.mark.parametrize(
    ("duration", "at"),
    [
        (None, 0.0),
        (0.0, 0.0),
        (0.4, 0.2),  # very short: the middle
        (1.5, 0.75),
        (2.0, 1.0),
        (3.0, 1.0),  # 1 s in
        (10.0, 1.0),
        (30.0, 3.0),  # 10 % in
        (600.0, 60.0),
    ],
)
def test_poster_time(duration, at):
    assert poster_time(duration) == pytest.approx(at)


def test_poster_argv_reads_only_the_local_file_and_writes_one_jpeg():
    argv = poster_argv(Path("/w/x:y.mp4"), Path("/w/poster.jpg"), 1.0, width=640)
    assert argv[0] == "ffmpeg" and FFmpeg(ffmpeg="ff").command(argv)[0] == "ff"
    i = argv.index("-i")
    assert argv[i + 1] == "file:/w/x:y.mp4"  # explicit protocol: the name cannot be misread
    before_input = argv[:i]
    assert before_input[before_input.index("-protocol_whitelist") + 1] == "file"
    assert "mp4" in before_input[before_input.index("-format_whitelist") + 1].split(",")
    assert before_input[before_input.index("-ss") + 1] == "1.000000"  # input seeking
    assert argv[argv.index("-frames:v") + 1] == "1"
    assert "min(iw,640)" in argv[argv.index("-filter_complex") + 1]  # never upscaled
    assert argv[argv.index("-c:v") + 1] == "mjpeg"
    assert argv[-1] == "file:/w/poster.jpg"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"at_s": -1.0}, "at_s"),
        ({"at_s": 1.0, "width": 8}, "width"),
        ({"at_s": 1.0, "quality": 1}, "quality"),
    ],
)
def test_poster_argv_refuses_nonsense(kwargs, message):
    with pytest.raises(ValueError, match=message):
        poster_argv(Path("v.mp4"), Path("p.jpg"), **kwargs)


def size_of(path: Path) -> tuple[int, int]:
    stream = ffprobe(path)["streams"][0]
    return stream["width"], stream["height"]


def mean_luma(jpeg: Path) -> float:
    gray = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(jpeg), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        check=True,
        capture_output=True,
    ).stdout
    return sum(gray) / len(gray)


@pytest.fixture(scope="module")
def fade_in(tmp_path_factory) -> Path:
    """3 s of white fading in from black over the first 0.8 s, as AI clips often do."""
    path = tmp_path_factory.mktemp("poster") / "fade-in.mp4"
    graph = "color=c=white:s=640x360:r=25:d=3,fade=t=in:st=0:d=0.8,format=yuv420p"
    run_ffmpeg(
        ["ffmpeg", "-y", "-nostdin", "-v", "error", "-f", "lavfi", "-i", graph]
        + ["-c:v", "libx264", "-preset", "ultrafast", str(path)],
        timeout_s=60,
    )
    return path


def test_poster_is_a_frame_of_the_picture_not_the_black_first_frame(fade_in, tmp_path):
    first = make_poster(fade_in, tmp_path / "first.jpg", 0.0)
    poster = make_poster(fade_in, tmp_path / "poster.jpg", poster_time(3.0))
    assert mean_luma(first) < 30  # what a naive poster would show
    assert mean_luma(poster) > 200
    assert ffprobe(poster)["streams"][0]["codec_name"] == "mjpeg"
    assert size_of(poster) == (640, 360)  # narrower than 1280: not upscaled


def test_poster_width_keeps_the_aspect_ratio(tmp_path):
    video = make_sample_clip(tmp_path / "v.mp4", width=720, height=1280, duration=1.0, audio=False)
    assert size_of(make_poster(video, tmp_path / "p.jpg", 0.5, width=320)) == (320, 568)


def test_poster_beyond_the_end_is_an_error(fade_in, tmp_path):
    with pytest.raises(FFmpegError, match="wrote no picture"):
        make_poster(fade_in, tmp_path / "late.jpg", 30.0)
    assert not (tmp_path / "late.jpg").exists()


def test_poster_of_a_playlist_reads_nothing_else(tmp_path):
    secret = tmp_path / "secret.mp4"
    make_sample_clip(secret, width=320, height=240, duration=1.0, audio=False)
    playlist = tmp_path / "evil.mp4"
    playlist.write_text(f"ffconcat version 1.0\nfile '{secret}'\n")
    with pytest.raises(FFmpegError):
        make_poster(playlist, tmp_path / "p.jpg", 0.0)


# ---- published_video


def local_path(url: str) -> Path:
    return Path(unquote(urlsplit(url).path))


@pytest.mark.e2e
def test_published_video_stores_a_poster_and_shows_it(settings, store, instance, cdn):
    request_id, result, defs = export(
        settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)], resolution="720p"
    )
    assert result.success
    row = store.get(request_id)
    assert row["status"] == st.COMPLETE
    poster = Path(settings.storage.local_root) / "videos" / f"exp-{request_id}.jpg"
    assert row["poster_url"] == poster.as_uri() and local_path(row["poster_url"]) == poster
    assert size_of(poster) == (1280, 720)
    assert mean_luma(poster) > 60  # the lifted test pattern, not black

    (event,) = result.asset_materializations_for_node("published_video")
    metadata = event.metadata
    assert metadata["poster_url"].value == row["poster_url"]
    markdown = metadata["poster"].value
    prefix = "![poster](data:image/jpeg;base64,"
    assert markdown.startswith(prefix) and markdown.endswith(")")
    thumbnail = Path(settings.home) / "thumbnail.jpg"
    thumbnail.write_bytes(base64.b64decode(markdown[len(prefix) : -1]))
    assert size_of(thumbnail) == (320, 180)
    assert list(Path(settings.media.work_dir).iterdir()) == []


def failing_poster_ffmpeg(tmp_path: Path) -> Path:
    """An ffmpeg that fails every JPEG command and runs everything else."""
    script = tmp_path / "ffmpeg-no-jpeg"
    script.write_text(
        '#!/bin/sh\ncase "$*" in *mjpeg*) echo "simulated poster failure" >&2; exit 1;; esac\n'
        'exec ffmpeg "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@pytest.mark.e2e
def test_a_poster_failure_never_holds_back_the_video(settings, store, instance, cdn, tmp_path):
    request_id, first, _ = export(settings, store, instance, [clip(cdn.url("landscape.mp4"), 1)])
    assert first.success and store.get(request_id)["poster_url"]
    poster = Path(settings.storage.local_root) / "videos" / f"exp-{request_id}.jpg"
    assert poster.exists()

    # Re-export with an FFmpeg that cannot make JPEGs: the video is published, the old
    # poster (of the earlier video) is removed and the row no longer points at it.
    defs = build_definitions(
        settings.replace(media={"ffmpeg": str(failing_poster_ffmpeg(tmp_path))})
    )
    again = defs.resolve_job_def("export_video_job").execute_in_process(
        instance=instance, partition_key=f"exp-{request_id}", raise_on_error=False
    )
    assert again.success
    row = store.get(request_id)
    assert row["status"] == st.COMPLETE and row["run_id"] == again.run_id
    assert row["poster_url"] is None and not poster.exists()
    assert local_path(row["video_url"]).is_file()
    (event,) = again.asset_materializations_for_node("published_video")
    assert "no poster" in event.metadata["poster"].value
    assert "poster_url" not in event.metadata
    assert list(Path(settings.media.work_dir).iterdir()) == []


def test_poster_and_thumbnail_come_from_one_decode_of_the_same_frame(fade_in, tmp_path):
    poster, thumbnail = tmp_path / "poster.jpg", tmp_path / "thumb.jpg"
    argv = poster_argv(fade_in, poster, 1.0, thumbnail=(thumbnail, 160))
    assert argv.count("-i") == 1 and argv.count("-map") == 2
    make_poster(fade_in, poster, 1.0, thumbnail=(thumbnail, 160))
    assert size_of(poster) == (640, 360) and size_of(thumbnail) == (160, 90)
    assert mean_luma(thumbnail) == pytest.approx(mean_luma(poster), abs=3)


def test_a_thumbnail_too_small_is_refused():
    with pytest.raises(ValueError, match="width"):
        poster_argv(Path("v.mp4"), Path("p.jpg"), 1.0, thumbnail=(Path("t.jpg"), 8))
