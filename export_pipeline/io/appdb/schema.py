"""The `export_requests` table: the contract between the app and the pipeline.

SQLAlchemy Core, so the same definition serves SQLite (embedded default) and PostgreSQL
(where `clips` is `jsonb`). README's "Contract" section documents every column.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    inspect,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.types import TypeDecorator

from export_pipeline.domain.clock import as_utc
from export_pipeline.domain.formats import DEFAULT_FORMAT


class UTCDateTime(TypeDecorator):
    """A timestamp that is aware and in UTC both ways, on every database: SQLite keeps the
    wall-clock digits it is given and returns them naive, so moments are converted to UTC
    before they are written and read back as UTC (PostgreSQL's timestamptz keeps the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else as_utc(value)

    def process_result_value(self, value, dialect):
        return None if value is None else as_utc(value)


metadata = MetaData()

export_requests = Table(
    "export_requests",
    metadata,
    # written by the app
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("resolution", Text, nullable=False),
    Column("aspect_ratio", Text, nullable=False, server_default=text("'16:9'")),
    Column("quality", Text, nullable=False),
    # mp4 (H.264/AAC), mp4-hevc (H.265/AAC) or webm (VP9/Opus); NULL in rows an older app
    # wrote reads as mp4
    Column("format", Text, server_default=text(f"'{DEFAULT_FORMAT}'")),
    Column("clips", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    # Optional parts of the finished video (README, contract): loudness evened out between
    # clips (NULL: on), a soundtrack and captions (JSON objects, NULL: none)
    Column("audio_normalize", Boolean),
    Column("soundtrack", JSON().with_variant(JSONB(), "postgresql")),
    Column("captions", JSON().with_variant(JSONB(), "postgresql")),
    Column("cancel_requested_at", UTCDateTime()),
    # set by the operator CLI's `retry`: the sensor takes the row again
    Column("requeued_at", UTCDateTime()),
    # days the finished video is kept (the user's plan, e.g. 7 or 30; NULL:
    # EXPORT_RETENTION_DAYS), validated like the rest of the request
    Column("retention_days", Integer),
    # written by the pipeline
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("progress", Integer, nullable=False, server_default=text("0")),
    Column("retry_count", Integer, nullable=False, server_default=text("0")),
    Column("error_message", Text),
    # why it failed, as data (domain.failures.FailureCause), written with error_message
    Column("error_cause", Text),
    Column("video_url", Text),
    Column("output_bytes", BigInteger),
    Column("output_duration_s", Float),
    Column("run_id", Text),
    Column("poster_url", Text),
    # what the app's status card shows a waiting creator: time left (seconds, and when it
    # should be done; NULL when unknown) and, while queued, the place in the queue (1 = next)
    # and why it waits
    Column("eta_s", Integer),
    Column("estimated_finish_at", UTCDateTime()),
    Column("queue_position", Integer),
    Column("queue_reason", Text),
    # completion webhook bookkeeping: the last status the app was notified of
    Column("notified_status", Text),
    Column("notified_at", UTCDateTime()),
    # retention: when the video will be deleted (set on completion: completed_at +
    # retention days) and when the `expiring` reminder was claimed (once per completion)
    Column("expires_at", UTCDateTime()),
    Column("reminded_at", UTCDateTime()),
    # both
    Column("created_at", UTCDateTime(), nullable=False, server_default=func.now()),
    Column("updated_at", UTCDateTime(), nullable=False, server_default=func.now()),
    # when the latest run was queued (its creation in Dagster): the queue wait is measured
    # from here to processing_started_at, so retries and re-exports do not inflate it
    Column("queued_at", UTCDateTime()),
    Column("processing_started_at", UTCDateTime()),
    Column("completed_at", UTCDateTime()),
    # What the sensor (status, id) and the app (user, project) query.
    Index("ix_export_requests_status_id", "status", "id"),
    Index("ix_export_requests_user_created", "user_id", "created_at"),
    Index("ix_export_requests_project", "project_id"),
)


# The pipeline's own bookkeeping, not part of the app's contract: how far each segment of
# an export being encoded has got, so steps on different workers (the fan-out of
# `encoded_video`) add up to one progress on the request row. Rows of an export are
# replaced when its encode is planned again and deleted when the encode ends.
export_segments = Table(
    "export_segments",
    metadata,
    Column("request_id", Integer, primary_key=True, autoincrement=False),
    Column("segment", Integer, primary_key=True, autoincrement=False),
    Column("seconds", Float, nullable=False),
    Column("done", Float, nullable=False, server_default=text("0")),
)


def create_schema(engine: Engine) -> None:
    """Create the table and its indexes if they are missing (idempotent), and add columns
    that newer versions of the pipeline introduced to a table an older version created."""
    metadata.create_all(engine, checkfirst=True)
    existing = {c["name"] for c in inspect(engine).get_columns(export_requests.name)}
    missing = [c for c in export_requests.columns if c.name not in existing]
    with engine.begin() as conn:
        for column in missing:
            kind = column.type.compile(dialect=engine.dialect)
            conn.execute(
                text(f'ALTER TABLE {export_requests.name} ADD COLUMN "{column.name}" {kind}')
            )
