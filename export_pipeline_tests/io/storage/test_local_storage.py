"""LocalStorage-only behaviour: where files go, and atomic writes seen from the filesystem."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from pathlib import Path
from typing import BinaryIO

import pytest

from export_pipeline.io.storage import LocalStorage

MiB = 1024 * 1024


def partial_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.name.endswith(".partial")]


def test_keys_are_files_under_the_root(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")

    storage.put_bytes("work/exp-42/clips.json", b"{}")

    assert (tmp_path / "storage" / "work" / "exp-42" / "clips.json").read_bytes() == b"{}"
    assert storage.url("work/exp-42/clips.json") == (
        (tmp_path / "storage" / "work" / "exp-42" / "clips.json").as_uri()
    )
    assert storage.describe == f"local:{tmp_path / 'storage'}"


def test_a_relative_root_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    storage = LocalStorage(Path("relative-root"))

    assert storage.root == tmp_path / "relative-root"
    assert storage.root.is_dir()
    assert storage.url("a b").startswith("file:///")


def test_leftovers_of_interrupted_writes_are_not_objects(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("videos/exp-1.mp4", b"done")
    # What a writer killed mid-copy leaves behind.
    (tmp_path / "videos" / ".exp-2.mp4.0123456789abcdef.partial").write_bytes(b"half")

    assert list(storage.list_keys()) == ["videos/exp-1.mp4"]
    assert storage.total_bytes() == 4
    assert not storage.exists("videos/exp-2.mp4")


@pytest.mark.timeout(20)
def test_a_reader_never_sees_a_partial_object(tmp_path: Path) -> None:
    """Feed put_file from a pipe, and look at the key while the copy is half done."""
    storage = LocalStorage(tmp_path / "storage")
    storage.put_bytes("videos/exp-42.mp4", b"previous publication")
    first_half, second_half = os.urandom(2 * MiB), os.urandom(2 * MiB)
    fifo = tmp_path / "encoder-output"
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            storage.put_file(fifo, "videos/exp-42.mp4")
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    uploader = threading.Thread(target=upload)
    uploader.start()
    with open(fifo, "wb") as pipe:
        pipe.write(first_half)
        pipe.flush()
        # The write returned, so put_file has consumed all but one pipe buffer of it: it is
        # mid-copy, and the data so far sits in a temporary file, not at the key.
        in_progress = partial_files(storage.root)
        assert len(in_progress) == 1
        assert 0 < in_progress[0].stat().st_size < len(first_half) + len(second_half)
        assert storage.get_bytes("videos/exp-42.mp4") == b"previous publication"
        assert list(storage.list_keys()) == ["videos/exp-42.mp4"]
        pipe.write(second_half)
    uploader.join()

    assert errors == []
    assert storage.get_bytes("videos/exp-42.mp4") == first_half + second_half
    assert partial_files(storage.root) == []


def fail_halfway(source: BinaryIO, target: BinaryIO, length: int = 0) -> None:
    """Stands in for shutil.copyfileobj when the disk fills up mid-copy."""
    target.write(source.read(1024))
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_put_leaves_no_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStorage(tmp_path / "storage")
    source = tmp_path / "encoded.mp4"
    source.write_bytes(os.urandom(64 * 1024))
    monkeypatch.setattr(shutil, "copyfileobj", fail_halfway)

    with pytest.raises(OSError, match="No space left"):
        storage.put_file(source, "work/exp-42/encoded/abc.mp4")

    assert not storage.exists("work/exp-42/encoded/abc.mp4")
    assert list(storage.list_keys()) == []
    assert partial_files(storage.root) == []


def test_a_failed_put_or_copy_keeps_the_previous_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    storage.put_bytes("videos/exp-42.mp4", b"previous publication")
    storage.put_bytes("work/exp-42/encoded/abc.mp4", os.urandom(64 * 1024))
    source = tmp_path / "encoded.mp4"
    source.write_bytes(os.urandom(64 * 1024))
    monkeypatch.setattr(shutil, "copyfileobj", fail_halfway)

    def no_links(src, dst):  # a filesystem without hard links: copy falls back to bytes
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)

    with pytest.raises(OSError):
        storage.put_file(source, "videos/exp-42.mp4")
    with pytest.raises(OSError):
        storage.copy("work/exp-42/encoded/abc.mp4", "videos/exp-42.mp4")

    assert storage.get_bytes("videos/exp-42.mp4") == b"previous publication"
    assert partial_files(storage.root) == []


def test_a_failed_get_file_leaves_the_local_file_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    storage.put_bytes("clips/sha256/abc.mp4", os.urandom(64 * 1024))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "clip.mp4").write_bytes(b"what was there before")
    monkeypatch.setattr(shutil, "copyfileobj", fail_halfway)

    with pytest.raises(OSError):
        storage.get_file("clips/sha256/abc.mp4", downloads / "clip.mp4")

    assert (downloads / "clip.mp4").read_bytes() == b"what was there before"
    assert [path.name for path in downloads.iterdir()] == ["clip.mp4"]


def test_new_files_follow_the_umask(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    previous = os.umask(0o022)
    try:
        storage.put_bytes("a", b"x")
    finally:
        os.umask(previous)

    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o644


def test_move_and_copy_take_no_second_copy_on_one_filesystem(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    local = tmp_path / "clip.download"
    local.write_bytes(b"clip")
    inode = local.stat().st_ino

    storage.move_file(local, "clips/sha256/ab/abc")
    storage.copy("clips/sha256/ab/abc", "videos/exp-1.mp4")

    assert storage.path("clips/sha256/ab/abc").stat().st_ino == inode  # renamed, not copied
    assert storage.path("videos/exp-1.mp4").stat().st_ino == inode  # linked
    storage.copy("videos/exp-1.mp4", "videos/exp-1.mp4")  # onto itself: nothing changes
    assert storage.get_bytes("videos/exp-1.mp4") == b"clip"
    assert partial_files(storage.root) == []


@pytest.mark.skipif(
    not Path("/dev/shm").is_dir() or os.stat("/dev/shm").st_dev == os.stat("/tmp").st_dev,
    reason="needs /dev/shm on a filesystem of its own",
)
def test_move_file_across_filesystems_copies(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    local = Path("/dev/shm") / f"move-test-{os.getpid()}.download"
    local.write_bytes(b"x" * (3 * MiB + 5))
    try:
        storage.move_file(local, "clips/sha256/cd/cde")
    finally:
        moved = not local.exists()
        local.unlink(missing_ok=True)
    assert moved
    assert storage.get_bytes("clips/sha256/cd/cde") == b"x" * (3 * MiB + 5)
    assert partial_files(storage.root) == []
