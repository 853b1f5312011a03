"""What a command works with: the settings and the app database they name."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from export_pipeline.defs.settings import Settings
from export_pipeline.io.appdb.store import RequestStore


@dataclass
class Session:
    settings: Settings

    @cached_property
    def store(self) -> RequestStore:
        """The app database, its table created if missing (idempotent; spares a first
        `status` a confusing "no such table")."""
        if self.settings.app_db.url.startswith("sqlite:///"):
            self.settings.home.mkdir(parents=True, exist_ok=True)
        store = self.settings.app_db.store()
        store.create_schema()
        return store
