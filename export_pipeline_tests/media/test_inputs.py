"""How commands open files: concat lists the demuxer's safe mode accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from export_pipeline.media.inputs import concat_list


def test_concat_list_uses_basenames():
    paths = [Path("/work/x/segment-0000.mp4"), Path("/work/x/segment-0001.mp4")]
    assert concat_list(paths) == (
        "ffconcat version 1.0\nfile 'segment-0000.mp4'\nfile 'segment-0001.mp4'\n"
    )


@pytest.mark.parametrize(
    "paths",
    [
        [],
        [Path("/a/one.mp4"), Path("/b/two.mp4")],
        [Path("/a/it's.mp4")],
        [Path("/a/new\nline.mp4")],
        [Path("/a/.hidden.mp4")],
        [Path("/a/with space.mp4")],
    ],
)
def test_concat_list_rejects_what_safe_mode_would(paths):
    with pytest.raises(ValueError):
        concat_list(paths)
