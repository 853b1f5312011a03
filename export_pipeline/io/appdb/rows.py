"""How the code reads `export_requests` rows, and what the store's parts share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Text, cast
from sqlalchemy.engine import Engine
from sqlalchemy.sql import Executable

from export_pipeline.io.appdb.schema import export_requests

T = export_requests

# The app's JSON and flag columns are read as text: domain.request parses them, so a row
# holding invalid JSON (or 'yes' in a boolean column of SQLite) is refused with a message
# instead of failing whoever reads it.
_TEXT_COLUMNS = ("clips", "soundtrack", "captions", "audio_normalize")
COLUMNS = [c for c in T.c if c.name not in _TEXT_COLUMNS] + [
    cast(T.c[name], Text).label(name) for name in _TEXT_COLUMNS
]


def as_row(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return dict(mapping)


class Table:
    """`export_requests` over one engine: what the store's parts (`store.RequestStore`,
    `notices.Notices`, `reports.Reports`) have in common."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def _all(self, query: Executable) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [as_row(r) for r in conn.execute(query).mappings()]
