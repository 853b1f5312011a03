"""The storage interface every step uses to pass files to the next one.

Steps may run in different processes or containers, so anything one step hands to another
(archived clips, manifests, encoded outputs, published videos) goes through a `Storage`.
Keys are forward-slash relative paths such as `work/exp-42/clips.json`; the same key means
the same object on every backend, which is why `validate_key` is strict.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Local writes go to `.<name>.<random>.partial` before they are renamed into place; keys may
# not end with this suffix so an in-progress write can never be mistaken for an object.
PARTIAL_SUFFIX = ".partial"

MiB = 1024 * 1024

# SigV4 presigned URLs (S3) are valid for at most 7 days.
MAX_URL_EXPIRY_SECONDS = 7 * 24 * 3600

# S3's limit on key length, applied everywhere so keys behave the same on every backend.
MAX_KEY_BYTES = 1024


class ObjectNotFound(KeyError):
    """Raised when a key has no object; `key` names it."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        # KeyError's default str() is the repr of the key, which reads badly in logs.
        return f"no object at key {self.key!r}"


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a valid storage key, else raise ValueError.

    Rejected: empty keys, a leading `/`, backslashes, control characters, empty, `.` or `..`
    segments (a local filesystem would normalise them, S3 would not), keys ending in
    `.partial` (reserved for in-progress local writes) and keys over 1024 bytes.
    """
    if not isinstance(key, str):
        raise ValueError(f"storage key must be a string, got {type(key).__name__}")
    if not key:
        raise ValueError("storage key must not be empty")
    if key.startswith("/"):
        raise ValueError(f"storage key must be relative, without a leading '/': {key!r}")
    if "\\" in key:
        raise ValueError(f"storage key must use '/' as separator, not '\\': {key!r}")
    if any(ord(char) < 32 or ord(char) == 127 for char in key):
        raise ValueError(f"storage key must not contain control characters: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"storage key must not contain empty, '.' or '..' segments: {key!r}")
    if key.endswith(PARTIAL_SUFFIX):
        raise ValueError(
            f"storage key must not end with {PARTIAL_SUFFIX!r} (reserved for in-progress "
            f"writes): {key!r}"
        )
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"storage key is longer than {MAX_KEY_BYTES} bytes: {key[:80]!r}...")
    return key


def validate_prefix(prefix: str) -> str:
    """Return `prefix` unchanged if it is a valid listing prefix, else raise ValueError.

    A prefix is a plain string prefix of keys (`work/exp-4` matches `work/exp-42/...`); it
    may be empty or end with `/`, and otherwise follows the key rules.
    """
    stripped = prefix[:-1] if prefix.endswith("/") else prefix
    if prefix and not stripped:
        raise ValueError("storage prefix must not be '/'")
    if stripped:
        try:
            validate_key(stripped)
        except ValueError as error:
            raise ValueError(str(error).replace("storage key", "storage prefix", 1)) from None
    return prefix


class Storage(ABC):
    """Objects addressed by keys; implementations: `LocalStorage` and `S3Storage`.

    Writes are atomic: a reader sees either no object (or the previous one) or the complete
    new object at a key, never a partial one.
    """

    @property
    @abstractmethod
    def describe(self) -> str:
        """Where objects live, for logs: `local:/path` or `s3://bucket/prefix`."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int | None:
        """Size in bytes, or None if there is no object at `key`."""

    @abstractmethod
    def put_file(self, local_path: Path, key: str, content_type: str | None = None) -> None:
        """Store the file at `local_path` under `key`, replacing any object there."""

    def move_file(self, local_path: Path, key: str, content_type: str | None = None) -> None:
        """`put_file`, then `local_path` is gone: for a file the caller has finished with
        (a downloaded clip, a finished video), which a backend may take without copying."""
        self.put_file(local_path, key, content_type=content_type)
        Path(local_path).unlink(missing_ok=True)

    @abstractmethod
    def get_file(self, key: str, local_path: Path) -> None:
        """Stream the object at `key` to `local_path`; ObjectNotFound if missing.

        The object is written to a temporary file next to `local_path` and renamed into
        place, so `local_path` never holds a partial download.
        """

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Store a small object (a manifest) under `key`."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read a small object into memory; ObjectNotFound if missing."""

    @abstractmethod
    def copy(self, src_key: str, dst_key: str) -> None:
        """Copy an object (server-side where possible); ObjectNotFound if `src_key` is missing."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete the object at `key`; deleting a missing key is not an error."""

    @abstractmethod
    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with `prefix`, sorted, relative to the storage root."""

    @abstractmethod
    def url(self, key: str) -> str:
        """A URL for reading the object (file:// locally, presigned GET on S3).

        The object is not checked for existence.
        """

    def local_file(self, key: str) -> Path | None:
        """The file holding `key` on this machine, to be read in place (never written), where
        the backend keeps objects as files and the object exists; else None (fetch it)."""
        return None

    def list_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """(key, size in bytes) of the objects whose keys start with `prefix`, sorted by key.
        Backends override it to read both in one listing pass (a stat per file, S3's
        listing pages); this fallback asks for each size."""
        for key in self.list_keys(prefix):
            size = self.size(key)
            if size is not None:  # deleted meanwhile
                yield key, size

    def total_bytes(self, prefix: str = "") -> int:
        """Sum of the sizes of the objects whose keys start with `prefix`."""
        return sum(size for _key, size in self.list_sizes(prefix))

    def put_json(self, key: str, obj: Any) -> None:
        data = json.dumps(obj, indent=2, sort_keys=True).encode("utf-8")
        self.put_bytes(key, data, content_type="application/json")

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe}>"
