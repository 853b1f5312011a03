"""The `export-pipeline` command (also `python -m export_pipeline`)."""

from export_pipeline.cli.main import main

__all__ = ["main"]
