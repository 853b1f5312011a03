"""Tests of export_pipeline; the folders mirror the package."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
