"""Dagster resources: the app database, object storage, FFmpeg and clip downloads."""

from export_pipeline.resources.app_db import AppDatabase
from export_pipeline.resources.downloads import ClipDownloads
from export_pipeline.resources.media import MediaTools
from export_pipeline.storage.resource import StorageResource

__all__ = ["AppDatabase", "ClipDownloads", "MediaTools", "StorageResource"]
