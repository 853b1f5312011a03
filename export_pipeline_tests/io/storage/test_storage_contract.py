"""The behaviour every Storage must have, checked on both implementations.

The `storage` fixture is parametrized over LocalStorage (a temporary directory) and
S3Storage (a fresh bucket on a moto server reached over HTTP on 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import httpx
import pytest

from export_pipeline.io.storage import ObjectNotFound, S3Storage, Storage

MiB = 1024 * 1024

KEYS = [
    "videos/exp-42.mp4",
    "work/exp-42/clips.json",
    "work/exp-42/encoded/1080p.mp4",
    "work/exp-420/clips.json",
    "work/exp-4/clips.json",
    "clips/sha256/" + "ab" * 32 + ".mp4",
    "A.txt",
    "a-b",
    "a/b",
]

INVALID_KEYS = [
    "",
    "/videos/x.mp4",
    "../x",
    "work/../x",
    "work/..",
    "./x",
    "work//x",
    "work/",
    "work\\x",
    "work/x\x00",
    "work/x\n",
    "work/x\x7f",
    "work/x.mp4.partial",
    "k" * 1025,
]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 MiB of random data: three parts at the tests' 5 MiB multipart threshold."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    path.write_bytes(os.urandom(12 * MiB))
    return path


def test_bytes_round_trip(storage: Storage) -> None:
    storage.put_bytes("work/exp-42/clips.json", b'{"clips": []}')

    assert storage.exists("work/exp-42/clips.json")
    assert storage.size("work/exp-42/clips.json") == 13
    assert storage.get_bytes("work/exp-42/clips.json") == b'{"clips": []}'


def test_empty_object(storage: Storage) -> None:
    storage.put_bytes("empty", b"")

    assert storage.exists("empty")
    assert storage.size("empty") == 0
    assert storage.get_bytes("empty") == b""


def test_json_round_trip(storage: Storage) -> None:
    manifest = {"export_id": "exp-42", "clips": [{"scene": 1, "trim": 0.5}], "title": "été"}

    storage.put_json("work/exp-42/clips.json", manifest)

    assert storage.get_json("work/exp-42/clips.json") == manifest


def test_file_round_trip(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "source.mp4"
    source.write_bytes(b"\x00\x01 not really a video" * 1000)

    storage.put_file(source, "videos/exp-42.mp4", content_type="video/mp4")
    target = tmp_path / "downloads" / "nested" / "exp-42.mp4"  # parents are created
    storage.get_file("videos/exp-42.mp4", target)

    assert target.read_bytes() == source.read_bytes()
    assert storage.size("videos/exp-42.mp4") == source.stat().st_size
    assert sorted(p.name for p in target.parent.iterdir()) == ["exp-42.mp4"]


def test_get_file_replaces_an_existing_local_file(storage: Storage, tmp_path: Path) -> None:
    storage.put_bytes("clip.mp4", b"new")
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"old and longer")

    storage.get_file("clip.mp4", target)

    assert target.read_bytes() == b"new"


def test_unusual_but_valid_keys_round_trip(storage: Storage) -> None:
    key = "videos/été 2024 #1 (final).mp4"
    storage.put_bytes(key, b"data")

    assert storage.get_bytes(key) == b"data"
    assert list(storage.list_keys("videos/")) == [key]


def test_missing_key(storage: Storage, tmp_path: Path) -> None:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    target = downloads / "out.mp4"

    assert not storage.exists("videos/missing.mp4")
    assert storage.size("videos/missing.mp4") is None
    with pytest.raises(ObjectNotFound, match="videos/missing.mp4"):
        storage.get_bytes("videos/missing.mp4")
    with pytest.raises(ObjectNotFound, match="videos/missing.mp4"):
        storage.get_file("videos/missing.mp4", target)
    with pytest.raises(ObjectNotFound, match="videos/missing.mp4"):
        storage.copy("videos/missing.mp4", "videos/copy.mp4")
    with pytest.raises(ObjectNotFound):
        storage.get_json("work/missing.json")

    assert list(downloads.iterdir()) == []
    assert not storage.exists("videos/copy.mp4")


def test_object_not_found_is_a_key_error_that_names_the_key(storage: Storage) -> None:
    with pytest.raises(KeyError) as caught:
        storage.get_bytes("work/exp-1/clips.json")

    assert isinstance(caught.value, ObjectNotFound)
    assert caught.value.key == "work/exp-1/clips.json"
    assert str(caught.value) == "no object at key 'work/exp-1/clips.json'"


def test_a_directory_like_prefix_is_not_an_object(storage: Storage) -> None:
    storage.put_bytes("work/exp-42/clips.json", b"{}")

    assert not storage.exists("work/exp-42")
    assert storage.size("work/exp-42") is None
    with pytest.raises(ObjectNotFound):
        storage.get_bytes("work/exp-42")


def test_put_replaces_an_existing_object(storage: Storage, tmp_path: Path) -> None:
    storage.put_bytes("videos/exp-42.mp4", b"first version, longer")
    source = tmp_path / "second.mp4"
    source.write_bytes(b"second")

    storage.put_file(source, "videos/exp-42.mp4")
    assert storage.get_bytes("videos/exp-42.mp4") == b"second"

    storage.put_bytes("videos/exp-42.mp4", b"third")
    assert storage.get_bytes("videos/exp-42.mp4") == b"third"
    assert list(storage.list_keys()) == ["videos/exp-42.mp4"]


def test_delete_is_idempotent(storage: Storage) -> None:
    storage.put_bytes("work/exp-42/clips.json", b"{}")
    storage.put_bytes("work/exp-42/other.json", b"{}")

    storage.delete("work/exp-42/clips.json")
    storage.delete("work/exp-42/clips.json")
    storage.delete("never/existed")

    assert not storage.exists("work/exp-42/clips.json")
    assert list(storage.list_keys()) == ["work/exp-42/other.json"]


def test_copy(storage: Storage) -> None:
    storage.put_bytes("work/exp-42/encoded/abc.mp4", b"encoded bytes")
    storage.put_bytes("videos/exp-42.mp4", b"an older publication")

    storage.copy("work/exp-42/encoded/abc.mp4", "videos/exp-42.mp4")

    assert storage.get_bytes("videos/exp-42.mp4") == b"encoded bytes"
    assert storage.get_bytes("work/exp-42/encoded/abc.mp4") == b"encoded bytes"


def test_list_keys_is_sorted_and_relative(storage: Storage) -> None:
    for index, key in enumerate(KEYS):
        storage.put_bytes(key, b"x" * index)

    # Code point order: "a-b" sorts before "a/b", which a directory walk alone would not give.
    assert list(storage.list_keys()) == sorted(KEYS)
    assert list(storage.list_keys("a")) == ["a-b", "a/b"]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("work/exp-42/", ["work/exp-42/clips.json", "work/exp-42/encoded/1080p.mp4"]),
        (
            "work/exp-42",
            ["work/exp-42/clips.json", "work/exp-42/encoded/1080p.mp4", "work/exp-420/clips.json"],
        ),
        ("work/exp-42/encoded/1080p.mp4", ["work/exp-42/encoded/1080p.mp4"]),
        ("videos", ["videos/exp-42.mp4"]),
        ("clips/sha256/ab", ["clips/sha256/" + "ab" * 32 + ".mp4"]),
        ("nothing/here/", []),
        ("videos/exp-42.mp4/", []),
    ],
)
def test_list_keys_with_prefix(storage: Storage, prefix: str, expected: list[str]) -> None:
    for key in KEYS:
        storage.put_bytes(key, b"x")

    assert list(storage.list_keys(prefix)) == expected


def test_list_keys_of_an_empty_storage(storage: Storage) -> None:
    assert list(storage.list_keys()) == []
    assert storage.total_bytes() == 0


def test_total_bytes(storage: Storage) -> None:
    storage.put_bytes("work/exp-42/a", b"x" * 10)
    storage.put_bytes("work/exp-42/b/c", b"x" * 20)
    storage.put_bytes("work/exp-43/a", b"x" * 40)

    assert storage.total_bytes() == 70
    assert storage.total_bytes("work/exp-42/") == 30
    assert storage.total_bytes("work/exp-4") == 70
    assert storage.total_bytes("videos/") == 0


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_rejected(storage: Storage, key: str, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"data")
    storage.put_bytes("valid", b"data")

    calls = [
        lambda: storage.exists(key),
        lambda: storage.size(key),
        lambda: storage.put_file(source, key),
        lambda: storage.get_file(key, tmp_path / "out"),
        lambda: storage.put_bytes(key, b"data"),
        lambda: storage.get_bytes(key),
        lambda: storage.copy("valid", key),
        lambda: storage.copy(key, "valid2"),
        lambda: storage.delete(key),
        lambda: storage.url(key),
        lambda: storage.put_json(key, {}),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="storage key"):
            call()

    assert list(storage.list_keys()) == ["valid"]


@pytest.mark.parametrize("prefix", ["/", "/work", "../", "work/../", "work\\", "work//"])
def test_invalid_prefixes_are_rejected(storage: Storage, prefix: str) -> None:
    with pytest.raises(ValueError, match="storage prefix"):
        list(storage.list_keys(prefix))
    with pytest.raises(ValueError, match="storage prefix"):
        storage.total_bytes(prefix)


def test_url_reads_back_the_object(storage: Storage) -> None:
    key = "videos/exp 42 été.mp4"
    storage.put_bytes(key, b"published video bytes")

    url = storage.url(key)

    if isinstance(storage, S3Storage):
        response = httpx.get(url)
        assert response.status_code == 200
        assert response.content == b"published video bytes"
        assert response.headers["content-type"] == "video/mp4"
    else:
        parsed = urlparse(url)
        assert parsed.scheme == "file"
        path = Path(url2pathname(parsed.path))
        assert path.is_absolute()
        assert path.read_bytes() == b"published video bytes"


def test_local_file_is_the_object_itself_or_none(storage: Storage) -> None:
    key = "clips/sha256/" + "cd" * 32 + ".mp4"
    assert storage.local_file(key) is None  # no object: nothing to read
    storage.put_bytes(key, b"archived clip")
    local = storage.local_file(key)
    if isinstance(storage, S3Storage):
        assert local is None  # no file here: fetch it
    else:
        assert local is not None and local.read_bytes() == b"archived clip"
        storage.put_bytes(key, b"replaced")  # replaced atomically, in place
        assert local.read_bytes() == b"replaced"


def test_describe(storage: Storage) -> None:
    if isinstance(storage, S3Storage):
        assert storage.describe == f"s3://{storage.bucket}/exports/"
    else:
        assert storage.describe.startswith("local:/")
    assert storage.describe in repr(storage)


def test_big_file_round_trip(storage: Storage, big_file: Path, tmp_path: Path) -> None:
    storage.put_file(big_file, "work/exp-42/encoded/1080p.mp4")
    target = tmp_path / "download.mp4"
    storage.get_file("work/exp-42/encoded/1080p.mp4", target)

    assert storage.size("work/exp-42/encoded/1080p.mp4") == big_file.stat().st_size
    assert sha256(target) == sha256(big_file)
    assert storage.total_bytes("work/") == big_file.stat().st_size


def test_big_copy(storage: Storage, big_file: Path, tmp_path: Path) -> None:
    storage.put_file(big_file, "work/exp-42/encoded/1080p.mp4")

    storage.copy("work/exp-42/encoded/1080p.mp4", "videos/exp-42.mp4")
    storage.get_file("videos/exp-42.mp4", tmp_path / "published.mp4")

    assert sha256(tmp_path / "published.mp4") == sha256(big_file)


def test_get_file_streams_to_disk(storage: Storage, tmp_path: Path) -> None:
    size = 16 * MiB
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(size))
    storage.put_file(source, "work/big.bin")
    if isinstance(storage, S3Storage):
        # boto3 queues up to max_io_queue x 256 KiB (25 MiB by default) between the network
        # and the disk; shrink the queue so that bound sits visibly below the object size.
        storage.transfer_config.max_io_queue = 4

    tracemalloc.start()
    try:
        storage.get_file("work/big.bin", tmp_path / "copy.bin")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < size / 4, f"get_file held {peak / MiB:.1f} MiB for a {size // MiB} MiB object"
    assert sha256(tmp_path / "copy.bin") == sha256(source)


def test_move_file_stores_it_and_takes_it(storage: Storage, tmp_path: Path) -> None:
    local = tmp_path / "clip.download"
    local.write_bytes(b"downloaded bytes")
    storage.put_bytes("clips/sha256/ab/abc", b"an older object")

    storage.move_file(local, "clips/sha256/ab/abc", content_type="video/mp4")

    assert storage.get_bytes("clips/sha256/ab/abc") == b"downloaded bytes"
    assert not local.exists()
    assert list(storage.list_keys("clips/")) == ["clips/sha256/ab/abc"]


def test_copies_stay_independent(storage: Storage) -> None:
    """A copy is not changed by replacing or deleting its source (LocalStorage links the
    file)."""
    storage.put_bytes("work/exp-1/encoded.mp4", b"first")
    storage.copy("work/exp-1/encoded.mp4", "videos/exp-1.mp4")
    storage.put_bytes("work/exp-1/encoded.mp4", b"second")
    assert storage.get_bytes("videos/exp-1.mp4") == b"first"
    storage.delete("work/exp-1/encoded.mp4")
    assert storage.get_bytes("videos/exp-1.mp4") == b"first"
    with pytest.raises(ObjectNotFound):
        storage.copy("videos/missing.mp4", "videos/exp-2.mp4")
