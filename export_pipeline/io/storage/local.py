"""Storage on a local (or mounted) filesystem: one file per key under a root directory."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from export_pipeline.io.storage.base import (
    PARTIAL_SUFFIX,
    ObjectNotFound,
    Storage,
    validate_key,
    validate_prefix,
)

_COPY_BUFFER_BYTES = 1024 * 1024


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create `path` with what `write` writes, so that `path` is never seen half-written.

    The data goes to a temporary file in the same directory (so the rename cannot cross
    filesystems), is flushed to disk, then `os.replace`d over `path`. On any error the
    temporary file is removed and `path` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.{secrets.token_hex(8)}{PARTIAL_SUFFIX}")
    try:
        # "xb": fail rather than share a temporary file; mode follows the umask like any
        # ordinary new file.
        with open(tmp_path, "xb") as tmp:
            write(tmp)
            tmp.flush()
            # Without fsync a crash right after the rename can leave an empty file at `path`.
            os.fsync(tmp.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _open_object(path: Path, key: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise ObjectNotFound(key) from None


class LocalStorage(Storage):
    """Keys map to files under `root`; writes are temp file + `os.replace`.

    Directories left empty by `delete` are not removed: another writer may be about to
    create a file in them.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def describe(self) -> str:
        return f"local:{self.root}"

    def path(self, key: str) -> Path:
        """The file that holds `key` (it may not exist)."""
        return self.root / validate_key(key)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def local_file(self, key: str) -> Path | None:
        path = self.path(key)
        return path if path.is_file() else None

    def size(self, key: str) -> int | None:
        path = self.path(key)
        return path.stat().st_size if path.is_file() else None

    def put_file(self, local_path: Path, key: str, content_type: str | None = None) -> None:
        target = self.path(key)
        with open(local_path, "rb") as source:
            write_atomically(
                target, lambda tmp: shutil.copyfileobj(source, tmp, _COPY_BUFFER_BYTES)
            )

    def move_file(self, local_path: Path, key: str, content_type: str | None = None) -> None:
        # On the same filesystem the file itself becomes the object (flushed to disk first,
        # as write_atomically does); a 2 GB clip is not written a second time.
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(local_path, "rb") as moved:
                os.fsync(moved.fileno())
            os.replace(local_path, target)
        except OSError:  # another filesystem (EXDEV), or one that refuses: copy it
            super().move_file(local_path, key, content_type)

    def get_file(self, key: str, local_path: Path) -> None:
        with _open_object(self.path(key), key) as source:
            write_atomically(
                Path(local_path),
                lambda tmp: shutil.copyfileobj(source, tmp, _COPY_BUFFER_BYTES),
            )

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        write_atomically(self.path(key), lambda tmp: tmp.write(data))

    def get_bytes(self, key: str) -> bytes:
        with _open_object(self.path(key), key) as source:
            return source.read()

    def copy(self, src_key: str, dst_key: str) -> None:
        # A hard link where the filesystem allows one: objects are never written in place
        # (every write is a new file renamed over the key), so the two keys stay independent.
        target = self.path(dst_key)
        source_path = self.path(src_key)
        target.parent.mkdir(parents=True, exist_ok=True)
        link = target.with_name(f".{target.name}.{secrets.token_hex(8)}{PARTIAL_SUFFIX}")
        try:
            os.link(source_path, link)
            os.replace(link, target)
            return
        except FileNotFoundError:
            raise ObjectNotFound(src_key) from None
        except OSError:  # no hard links here (or across devices): copy the bytes
            pass
        finally:  # rename(2) leaves both names when they are one file already
            link.unlink(missing_ok=True)
        with _open_object(source_path, src_key) as source:
            write_atomically(
                target, lambda tmp: shutil.copyfileobj(source, tmp, _COPY_BUFFER_BYTES)
            )

    def delete(self, key: str) -> None:
        path = self.path(key)
        if path.is_file():
            path.unlink(missing_ok=True)

    def _walk(self, prefix: str) -> Iterator[tuple[str, str]]:
        """(key, path) of the files under the prefix, unsorted."""
        validate_prefix(prefix)
        # Walk only the directory the prefix points into; the rest of the prefix filters names.
        start = self.root / prefix.rpartition("/")[0]
        for directory, _subdirs, files in os.walk(start):
            relative_dir = Path(directory).relative_to(self.root).as_posix()
            for name in files:
                if name.endswith(PARTIAL_SUFFIX):
                    continue
                key = name if relative_dir == "." else f"{relative_dir}/{name}"
                if key.startswith(prefix):
                    yield key, os.path.join(directory, name)

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        # Sorted by code point, which is also S3's (UTF-8 byte) order.
        return iter(sorted(key for key, _path in self._walk(prefix)))

    def list_sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        found = []
        for key, path in self._walk(prefix):
            try:
                found.append((key, os.stat(path).st_size))
            except FileNotFoundError:  # deleted meanwhile
                continue
        return iter(sorted(found))

    def url(self, key: str) -> str:
        return self.path(key).as_uri()
