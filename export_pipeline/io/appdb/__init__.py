"""The app database: the `export_requests` table and its store."""

from export_pipeline.io.appdb.schema import create_schema, export_requests
from export_pipeline.io.appdb.store import RequestStore, engine_for

__all__ = [
    "RequestStore",
    "create_schema",
    "engine_for",
    "export_requests",
]
