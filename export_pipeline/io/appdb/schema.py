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

# Who writes each column (its `info`): the request the app makes (what to export: copied
# as it is by a re-export), the app's and the operator's controls, the pipeline, or both.
PART = "part"
REQUEST, CONTROL, OPERATOR, PIPELINE, BOTH = "request", "control", "operator", "pipeline", "both"


def _column(part: str):
    def make(name: str, kind, *args, **kwargs) -> Column:
        return Column(name, kind, *args, info={PART: part}, **kwargs)

    return make


_request, _control, _operator, _pipeline, _both = map(
    _column, (REQUEST, CONTROL, OPERATOR, PIPELINE, BOTH)
)

export_requests = Table(
    "export_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _request("project_id", Text, nullable=False),
    _request("user_id", Text, nullable=False),
    _request("resolution", Text, nullable=False),
    _request("aspect_ratio", Text, nullable=False, server_default=text("'16:9'")),
    _request("quality", Text, nullable=False),
    # mp4 (H.264/AAC), mp4-hevc (H.265/AAC) or webm (VP9/Opus); NULL in rows an older app
    # wrote reads as mp4
    _request("format", Text, server_default=text(f"'{DEFAULT_FORMAT}'")),
    _request("clips", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    # Optional parts of the finished video (README, contract): loudness evened out between
    # clips (NULL: on), a soundtrack and captions (JSON objects, NULL: none)
    _request("audio_normalize", Boolean),
    _request("soundtrack", JSON().with_variant(JSONB(), "postgresql")),
    _request("captions", JSON().with_variant(JSONB(), "postgresql")),
    _control("cancel_requested_at", UTCDateTime()),
    # set by the operator CLI's `retry`: the sensor takes the row again
    _operator("requeued_at", UTCDateTime()),
    # days the finished video is kept (the user's plan, e.g. 7 or 30; NULL:
    # EXPORT_RETENTION_DAYS), validated like the rest of the request
    _request("retention_days", Integer),
    # where the creator is emailed the outcome and the expiry reminder (NULL: no email),
    # one address, validated like the rest of the request
    _request("notify_email", Text),
    _pipeline("status", Text, nullable=False, server_default=text("'pending'")),
    _pipeline("progress", Integer, nullable=False, server_default=text("0")),
    _pipeline("retry_count", Integer, nullable=False, server_default=text("0")),
    _pipeline("error_message", Text),
    # why it failed, as data (domain.failures.FailureCause), written with error_message
    _pipeline("error_cause", Text),
    _pipeline("video_url", Text),
    _pipeline("output_bytes", BigInteger),
    _pipeline("output_duration_s", Float),
    _pipeline("run_id", Text),
    _pipeline("poster_url", Text),
    # what the app's status card shows a waiting creator: time left (seconds, and when it
    # should be done; NULL when unknown) and, while queued, the place in the queue (1 = next)
    # and why it waits
    _pipeline("eta_s", Integer),
    _pipeline("estimated_finish_at", UTCDateTime()),
    _pipeline("queue_position", Integer),
    _pipeline("queue_reason", Text),
    # completion webhook bookkeeping: the last status the app was notified of
    _pipeline("notified_status", Text),
    _pipeline("notified_at", UTCDateTime()),
    # retention: when the video will be deleted (set on completion: completed_at +
    # retention days) and when the `expiring` reminder was claimed (once per completion)
    _pipeline("expires_at", UTCDateTime()),
    _pipeline("reminded_at", UTCDateTime()),
    # emails to `notify_email` (claimed before sending, once each): the finished status
    # whose email was sent and when, and when the expiry reminder was emailed (NULL again
    # after a re-export, like reminded_at)
    _pipeline("emailed_status", Text),
    _pipeline("emailed_at", UTCDateTime()),
    _pipeline("reminder_emailed_at", UTCDateTime()),
    _both("created_at", UTCDateTime(), nullable=False, server_default=func.now()),
    _both("updated_at", UTCDateTime(), nullable=False, server_default=func.now()),
    # when the latest run was queued (its creation in Dagster): the queue wait is measured
    # from here to processing_started_at, so retries and re-exports do not inflate it
    _pipeline("queued_at", UTCDateTime()),
    _pipeline("processing_started_at", UTCDateTime()),
    _pipeline("completed_at", UTCDateTime()),
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


def request_columns() -> tuple[str, ...]:
    """The columns that make the request, in table order."""
    return tuple(c.name for c in export_requests.columns if c.info.get(PART) == REQUEST)
