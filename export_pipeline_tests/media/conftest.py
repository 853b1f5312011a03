"""Fixtures shared by the media tests."""

from __future__ import annotations

import subprocess

import pytest

from export_pipeline.media import runner


@pytest.fixture
def spawned(monkeypatch) -> list[subprocess.Popen]:
    """Every process run_ffmpeg (and capture) starts, so a test can check it is gone."""
    processes: list[subprocess.Popen] = []

    class RecordingPopen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            processes.append(self)

    monkeypatch.setattr(runner.subprocess, "Popen", RecordingPopen)
    return processes
