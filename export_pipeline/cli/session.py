"""What a command works with: the settings and the app database they name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

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

    def instance(self):
        """The Dagster instance: DAGSTER_HOME's, else the embedded one `dagster dev` at the
        repository root uses too (./dagster.yaml), else one under EXPORT_PIPELINE_HOME."""
        from dagster import DagsterInstance

        if os.environ.get("DAGSTER_HOME"):
            return DagsterInstance.get()
        if (Path.cwd() / "dagster.yaml").exists():
            return DagsterInstance.from_config(str(Path.cwd()))
        home = self.settings.home / "dagster"
        home.mkdir(parents=True, exist_ok=True)
        return DagsterInstance.from_config(str(home))
