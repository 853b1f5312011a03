"""The soundtrack mix, measured on real FFmpeg output: music under the clips' audio, looped or
cut, faded, at its volume, ducked while the clips speak, never clipping, exactly as long as
the clips' audio.

The music is a 3000 Hz tone, the clips' "speech" band-limited noise (300-1000 Hz) pulsing 4
times a second at about -20 dBFS RMS: a narrow band-pass at 3000 Hz hears the music alone in
the mix (the speech leaks through it at about -66 dBFS), so the music's level can be measured
while someone speaks.
"""

from __future__ import annotations

import math
import re
import subprocess
import wave
from pathlib import Path

import pytest

from export_pipeline.domain.failures import FailureCause
from export_pipeline.domain.soundtrack import Soundtrack, SoundtrackError, parse_soundtrack
from export_pipeline.media.soundtrack import (
    DUCK_ATTACK_MS,
    DUCK_RATIO,
    DUCK_RELEASE_MS,
    DUCK_THRESHOLD,
    MUSIC_FORMATS,
    mix_filter,
    mix_inputs,
    soundtrack_argv,
)

RATE = 48000
TOTAL = 10 * RATE  # the clips' audio: 4 s silence, 3 s speech, 3 s silence
SPEECH = (4.0, 7.0)
TONE_HZ = 3000
# The music: 3 s of a stereo tone at -6 dBFS peak, at 44.1 kHz (so it is resampled).
MUSIC = f"sine=f={TONE_HZ}:sample_rate=44100:d=3,volume=4,pan=stereo|c0=c0|c1=c0"
SPEECH_LIKE = (
    "anoisesrc=color=white:amplitude=1:seed=7:r=48000,"
    "highpass=f=300,highpass=f=300,lowpass=f=1000,lowpass=f=1000,"
    "volume='0.5+0.5*sin(2*PI*4*t)':eval=frame,volume=2.1,atrim=duration=3,"
    f"adelay={int(SPEECH[0] * 1000)}:all=1,apad=whole_len={TOTAL},pan=stereo|c0=c0|c1=c0"
)
# Two band-passes (Q 30) at the tone: the music only.
TONE = f"bandpass=f={TONE_HZ}:width_type=q:w=30,bandpass=f={TONE_HZ}:width_type=q:w=30"


