"""Every key the pipeline names things by, and how to read one back: the partition of a
request (`exp-<id>`) and the objects in storage.

- `videos/exp-<id>.<ext>`, `videos/exp-<id>.jpg`: the published video and its poster;
- `work/exp-<id>/...`: the clip manifest, the encode plan and record, the audio track;
- `clips/sha256/<hex>.mp4`: archived clips, by content (kept while an export uses them);
- `clips/by-url/<sha256 of the URL>.json`: which archived clip a URL gave;
- `soundtracks/sha256/<hex>`: archived soundtracks, by content;
- `segments/<clip sha256>/...`: rendered segments (named by `media`), gone with their clip.

Keys are stable: a deployment's stored objects stay where these functions say they are.
"""

from __future__ import annotations

import hashlib
import re

PARTITION_PREFIX = "exp-"
_PARTITION = re.compile(r"^exp-(\d+)$")
_VIDEO = re.compile(r"^videos/exp-(\d+)\.([A-Za-z0-9]+)$")
_WORK = re.compile(r"^work/exp-(\d+)/")
_ARCHIVED = re.compile(r"^clips/sha256/([0-9a-f]{64})\.mp4$")
POSTER_EXTENSION = "jpg"
# Shared objects, by the prefix of their keys: (prefix, kind).
_SHARED = (
    ("clips/sha256/", "clips"),
    ("clips/by-url/", "clip_index"),
    ("soundtracks/", "soundtracks"),
    ("segments/", "segments"),
)
KINDS: tuple[str, ...] = ("videos", "posters", "clips", "clip_index", "soundtracks", "segments",
                          "work", "other")  # fmt: skip


# ---- the partition of a request


def partition_key(request_id: int) -> str:
    return f"{PARTITION_PREFIX}{int(request_id)}"


def request_id_from_key(key: str) -> int:
    match = _PARTITION.match(key or "")
    if not match:
        raise ValueError(f"partition key {key!r} is not of the form exp-<request id>")
    return int(match.group(1))


# ---- a request's own objects


def video_key(partition: str, extension: str) -> str:
    return f"videos/{partition}.{extension}"


def poster_key(partition: str) -> str:
    return f"videos/{partition}.{POSTER_EXTENSION}"


def videos_prefix(partition: str) -> str:
    """The published video and the poster."""
    return f"videos/{partition}."


def work_prefix(partition: str) -> str:
    return f"work/{partition}/"


def manifest_key(partition: str) -> str:
    """The clips of the request as downloaded_clips archived them."""
    return f"{work_prefix(partition)}clips.json"


def plan_key(partition: str) -> str:
    return f"{work_prefix(partition)}plan.json"


def encoded_key(partition: str, extension: str) -> str:
    """The encoded video until it is published."""
    return f"{work_prefix(partition)}encoded.{extension}"


def encoded_record_key(partition: str) -> str:
    return f"{work_prefix(partition)}encoded.json"


def audio_track_key(partition: str, run_id: str, extension: str) -> str:
    return f"{work_prefix(partition)}audio-{run_id}.{extension}"


def manifest_partition(key: str) -> str | None:
    """The partition whose clip manifest `key` is, or None."""
    part, _, name = key.removeprefix("work/").partition("/")
    return part if key.startswith("work/") and name == "clips.json" else None


# ---- shared objects, by content


def archive_key(sha256: str) -> str:
    return f"clips/sha256/{sha256}.mp4"


def archived_sha256(key: str) -> str | None:
    """The content hash of an archived clip's key, or None for any other key."""
    match = _ARCHIVED.match(key)
    return match.group(1) if match else None


def url_index_key(url: str) -> str:
    return f"clips/by-url/{hashlib.sha256(url.encode()).hexdigest()}.json"


def soundtrack_key(sha256: str) -> str:
    return f"soundtracks/sha256/{sha256}"


def soundtrack_index_key(url: str) -> str:
    """Which archived soundtrack a URL gave (a re-export finds it after the URL died)."""
    return f"soundtracks/by-url/{hashlib.sha256(url.encode()).hexdigest()}.json"


def captions_index_key(url: str) -> str:
    """The captions text a URL gave (a re-export finds it after the URL died)."""
    return f"captions/by-url/{hashlib.sha256(url.encode()).hexdigest()}.json"


def segment_cache_key(name: str) -> str:
    """A rendered segment (`name` from media: the clip's hash, its span, its settings)."""
    return f"segments/{name}"


def segments_prefix(clip_sha256: str) -> str:
    """Every segment rendered from one clip."""
    return f"segments/{clip_sha256}/"


def classify_key(key: str) -> tuple[str, int | None]:
    """The kind of the object at `key` (one of KINDS) and the request it belongs to (None:
    shared by content, or not ours)."""
    video = _VIDEO.match(key)
    if video:
        kind = "posters" if video.group(2) == POSTER_EXTENSION else "videos"
        return kind, int(video.group(1))
    work = _WORK.match(key)
    if work:
        return "work", int(work.group(1))
    for prefix, kind in _SHARED:
        if key.startswith(prefix):
            return kind, None
    return "other", None
