"""A soundtrack under the export, mixed with the clips' own audio in the audio track: looped
or cut to the video, faded in and out, ducked under the clips' sound by a sidechain
compressor so speech stays intelligible, and limited so the sum cannot clip (`mix_filter`).
`mix_inputs` opens the music file (local, audio containers only); `soundtrack_argv` is a
complete command showing how the two fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from export_pipeline.domain.soundtrack import Soundtrack
from export_pipeline.media.inputs import file_url, open_input
from export_pipeline.media.loudness import LIMITER_HEADROOM_DB, TRUE_PEAK_CEILING_DB

# Containers a soundtrack may come in: MP3, MP4/M4A/MOV (AAC, ALAC, or the audio of a
# video), raw AAC (ADTS), WAV, Ogg (Vorbis, Opus, FLAC), FLAC and Matroska/WebM. None of
# them can open another file or URL (unlike hls, dash, concat or playlists).
MUSIC_FORMATS = "mp3,mov,mp4,m4a,3gp,3g2,mj2,aac,wav,ogg,flac,matroska,webm"

# Ducking: a compressor on the music whose level detector listens to the clips' audio.
# FFmpeg's detector follows the key's squared level, rising with a time constant of attack/4
# and falling with one of release/4, so it reads nearer the peaks than the RMS.
# - threshold 0.03 (about -30 dBFS): room tone and ambience leave the music alone (steady
#   noise at -40 dBFS RMS ducked it by 0.02 dB, at -35 by 1 dB); speech is well above it
#   (around -20 dBFS RMS, louder after loudness normalization to -14 LUFS);
# - ratio 4: speech-like audio at -20 dBFS RMS ducks the music by about 12 dB, at -14 by
#   17, at -26 by 8, at -30 by 5 (test_soundtrack's clip audio, measured);
# - attack 20 ms: the music gets out of the way of a first syllable without a click;
# - release 400 ms: the music stays down through the gaps between syllables (a 200 ms
#   release let it swing 11 dB at 4 syllables a second, 400 ms about 6.5), and is back
#   within 1 dB 0.3 s after speech at -20 dBFS ends (0.45 s after speech at -14);
# - linked channels by their maximum: speech on one side only ducks both sides.
DUCK_THRESHOLD = 0.03
DUCK_RATIO = 4
DUCK_ATTACK_MS = 20
DUCK_RELEASE_MS = 400


@dataclass(frozen=True)
class Music:
    """A soundtrack, mixed under the clips' audio in the audio track: the file, how it
    plays, its length (None: unknown)."""

    path: Path
    track: Soundtrack
    duration_s: float | None = None


def mix_inputs(music: Path, loop: bool) -> list[str]:
    """FFmpeg input options that open the music file: a local file in an audio container
    (`MUSIC_FORMATS`), its audio only (no cover art or video is decoded), and repeated
    forever when `loop` (`mix_filter` cuts it to the video's length)."""
    repeat = ["-stream_loop", "-1"] if loop else []
    return open_input(music, MUSIC_FORMATS, *repeat, "-vn", "-sn", "-dn")


def _label(name: str) -> str:
    """A filter graph pad: "1:a:0" and "[1:a:0]" both give "[1:a:0]"."""
    return f"[{name.strip('[]')}]"


def music_end_sample(
    total_samples: int, rate: int, track: Soundtrack, music_duration_s: float | None
) -> int:
    """Where the music stops, in samples from the start: at the video's end, or earlier
    when it is shorter than the video and does not loop (and its length is known)."""
    if track.loop or music_duration_s is None:
        return total_samples
    return max(0, min(total_samples, math.floor(music_duration_s * rate)))


def limiter(limit_db: float = TRUE_PEAK_CEILING_DB - LIMITER_HEADROOM_DB) -> str:
    """The limiter on the sum, as the clips' own (`loudness.level_filters`): sample peaks held
    LIMITER_HEADROOM_DB under the true-peak ceiling, since peaks between samples and after
    the AAC or Opus encode come out up to 0.8 dB higher; latency=1 so it adds no delay."""
    limit = 10 ** (limit_db / 20)
    return f"alimiter=limit={limit:.4f}:attack=5:release=50:level=0:latency=1"


def mix_filter(
    clips_label: str,
    music_label: str,
    total_samples: int,
    rate: int,
    track: Soundtrack,
    music_duration_s: float | None,
) -> str:
    """The filter graph that puts the music under the clips' audio; its output pad is `[a]`,
    float stereo at `rate`, exactly `total_samples` long.

    `clips_label` is the clips' audio (already `rate` stereo, `total_samples` long),
    `music_label` the music input (any rate and layout; endless when looped).
    `music_duration_s` is the music's length, which places the fade out when the music is
    shorter than the video and does not loop; None when unknown (the fade then ends at the
    video's end and music that stops earlier is cut where it stops). It should be the
    decoded length: an MP3's header length may include the encoder's padding (3.03 s for
    3.00 s of sound), which only means the fade ends a little above silence.

    1. The clips' audio is split: one copy is heard, the other keys the ducking.
    2. The music is resampled to `rate` stereo (mono music goes to both sides at -3 dB,
       FFmpeg's equal-power upmix; 5.1 is downmixed), its timestamps renumbered by sample (a
       looped input's restarts then cannot leave gaps), cut where the music stops, faded
       in from the start and out to where it stops (sample-exact `afade`), set to
       `track.volume`, then padded with silence to `total_samples`.
    3. `sidechaincompress` ducks it by the clips' audio (DUCK_* settings); with the clips
       silent its gain is exactly 1, so music-only stretches play at `track.volume`.
    4. Clips and music are summed at their own levels (`amix` normalize=0: no halving),
       and the limiter holds the sum's peaks under the ceiling.
    5. `apad` + `atrim` give exactly `total_samples` (the limiter or a short input cannot
       change the length).
    """
    if total_samples <= 0 or rate <= 0:
        raise ValueError(f"need total_samples > 0 and rate > 0, got {total_samples}, {rate}")
    music = _music_chain(total_samples, rate, track, music_duration_s)
    duck = (
        f"sidechaincompress=threshold={DUCK_THRESHOLD}:ratio={DUCK_RATIO}"
        f":attack={DUCK_ATTACK_MS}:release={DUCK_RELEASE_MS}:detection=rms:link=maximum"
    )
    mixdown = [
        "amix=inputs=2:normalize=0:duration=first:dropout_transition=0",
        limiter(),
        f"apad=whole_len={total_samples}",
        f"atrim=end_sample={total_samples}",
    ]
    return ";".join(
        [
            f"{_label(clips_label)}asplit=2[st_dry][st_key]",
            f"{_label(music_label)}{','.join(music)}[st_music]",
            f"[st_music][st_key]{duck}[st_ducked]",
            f"[st_dry][st_ducked]{','.join(mixdown)}[a]",
        ]
    )


def _music_chain(
    total_samples: int, rate: int, track: Soundtrack, music_duration_s: float | None
) -> list[str]:
    """Step 2 of `mix_filter`: the music resampled, cut where it stops, faded, set to its
    volume and padded to `total_samples`."""
    end = music_end_sample(total_samples, rate, track, music_duration_s)
    music = [
        f"aresample={rate}",
        f"aformat=sample_fmts=fltp:sample_rates={rate}:channel_layouts=stereo",
        "asetpts=N/SR/TB",
        f"atrim=end_sample={max(end, 1)}",
    ]
    fade_in = min(end, round(track.fade_in * rate))
    if fade_in > 0:
        music.append(f"afade=t=in:start_sample=0:nb_samples={fade_in}")
    fade_out = min(end, round(track.fade_out * rate))
    if fade_out > 0:
        music.append(f"afade=t=out:start_sample={end - fade_out}:nb_samples={fade_out}")
    volume = track.volume if end > 0 else 0.0  # music of no length: not even its first sample
    return [*music, f"volume={volume:.6f}", f"apad=whole_len={total_samples}"]


def soundtrack_argv(
    clips_wav: Path,
    music: Path,
    output: Path,
    total_samples: int,
    track: Soundtrack,
    music_duration_s: float | None = None,
    rate: int = 48000,
) -> list[str]:
    """Mix the clips' audio (a WAV of `total_samples` at `rate`) with the music file into a
    16-bit stereo WAV of the same length. The join does the same with the concatenated WAV
    segments as input 0 and the AAC or Opus encoder as output."""
    return [
        "ffmpeg", "-y", "-nostdin", "-hide_banner", "-loglevel", "error",
        *open_input(clips_wav, "wav"),
        *mix_inputs(music, track.loop),
        "-filter_complex", mix_filter("0:a:0", "1:a:0", total_samples, rate, track,
                                      music_duration_s),
        "-map", "[a]", "-c:a", "pcm_s16le", "-ar", str(rate), "-ac", "2",
        "-map_metadata", "-1", "-f", "wav", file_url(output),
    ]  # fmt: skip