def ffmpeg(*args: str) -> str:
    done = subprocess.run(
        ["ffmpeg", "-y", "-nostdin", "-hide_banner", "-nostats", *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stderr


def lavfi(path: Path, graph: str, *codec: str) -> Path:
    ffmpeg("-loglevel", "error", "-f", "lavfi", "-i", graph, *codec, str(path))
    return path


def levels(path: Path, start: float, end: float, tone: bool = False) -> tuple[float, float]:
    """RMS and peak level (dBFS) of `path` from `start` to `end` seconds (astats over an
    atrim window; with `tone`, of the music's tone alone). The band-pass runs over the
    whole file before the window is cut, so the window does not start with its ringing."""
    chain = [TONE] if tone else []
    chain += [f"atrim=start={start}:end={end}", "astats=measure_perchannel=none"]
    stderr = ffmpeg("-i", str(path), "-af", ",".join(chain), "-f", "null", "-")
    rms = re.findall(r"RMS level dB: (\S+)", stderr)
    peak = re.findall(r"Peak level dB: (\S+)", stderr)
    return float(rms[-1]), float(peak[-1])


def tone_level(path: Path, start: float, end: float) -> float:
    return levels(path, start, end, tone=True)[0]


def samples(path: Path) -> int:
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, RATE, 2)
        return wav.getnframes()


def probed_duration(path: Path) -> float:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
         str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(done.stdout)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("soundtrack")
    return {
        "dir": directory,
        "clips": lavfi(directory / "clips.wav", SPEECH_LIKE, "-c:a", "pcm_s16le"),
        "wav": lavfi(directory / "music.wav", MUSIC, "-c:a", "pcm_s16le"),
        "mp3": lavfi(directory / "music.mp3", MUSIC, "-c:a", "libmp3lame", "-b:a", "192k"),
    }


def mix(
    media: dict[str, Path],
    name: str,
    music: Path,
    track: Soundtrack,
    duration: float | None = None,
    clips: Path | None = None,
    total: int = TOTAL,
) -> Path:
    """The clips' audio (by default the speech fixture) mixed with `music` into `name`.wav."""
    output = media["dir"] / f"{name}.wav"
    argv = soundtrack_argv(clips or media["clips"], music, output, total, track, duration)
    subprocess.run(argv, check=True, timeout=60)
    return output


@pytest.fixture(scope="module")
def looped(media) -> Path:
    """MP3 music looped under the clips, a short fade out (so 7-9.5 s is clear of it)."""
    return mix(media, "looped", media["mp3"], Soundtrack(volume=0.3, fade_in=1.0, fade_out=0.5))


@pytest.fixture(scope="module")
def own_level(media) -> float:
    """The music file's own level at its tone, as the mix is measured."""
    return tone_level(media["wav"], 0.5, 2.5)


def test_clip_audio_is_speech_level(media):
    speech, _ = levels(media["clips"], *SPEECH)
    silence, _ = levels(media["clips"], 0.0, SPEECH[0])
    assert -22 < speech < -18
    assert silence == -math.inf


def test_output_is_exactly_as_long_as_the_clips_audio(media, looped):
    assert samples(looped) == TOTAL
    once = mix(media, "length_once", media["wav"], Soundtrack(loop=False), 3.0)
    assert samples(once) == TOTAL
    # A length that is no whole number of anything (the music's frames, a second).
    odd = lavfi(media["dir"] / "odd.wav", f"anullsrc=r={RATE}:cl=stereo,atrim=end_sample=77777")
    assert samples(odd) == 77777
    assert (
        samples(mix(media, "length_odd", media["mp3"], Soundtrack(), clips=odd, total=77777))
        == 77777
    )


def test_looped_music_fills_the_whole_video(looped, own_level):
    """The 3 s music plays on through its restarts (3 s, 6 s, 9 s) at its level."""
    expected = own_level + 20 * math.log10(0.3)
    for start, end in [(1.5, 2.9), (3.0, 3.9), (7.6, 8.9), (9.0, 9.4)]:
        assert tone_level(looped, start, end) == pytest.approx(expected, abs=1.0), (start, end)


def test_music_that_does_not_loop_ends_with_itself(media, own_level):
    """Not looped, 3 s of music under 10 s of video: it plays, fades out to its own end
    (placed by the length FFprobe reports, as the join has it), then there is silence."""
    track = Soundtrack(volume=0.3, fade_in=0.5, fade_out=1.0, loop=False)
    once = mix(media, "once", media["mp3"], track, probed_duration(media["mp3"]))
    playing = tone_level(once, 1.0, 1.9)
    assert playing == pytest.approx(own_level + 20 * math.log10(0.3), abs=1.0)
    assert tone_level(once, 2.75, 3.0) < playing - 10  # faded out towards 3 s
    # The clips are silent there too: nothing at all.
    assert levels(once, 3.05, SPEECH[0])[1] == -math.inf
    assert levels(once, 7.5, 10.0)[1] == -math.inf


def test_fades_in_from_the_start_and_out_to_the_end(media):
    """Default fades (1 s in, 2 s out): the first and last quarter seconds are far quieter
    than the music between them."""
    faded = mix(media, "faded", media["wav"], Soundtrack())
    steady = tone_level(faded, 1.75, 2.25)
    assert tone_level(faded, 0.0, 0.25) < steady - 12
    before_fade = tone_level(faded, 7.6, 8.0)  # speech over, the fade out starts at 8 s
    assert before_fade == pytest.approx(steady, abs=1.0)
    assert tone_level(faded, 9.75, 10.0) < before_fade - 12
    # The fade out ends at the video's last sample.
    assert tone_level(faded, 9.95, 10.0) < before_fade - 25


def test_music_ducks_under_speech_and_comes_back(looped):
    free = tone_level(looped, 1.5, 3.5)
    ducked = tone_level(looped, SPEECH[0] + 0.5, SPEECH[1] - 0.5)
    print(f"music {free:.1f} dBFS alone, {ducked:.1f} under speech: ducked {free - ducked:.1f} dB")
    assert free - ducked >= 6
    # Back (within 1 dB) half a second after the speech ends.
    assert tone_level(looped, SPEECH[1] + 0.5, SPEECH[1] + 1.0) == pytest.approx(free, abs=1.0)


@pytest.mark.parametrize("volume", [0.3, 0.8])
def test_music_alone_plays_at_the_set_volume(media, own_level, volume):
    track = Soundtrack(volume=volume, fade_in=0.5, fade_out=0.5)
    mixed = mix(media, f"volume_{volume}", media["wav"], track)
    alone = tone_level(mixed, 1.0, 3.5)
    assert alone - own_level == pytest.approx(20 * math.log10(volume), abs=1.0)


def test_the_sum_never_clips(media):
    """Clips and music both at full scale (pink noise peaking at 0 dBFS), music at volume 1:
    the limiter holds the sum under the ceiling."""
    loud = "anoisesrc=color=pink:amplitude=1:seed={seed}:r={rate}:d=2,volume=6dB,alimiter=limit=0.999:level=0,pan=stereo|c0=c0|c1=c0"
    clips = lavfi(media["dir"] / "loud.wav", loud.format(seed=3, rate=RATE), "-c:a", "pcm_s16le")
    music = lavfi(media["dir"] / "loud.mp3", loud.format(seed=4, rate=44100), "-c:a", "libmp3lame")
    assert levels(clips, 0, 2)[1] > -0.1
    track = Soundtrack(volume=1.0, fade_in=0.0, fade_out=0.0)
    mixed = mix(media, "loud_mix", music, track, clips=clips, total=2 * RATE)
    peak = levels(mixed, 0, 2)[1]
    assert peak < -1.5  # the limiter's -2 dBFS, not 0


def _encode(path: Path, *codec: str, video: bool = False) -> Path:
    picture = ["-f", "lavfi", "-i", "testsrc2=s=160x90:r=10:d=1"] if video else []
    sound = f"sine=f={TONE_HZ}:sample_rate=44100:d=1,volume=4,pan=stereo|c0=c0|c1=c0"
    ffmpeg("-loglevel", "error", *picture, "-f", "lavfi", "-i", sound, *codec, str(path))
    return path


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("music.m4a", ["-c:a", "aac"]),
        ("music.aac", ["-c:a", "aac"]),
        ("music.ogg", ["-c:a", "libopus"]),
        ("music.oga", ["-c:a", "libvorbis", "-f", "ogg"]),
        ("music.flac", ["-c:a", "flac"]),
        ("music.webm", ["-c:a", "libopus"]),
        ("music.mka", ["-c:a", "flac"]),
        ("video.mp4", ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"]),
    ],
)
def test_every_accepted_container_plays(media, own_level, name, codec):
    """Each container a soundtrack may come in (the audio of an MP4 too) opens, loops and
    is heard at its volume."""
    path = _encode(media["dir"] / name, *codec, video=name.endswith(".mp4"))
    clips = lavfi(
        media["dir"] / "silence2.wav", f"anullsrc=r={RATE}:cl=stereo,atrim=end_sample={2 * RATE}"
    )
    track = Soundtrack(volume=0.5, fade_in=0.0, fade_out=0.0)
    mixed = mix(media, f"container_{name}", path, track, clips=clips, total=2 * RATE)
    assert samples(mixed) == 2 * RATE
    expected = own_level + 20 * math.log10(0.5)
    assert tone_level(mixed, 0.2, 0.8) == pytest.approx(expected, abs=1.0)
    assert tone_level(mixed, 1.2, 1.8) == pytest.approx(expected, abs=1.0)  # looped


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "playlist.mp3",
            "#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\nmusic.wav\n#EXT-X-ENDLIST\n",
        ),
        ("list.mp3", "ffconcat version 1.0\nfile 'music.wav'\n"),
    ],
)
def test_a_playlist_is_not_opened_as_music(media, name, text):
    """A "music file" that is really a playlist naming other files is refused."""
    path = media["dir"] / name
    path.write_text(text)
    clips = media["dir"] / "short.wav"
    lavfi(clips, f"anullsrc=r={RATE}:cl=stereo,atrim=end_sample={RATE}")
    output = media["dir"] / f"refused_{name}.wav"
    argv = soundtrack_argv(clips, path, output, RATE, Soundtrack())
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Format not on whitelist" in done.stderr


