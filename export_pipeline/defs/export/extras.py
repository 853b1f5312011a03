"""The request's other downloads: its soundtrack and its captions file.

Both come from the app's CDN like the clips, so they go through the same download policy
(`clips.download`: scheme, private networks, redirects, sizes, timeouts) and the same
byte budget, and are kept for later runs of the partition: the soundtrack archived under
its content hash (`soundtracks/sha256/<hex>`), the captions text in the clip manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from export_pipeline.domain.captions import MAX_TEXT, parse_captions
from export_pipeline.domain.failures import ExportFailure, FailureCause, InvalidRequest
from export_pipeline.domain.layout import captions_index_key, soundtrack_index_key, soundtrack_key
from export_pipeline.domain.request import CaptionsSpec, SoundtrackSpec
from export_pipeline.io.http import ByteBudget, DownloadPolicy, download
from export_pipeline.io.storage import Storage
from export_pipeline.media.ffmpeg import FFmpeg
from export_pipeline.media.soundtrack import MUSIC_FORMATS


def music_duration(path: Path, ffmpeg: FFmpeg) -> float | None:
    """The length of the audio in a music file; an ExportFailure if it has no audio FFmpeg
    can read (or is not in one of the audio containers we open)."""
    done = ffmpeg.capture(
        ["ffprobe", "-hide_banner", "-loglevel", "error", "-protocol_whitelist", "file",
         "-format_whitelist", MUSIC_FORMATS, "-show_entries",
         "stream=codec_type:format=duration", "-of", "json", f"file:{path}"],
        timeout_s=60.0,
    )  # fmt: skip
    try:
        data = json.loads(done.stdout or b"{}") if done.returncode == 0 else {}
    except ValueError:
        data = {}
    if not any(s.get("codec_type") == "audio" for s in data.get("streams", [])):
        raise ExportFailure(
            "soundtrack: the file has no audio that can be read; use MP3, M4A (AAC), WAV, "
            "Ogg (Vorbis or Opus) or FLAC",
            cause=FailureCause.INVALID_CLIP_FILE,
            permanent=True,
        )
    try:
        return float(data["format"]["duration"])
    except (KeyError, TypeError, ValueError):
        return None


def fetch_soundtrack(
    spec: SoundtrackSpec,
    previous: dict[str, Any] | None,
    storage: Storage,
    policy: DownloadPolicy,
    client,
    budget: ByteBudget | None,
    scratch: Path,
    ffmpeg: FFmpeg,
) -> dict[str, Any]:
    """The soundtrack's manifest entry: reused when archived (by an earlier run of this
    export, or by any export that fetched the same URL), else downloaded, checked and
    archived."""
    for entry in (previous, _indexed(storage, soundtrack_index_key(spec.url))):
        if entry and entry.get("url") == spec.url and storage.exists(entry["key"]):
            return {**entry, "reused": True}
    path = scratch / "soundtrack.download"
    try:
        got = download(spec.url, path, policy, client, budget)
    except ExportFailure as exc:
        raise exc.within("soundtrack") from exc
    duration = music_duration(path, ffmpeg)
    key = soundtrack_key(got.sha256)
    if not storage.exists(key):
        storage.put_file(path, key, content_type="application/octet-stream")
    path.unlink(missing_ok=True)
    entry = {
        "url": spec.url, "key": key, "sha256": got.sha256, "bytes": got.size_bytes,
        "duration": duration,
    }  # fmt: skip
    storage.put_json(soundtrack_index_key(spec.url), entry)
    return {**entry, "reused": False}


def _indexed(storage: Storage, key: str) -> dict[str, Any] | None:
    return storage.get_json(key) if storage.exists(key) else None


def fetch_captions(
    spec: CaptionsSpec,
    previous: dict[str, Any] | None,
    storage: Storage,
    policy: DownloadPolicy,
    client,
    budget: ByteBudget | None,
    scratch: Path,
) -> dict[str, Any] | None:
    """The captions' manifest entry (their text) when they come from a URL; None when the
    request holds the text itself."""
    if spec.url is None:
        return None
    for entry in (previous, _indexed(storage, captions_index_key(spec.url))):
        if entry and entry.get("url") == spec.url and entry.get("text") is not None:
            return entry
    path = scratch / "captions.download"
    try:
        download(spec.url, path, policy, client, budget)
    except ExportFailure as exc:
        raise exc.within("captions") from exc
    data = path.read_bytes()
    path.unlink(missing_ok=True)
    if len(data) > 4 * MAX_TEXT:
        raise InvalidRequest(
            f"captions: the file is {len(data)} bytes; the limit is {4 * MAX_TEXT}"
        )
    try:
        text = data.decode("utf-8-sig")
        parse_captions(text, spec.kind)
    except UnicodeDecodeError:
        raise InvalidRequest("captions: the file is not UTF-8 text") from None
    entry = {"url": spec.url, "text": text}
    storage.put_json(captions_index_key(spec.url), entry)
    return entry
