"""Write the committed seed corpus (`corpus/<target>/`): a starting point from which the fuzzer
reaches deep code at once instead of first having to guess valid JSON.

    python -m export_pipeline_tests.fuzz.seeds   # rewrites corpus/request and corpus/probe_json

Seeds follow each target's input layout (see its docstring): the payload up front, the
choice bytes at the end, all zero (mode 0: raw text; every other column a valid value).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from export_pipeline.media.probe import probe_argv
from export_pipeline.media.runner import run_ffmpeg
from export_pipeline.media.samples import make_sample_clip

CORPUS = Path(__file__).parent / "corpus"
# mode + id, project_id, user_id, resolution, aspect_ratio, quality, max_duration_s
REQUEST_CHOICE_BYTES = 8

REQUEST_CLIPS = {
    "one-clip": '[{"url": "https://cdn.example.com/a.mp4", "scene_number": 1, "trim_start": 0.5,'
    ' "duration": 2}]',
    "two-clips": '[{"url": "https://cdn.example.com/b.mp4", "scene_number": 2, "duration": null,'
    ' "scene_id": "s-2"}, {"url": "http://cdn.example.com:8080/a.mp4?sig=x#t", "scene_number": 1}]',
    "edges": '[{"url": "http://[::1]:99999/x.mp4", "trim_start": -0.0, "duration": 1e308,'
    ' "scene_number": 1000000001}, {"url": "HTTPS://xn--n3h.com/a.mp4", "duration": NaN}]',
    "nested": '[[{"url": {"url": "https://a.example/x.mp4"}}], {}, null, "x", 1, true]',
    "empty": "[]",
}


def request_seed(clips_text: str) -> bytes:
    """An input for `fuzz_request` whose `clips` column is `clips_text`, all else valid."""
    return clips_text.encode() + bytes(REQUEST_CHOICE_BYTES)


def _probe_json(path: Path) -> bytes:
    """ffprobe's description of `path`, as `probe` asks for it, in compact JSON."""
    result = subprocess.run(probe_argv(path), capture_output=True, check=True, timeout=60)
    description = json.loads(result.stdout)
    description.get("format", {}).pop("filename", None)  # a temporary path: not worth keeping
    return json.dumps(description, separators=(",", ":")).encode()


def write_probe_seeds(directory: Path) -> None:
    """ffprobe JSON of three small clips (MP4 with audio, MP4 rotated by 90 degrees and
    silent, Matroska), each followed by the mode byte 0 of `fuzz_probe_json`."""
    with tempfile.TemporaryDirectory() as scratch:
        base = make_sample_clip(Path(scratch) / "a.mp4", width=160, height=120, duration=0.5)
        silent = make_sample_clip(
            Path(scratch) / "s.mp4", width=120, height=160, duration=0.5, audio=False
        )
        rotated, mkv = Path(scratch) / "r.mp4", Path(scratch) / "m.mkv"
        copy = ["ffmpeg", "-y", "-nostdin", "-v", "error", "-i"]
        rotate = ["-metadata:s:v:0", "rotate=90"]  # written as a display matrix
        run_ffmpeg(
            [*copy, f"file:{silent}", "-c", "copy", *rotate, f"file:{rotated}"], timeout_s=60
        )
        run_ffmpeg([*copy, f"file:{base}", "-c", "copy", f"file:{mkv}"], timeout_s=60)
        for name, clip in (("mp4-audio", base), ("mp4-rotated", rotated), ("matroska", mkv)):
            (directory / name).write_bytes(_probe_json(clip) + b"\x00")


def main() -> None:
    for target in ("request", "probe_json"):
        (CORPUS / target).mkdir(parents=True, exist_ok=True)
    for name, text in REQUEST_CLIPS.items():
        (CORPUS / "request" / name).write_bytes(request_seed(text))
    write_probe_seeds(CORPUS / "probe_json")


if __name__ == "__main__":
    main()