def test_mix_inputs():
    music = Path("/tmp/x:y.mp3")
    assert mix_inputs(music, loop=True) == [
        "-protocol_whitelist", "file", "-format_whitelist", MUSIC_FORMATS,
        "-stream_loop", "-1", "-vn", "-sn", "-dn", "-i", "file:/tmp/x:y.mp3",
    ]  # fmt: skip
    assert "-stream_loop" not in mix_inputs(music, loop=False)
    assert set(MUSIC_FORMATS.split(",")) >= {"mp3", "mov", "mp4", "m4a", "wav", "ogg", "flac"}
    assert not set(MUSIC_FORMATS.split(",")) & {"hls", "concat", "dash", "image2", "tee"}


def test_mix_filter_graph():
    graph = mix_filter("0:a:0", "[1:a:0]", 480000, RATE, Soundtrack(), None)
    assert graph.startswith("[0:a:0]asplit=2")
    assert "[1:a:0]aresample=48000," in graph
    assert (
        f"sidechaincompress=threshold={DUCK_THRESHOLD}:ratio={DUCK_RATIO}"
        f":attack={DUCK_ATTACK_MS}:release={DUCK_RELEASE_MS}" in graph
    )
    assert "amix=inputs=2:normalize=0" in graph
    assert "alimiter=limit=0.7943" in graph  # -2 dBFS
    assert "afade=t=in:start_sample=0:nb_samples=48000" in graph
    assert "afade=t=out:start_sample=384000:nb_samples=96000" in graph  # ends at 10 s
    assert "volume=0.300000" in graph
    assert graph.endswith("apad=whole_len=480000,atrim=end_sample=480000[a]")


