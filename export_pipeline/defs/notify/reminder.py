"""The `expiring` reminder: tell the app a video is about to be deleted by retention.

`export_expiry_reminder_sensor` (every 15 minutes) looks for complete rows whose
`expires_at` falls within the next `EXPORT_EXPIRY_REMINDER_DAYS` (default 2: the product
doc's "email at day 5" of a 7-day retention) and POSTs one `expiring` document per row to
the completion webhook's URL, signed the same way (`webhook.sign`). The app sends the
email on it.

Once per completion: a tick first claims the row with a conditional UPDATE
(`reminded_at` set where it is NULL and `expires_at` is still the one read), so ticks that
overlap, or two daemons, send it once. A delivery that fails gives the claim back and a
later tick tries again (until the video is gone); a 4xx other than 408/429 keeps it (the
app refuses that document: sending it again will not help). A re-export completes with a
new `expires_at` and a NULL `reminded_at`, so it earns its own reminder. Not sent for
rows that are not `complete` (failed, canceled, expired), nor once `expires_at` has
passed. `X-Export-Delivery` is `exp-<id>:expiring:<expires_at>`: the same on every
attempt, so a document the app received but could not acknowledge is recognised.
The document carries URLs signed at the time of the reminder, also written to the row
with the claim: a presigned S3 URL lives at most 7 days (SigV4), less than a 30-day plan,
so the `video_url` written on completion may no longer open by then.
Known limit: a worker that dies between the claim and the POST loses that reminder.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, sensor

from export_pipeline.defs.notify.webhook import post
from export_pipeline.defs.resources import AppDatabase, StorageResource
from export_pipeline.domain.clock import iso
from export_pipeline.domain.formats import output_format
from export_pipeline.domain.layout import poster_key, video_key
from export_pipeline.io.storage import Storage

EVENT = "expiring"
REMIND_DAYS = 2.0
INTERVAL_S = 15 * 60  # a reminder goes out within 15 minutes of its time

REMINDER_FIELDS: tuple[str, ...] = (
    "event",
    "request_id",
    "project_id",
    "user_id",
    "status",
    "video_url",
    "poster_url",
    "completed_at",
    "expires_at",
)


def reminder_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """The `expiring` document for one complete row."""
    return {
        "event": EVENT,
        "request_id": int(row["id"]),
        "project_id": row.get("project_id"),
        "user_id": row.get("user_id"),
        "status": row.get("status"),
        "video_url": row.get("video_url"),
        "poster_url": row.get("poster_url"),
        "completed_at": iso(row.get("completed_at")),
        "expires_at": iso(row.get("expires_at")),
    }


def fresh_urls(storage: Storage, row: Mapping[str, Any]) -> dict[str, str]:
    """`video_url` (and `poster_url`) of the row's published objects, signed now; empty
    when the video is not where publishing puts it (the row's URLs are sent as they are)."""
    partition = f"exp-{int(row['id'])}"
    try:
        key = video_key(partition, output_format(row.get("format")).extension)
    except ValueError:
        return {}
    if not storage.exists(key):
        return {}
    urls = {"video_url": storage.url(key)}
    if row.get("poster_url") and storage.exists(poster_key(partition)):
        urls["poster_url"] = storage.url(poster_key(partition))
    return urls


def reminder_key(row: Mapping[str, Any]) -> str:
    """`X-Export-Delivery` of the reminder: one per completion (its `expires_at`)."""
    return f"exp-{int(row['id'])}:{EVENT}:{iso(row.get('expires_at'))}"


class ReminderTick:
    """One evaluation: each due row is claimed, then its reminder POSTed; a failed POST
    gives the claim back (a refusal keeps it: the app will not take that document)."""

    def __init__(self, context, store, storage: Storage, now: float):
        self.context, self.store, self.storage, self.now = context, store, storage, now
        self.moment = datetime.fromtimestamp(now, UTC)
        self.started = time.monotonic()
        self.sent = self.failed = 0
        self.stopped = ""

    def remind(self, client: httpx.Client, url: str, secret: str, row: Mapping[str, Any]) -> bool:
        """Claim and send one reminder; False when the app could not be reached."""
        request_id = int(row["id"])
        urls = fresh_urls(self.storage, row)
        if not self.store.claim_reminder(request_id, row["expires_at"], self.moment, **urls):
            return True  # another tick has it, or the row moved on
        document = reminder_payload({**row, **urls})
        result = post(client, url, secret, document, reminder_key(row), self.now)
        label = f"export request {request_id} (expires {iso(row['expires_at'])})"
        log = self.context.log
        if result.ok:
            self.sent += 1
            log.info(f"reminder: {label} delivered ({result.detail})")
            return True
        self.failed += 1
        if result.permanent:
            log.error(f"reminder: the app refused {label} ({result.detail}); not sent again")
            return True
        self.store.release_reminder(request_id, self.moment)
        log.warning(f"reminder: {label} failed ({result.detail}); trying again next tick")
        return not result.unreachable

    @property
    def summary(self) -> str:
        return f"reminder: {self.sent} delivered, {self.failed} failed{self.stopped}"


def build_export_expiry_reminder_sensor(
    url: str,
    secret: str,
    *,
    remind_days: float = REMIND_DAYS,
    interval_s: int = INTERVAL_S,
    timeout_s: float = 10.0,
    batch_size: int = 100,
    tick_budget_s: float = 40.0,
    clock: Callable[[], float] = time.time,
):
    """`export_expiry_reminder_sensor`, POSTing `expiring` documents to `url` signed with
    `secret` `remind_days` before each complete export's `expires_at`. One tick sends at
    most `batch_size` and starts no POST after `tick_budget_s`. `clock` is for tests."""
    if urlsplit(url or "").scheme not in ("http", "https"):
        raise ValueError(f"the expiry reminder needs an http(s) URL, got {url!r}")
    if not secret:
        raise ValueError("the expiry reminder needs a secret to sign its requests with")
    if remind_days <= 0:
        raise ValueError(f"remind_days must be > 0, got {remind_days}")

    @sensor(
        name="export_expiry_reminder_sensor",
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"POSTs a signed `expiring` document to the app {remind_days:g} days "
        "before retention deletes an export.",
    )
    def export_expiry_reminder_sensor(
        context: SensorEvaluationContext, app_db: AppDatabase, storage: StorageResource
    ):
        tick = ReminderTick(context, app_db.store(), storage.open(), clock())
        moment = datetime.fromtimestamp(tick.now, UTC)
        rows = tick.store.expiring(moment, moment + timedelta(days=remind_days), limit=batch_size)
        with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
            for row in rows:
                if time.monotonic() - tick.started + timeout_s > tick_budget_s:
                    tick.stopped = "; out of time for this tick"
                    break
                if not tick.remind(client, url, secret, row):
                    tick.stopped = f"; {urlsplit(url).netloc} unreachable, trying again later"
                    break
        return SensorResult(skip_reason=tick.summary)

    return export_expiry_reminder_sensor
