from __future__ import annotations

from dagster import ConfigurableResource

from export_pipeline.appdb.store import RequestStore


class AppDatabase(ConfigurableResource):
    """The app's database holding `export_requests` (SQLite file or PostgreSQL URL).

    A PostgreSQL password belongs in PGPASSWORD (read by libpq), not in the URL.
    """

    url: str
    heartbeat_s: float = 15.0  # how often a running step touches its row's updated_at

    def store(self) -> RequestStore:
        return RequestStore.from_url(self.url)