def test_mix_filter_fades_end_where_the_music_stops():
    once = Soundtrack(fade_in=1.0, fade_out=2.0, loop=False)
    graph = mix_filter("0:a", "1:a", 480000, RATE, once, 3.0)
    assert "atrim=end_sample=144000" in graph
    assert "afade=t=out:start_sample=48000:nb_samples=96000" in graph
    # Looped, or of unknown length: the fade ends with the video.
    for track, duration in [(Soundtrack(loop=True), 3.0), (once, None)]:
        graph = mix_filter("0:a", "1:a", 480000, RATE, track, duration)
        assert "afade=t=out:start_sample=384000:nb_samples=96000" in graph
    # Music longer than the video, not looped: cut at the video's end.
    assert "atrim=end_sample=480000" in mix_filter("0:a", "1:a", 480000, RATE, once, 60.0)
    # Music of no length: silence (no fade, no first sample).
    graph = mix_filter("0:a", "1:a", 480000, RATE, once, 0.0)
    assert "afade" not in graph
    assert "volume=0.000000" in graph


def test_mix_filter_fades_no_longer_than_the_video():
    graph = mix_filter("0:a", "1:a", 24000, RATE, Soundtrack(fade_in=5, fade_out=5), None)
    assert "afade=t=in:start_sample=0:nb_samples=24000" in graph
    assert "afade=t=out:start_sample=0:nb_samples=24000" in graph
    graph = mix_filter("0:a", "1:a", 24000, RATE, Soundtrack(fade_in=0, fade_out=0), None)
    assert "afade" not in graph


def test_parse_soundtrack_defaults_and_values():
    assert parse_soundtrack({"url": " https://x/a.mp3 "}) == (
        "https://x/a.mp3",
        Soundtrack(volume=0.3, fade_in=1.0, fade_out=2.0, loop=True),
    )
    value = {"url": "https://x/a.mp3", "volume": 1, "fade_in": 0, "fade_out": 30, "loop": False}
    assert parse_soundtrack(value) == ("https://x/a.mp3", Soundtrack(1.0, 0.0, 30.0, False))
    nulls = {"url": "u", "volume": None, "fade_in": None, "fade_out": None, "loop": None}
    assert parse_soundtrack(nulls) == ("u", Soundtrack())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"url": "u", "volume": 3}, "soundtrack: volume must be a number from 0 to 1, got 3"),
        ({"url": "u", "volume": -0.1}, "soundtrack: volume must be a number from 0 to 1, got -0.1"),
        (
            {"url": "u", "volume": "0.5"},
            "soundtrack: volume must be a number from 0 to 1, got '0.5'",
        ),
        ({"url": "u", "volume": True}, "soundtrack: volume must be a number from 0 to 1, got True"),
        (
            {"url": "u", "volume": float("nan")},
            "soundtrack: volume must be a number from 0 to 1, got nan",
        ),
        (
            {"url": "u", "fade_in": 31},
            "soundtrack: fade_in must be a number from 0 to 30 (seconds), got 31",
        ),
        (
            {"url": "u", "fade_out": -1},
            "soundtrack: fade_out must be a number from 0 to 30 (seconds), got -1",
        ),
        ({"url": "u", "loop": "yes"}, "soundtrack: loop must be true or false, got 'yes'"),
        ({"url": "u", "loop": 1}, "soundtrack: loop must be true or false, got 1"),
        ({"volume": 0.5}, "soundtrack: url must be a non-empty string, got None"),
        ({"url": "  "}, "soundtrack: url must be a non-empty string, got '  '"),
        ({"url": 5}, "soundtrack: url must be a non-empty string, got 5"),
        (
            {"url": "u", "volum": 0.5},
            "soundtrack: unknown key 'volum' (allowed: url, volume, fade_in, fade_out, loop)",
        ),
        (
            "https://x/a.mp3",
            "soundtrack must be an object with url, volume, fade_in, fade_out, loop, "
            "got 'https://x/a.mp3'",
        ),
    ],
)
def test_parse_soundtrack_refuses(value, message):
    with pytest.raises(SoundtrackError) as raised:
        parse_soundtrack(value)
    assert str(raised.value) == message
    assert raised.value.cause == FailureCause.INVALID_REQUEST and raised.value.permanent


def test_parse_soundtrack_lists_every_problem():
    with pytest.raises(SoundtrackError, match="url must .*; volume must .*; loop must"):
        parse_soundtrack({"volume": 2, "loop": "no"})
