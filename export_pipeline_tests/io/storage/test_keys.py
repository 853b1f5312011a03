from __future__ import annotations

import pytest

from export_pipeline.io.storage import validate_key, validate_prefix


@pytest.mark.parametrize(
    "key",
    [
        "videos/exp-42.mp4",
        "work/exp-42/encoded/1080p_crf23.mp4",
        "clips/sha256/" + "0f" * 32 + ".mp4",
        "a",
        ".hidden",
        "a..b/c...d",
        "videos/été 2024 #1.mp4",
        "work/x.partial/y",
        "k" * 1024,
    ],
)
def test_valid_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "must not be empty"),
        ("/videos/x.mp4", "without a leading '/'"),
        ("videos\\x.mp4", "'/' as separator"),
        ("videos/x\tx.mp4", "control characters"),
        ("videos/x\x00", "control characters"),
        ("../secret", "'..' segments"),
        ("videos/../../secret", "'..' segments"),
        ("videos/./x.mp4", "'..' segments"),
        ("videos//x.mp4", "empty"),
        ("videos/", "empty"),
        ("videos/x.mp4.partial", "reserved for in-progress writes"),
        ("é" * 513, "longer than 1024 bytes"),
    ],
)
def test_invalid_keys(key: str, reason: str) -> None:
    with pytest.raises(ValueError, match="storage key") as caught:
        validate_key(key)

    assert reason in str(caught.value)


def test_non_string_keys() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        validate_key(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["", "work/", "work/exp-4", "clips/sha256/ab"])
def test_valid_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "/work", "../", "work//", "work/../x"])
def test_invalid_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError, match="storage prefix"):
        validate_prefix(prefix)
