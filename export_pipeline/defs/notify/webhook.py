"""Completion webhook: tell the app when an export has finished, signed, retried, never blocking.

`export_webhook_sensor` looks for finished rows (`complete`, `failed`, `canceled`,
`rejected`) whose outcome the app has not been told about yet (`notified_status` differs
from `status`, or the row finished again after `notified_at`), POSTs one JSON document per
row and, on a 2xx answer, records `notified_status`/`notified_at`. The export itself never
waits for the app: the sensor runs on its own, after the fact.

A failed delivery is retried on later ticks with exponential backoff (an HTTP
`Retry-After` wins when longer); attempt counts and next-attempt times live in the
sensor's cursor (JSON). It gives up, and logs an error, after `max_attempts` attempts, or
at once on a 4xx other than 408/429 (the app refuses that document; sending it again
will not help). When the receiver cannot be reached at all, the tick stops there instead
of trying every other row against it.

Signing (`sign`, `verify`): `X-Export-Timestamp` is the Unix time of the attempt and
`X-Export-Signature` is `sha256=` + hex HMAC-SHA256, keyed with the shared secret, of
`f"{timestamp}.{body}"` (the raw request body, byte for byte). The app recomputes it,
compares in constant time and refuses timestamps more than 5 minutes away from its clock
(a captured request cannot be replayed later). `X-Export-Delivery` names the outcome
(`exp-<id>:<status>:<completed_at>`); it is the same on every retry, so the app can
ignore a document it has already processed.
"""

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, sensor

from export_pipeline.defs.resources import AppDatabase
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import as_utc, iso
from export_pipeline.io.http import retry_after

NOTIFY_STATUSES: tuple[str, ...] = (st.COMPLETE, st.FAILED, st.CANCELED, st.REJECTED)
TIMESTAMP_HEADER = "X-Export-Timestamp"
SIGNATURE_HEADER = "X-Export-Signature"
DELIVERY_HEADER = "X-Export-Delivery"
TOLERANCE_S = 300
USER_AGENT = "export-pipeline-webhook/1"

PAYLOAD_FIELDS: tuple[str, ...] = (
    "request_id",
    "project_id",
    "user_id",
    "status",
    "video_url",
    "poster_url",
    "error_message",
    "error_cause",
    "output_duration_s",
    "output_bytes",
    "completed_at",
)


# ---- signing (both sides)


def _bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def sign(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """The `X-Export-Signature` value: `sha256=` + hex HMAC-SHA256 of `{timestamp}.{body}`."""
    message = f"{timestamp}.".encode() + _bytes(body)
    return "sha256=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp: str | int | None,
    body: bytes | str,
    signature: str | None,
    now: float,
    tolerance_s: float = TOLERANCE_S,
) -> bool:
    """What the app does with a delivery: True only if `signature` is the HMAC of exactly this
    timestamp header and body, and the timestamp is within `tolerance_s` of `now`.

    `timestamp` and `signature` are the header values as received; `now` is the receiver's
    Unix time. The comparison takes constant time."""
    if timestamp is None or signature is None:
        return False
    raw = str(timestamp)
    if not raw.isdigit():
        return False
    if abs(now - int(raw)) > tolerance_s:
        return False
    expected = sign(secret, raw, body).encode("ascii")
    return hmac.compare_digest(expected, signature.encode("utf-8", errors="replace"))


# ---- the document


def payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document for one finished row."""
    duration = row.get("output_duration_s")
    size = row.get("output_bytes")
    return {
        "request_id": int(row["id"]),
        "project_id": row.get("project_id"),
        "user_id": row.get("user_id"),
        "status": row.get("status"),
        "video_url": row.get("video_url"),
        "poster_url": row.get("poster_url"),
        "error_message": row.get("error_message"),
        "error_cause": row.get("error_cause"),
        "output_duration_s": float(duration) if duration is not None else None,
        "output_bytes": int(size) if size is not None else None,
        "completed_at": iso(row.get("completed_at")),
    }


def encode(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def outcome_key(row: Mapping[str, Any]) -> str:
    """One finished outcome of a request: the same on every retry, new after a re-export."""
    completed = row.get("completed_at")
    stamp = as_utc(completed).isoformat().replace("+00:00", "Z") if completed else "-"
    return f"exp-{int(row['id'])}:{row.get('status')}:{stamp}"


def headers(secret: str, timestamp: int, body: bytes, delivery: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        DELIVERY_HEADER: delivery,
    }


# ---- delivering


@dataclass(frozen=True)
class Delivery:
    """How one POST went. `permanent`: do not try this document again. `unreachable`: the
    receiver did not answer at all (connection refused, timeout)."""

    ok: bool
    detail: str
    permanent: bool = False
    unreachable: bool = False
    retry_after_s: float | None = None


def classify(status_code: int) -> str:
    """`ok` (2xx), `give_up` (4xx except 408 and 429) or `retry` (anything else)."""
    if 200 <= status_code < 300:
        return "ok"
    if 400 <= status_code < 500 and status_code not in (408, 429):
        return "give_up"
    return "retry"


def deliver(
    client: httpx.Client, url: str, secret: str, row: Mapping[str, Any], now: float
) -> Delivery:
    """POST the row's document, signed with timestamp `now`."""
    return post(client, url, secret, payload(row), outcome_key(row), now)


def post(
    client: httpx.Client,
    url: str,
    secret: str,
    document: Mapping[str, Any],
    delivery: str,
    now: float,
) -> Delivery:
    """POST one JSON document, signed with timestamp `now` (every event goes this way)."""
    body = encode(document)
    try:
        response = client.post(url, content=body, headers=headers(secret, int(now), body, delivery))
    except httpx.HTTPError as exc:
        return Delivery(ok=False, detail=f"{type(exc).__name__}: {exc}", unreachable=True)
    verdict = classify(response.status_code)
    detail = f"HTTP {response.status_code}"
    if verdict != "ok" and response.text.strip():
        detail += f": {response.text.strip()[:200]}"
    return Delivery(
        ok=verdict == "ok",
        detail=detail,
        permanent=verdict == "give_up",
        retry_after_s=retry_after(response) if verdict == "retry" else None,
    )


def backoff_s(attempts: int, base_s: float, max_s: float) -> float:
    """Wait after the `attempts`-th failed attempt: base, 2 x base, 4 x base, ... up to max."""
    return min(max_s, base_s * 2 ** max(0, attempts - 1))


# ---- the sensor's memory


@dataclass
class Pending:
    """A delivery that failed: for which outcome, how often, and when to try again."""

    outcome: str
    attempts: int
    next_at: float
    finished_at: float  # when the row finished (Unix time): entries expire with the window
    gave_up: bool = False

    def waiting(self, now: float) -> bool:
        return self.gave_up or self.next_at > now


def held(pending: Mapping[str, Pending], now: float) -> int:
    """How many outcomes wait for their next attempt (a tick reads that many more rows)."""
    return sum(1 for entry in pending.values() if entry.waiting(now))


def due(rows, pending: dict[str, Pending], now: float):
    """(row, key, outcome, its earlier failed attempts or None) for each row whose outcome
    may be tried now: a newer outcome than the one that failed gets attempts of its own; one
    waiting for its backoff is left out."""
    for row in rows:
        key, outcome = str(row["id"]), outcome_key(row)
        entry = pending.get(key)
        if entry is not None and entry.outcome != outcome:
            del pending[key]
            entry = None
        if entry is None or not entry.waiting(now):
            yield row, key, outcome, entry


def load_cursor(cursor: str | None) -> dict[str, Pending]:
    """Per request id; an unreadable cursor starts afresh (at worst a few extra POSTs)."""
    try:
        data = json.loads(cursor) if cursor else {}
        return {key: Pending(**value) for key, value in data.get("pending", {}).items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def dump_cursor(pending: Mapping[str, Pending]) -> str:
    entries = {key: vars(value) for key, value in sorted(pending.items(), key=lambda i: int(i[0]))}
    return json.dumps({"v": 1, "pending": entries}, separators=(",", ":"))


def _finished_at(row: Mapping[str, Any], fallback: float) -> float:
    moment = row.get("completed_at") or row.get("updated_at")
    return as_utc(moment).timestamp() if moment else fallback


@dataclass(frozen=True)
class WebhookPolicy:
    """Where and how the completion webhook sends (see `build_export_webhook_sensor`)."""

    url: str
    secret: str
    max_attempts: int = 8
    backoff_base_s: float = 30.0
    backoff_max_s: float = 3600.0
    timeout_s: float = 10.0
    batch_size: int = 50
    max_age_s: float = 24 * 3600.0
    tick_budget_s: float = 40.0
    statuses: tuple[str, ...] = NOTIFY_STATUSES

    def __post_init__(self) -> None:
        if urlsplit(self.url or "").scheme not in ("http", "https"):
            raise ValueError(f"the export webhook needs an http(s) URL, got {self.url!r}")
        if not self.secret:
            raise ValueError("the export webhook needs a secret to sign its requests with")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def next_attempt(self, attempts: int, result: Delivery) -> tuple[float, bool]:
        """After the `attempts`-th failed one: seconds to wait, and whether to give up."""
        wait = max(
            backoff_s(attempts, self.backoff_base_s, self.backoff_max_s),
            result.retry_after_s or 0,
        )
        return min(wait, self.backoff_max_s), result.permanent or attempts >= self.max_attempts


class WebhookTick:
    """One evaluation of the sensor: the rows to tell the app about, one POST each, the
    failed ones remembered in `pending` (the cursor) with their next attempt."""

    def __init__(self, policy: WebhookPolicy, context, store, pending: dict[str, Pending],
                 now: float):  # fmt: skip
        self.policy, self.context, self.store = policy, context, store
        self.pending, self.now = pending, now
        self.started = time.monotonic()
        self.sent = self.failed = self.tried = 0
        self.stopped = ""

    def run(self, client: httpx.Client) -> None:
        since = datetime.fromtimestamp(self.now - self.policy.max_age_s, UTC)
        rows = self.store.unnotified(
            self.policy.statuses,
            since=since,
            limit=self.policy.batch_size + held(self.pending, self.now),
        )
        for row, key, outcome, entry in due(rows, self.pending, self.now):
            if self.tried >= self.policy.batch_size:
                break
            if time.monotonic() - self.started + self.policy.timeout_s > self.policy.tick_budget_s:
                self.stopped = "; out of time for this tick"
                break
            self.tried += 1
            if not self._deliver(client, row, key, outcome, entry):
                # The host only: webhook URLs sometimes carry a token.
                self.stopped = f"; {urlsplit(self.policy.url).netloc} unreachable, trying later"
                break
        # Rows that left the window are no longer looked at: forget them.
        horizon = self.now - self.policy.max_age_s
        self.pending = {k: v for k, v in self.pending.items() if v.finished_at >= horizon}

    def _deliver(self, client, row, key: str, outcome: str, entry: Pending | None) -> bool:
        """POST one row's document; False when the receiver could not be reached."""
        result = deliver(client, self.policy.url, self.policy.secret, row, self.now)
        label = f"export request {key} ({row['status']})"
        log = self.context.log
        if result.ok:
            self.store.mark_notified(int(row["id"]), row["status"], row.get("completed_at"))
            self.pending.pop(key, None)
            self.sent += 1
            log.info(f"webhook: {label} delivered ({result.detail})")
            return True
        self.failed += 1
        attempts = (entry.attempts if entry else 0) + 1
        wait, gave_up = self.policy.next_attempt(attempts, result)
        self.pending[key] = Pending(
            outcome=outcome,
            attempts=attempts,
            next_at=self.now + wait,
            finished_at=_finished_at(row, self.now),
            gave_up=gave_up,
        )
        if gave_up:
            why = "the app refused it" if result.permanent else "no attempts left"
            log.error(f"webhook: giving up on {label} after attempt {attempts}, {why} "
                      f"({result.detail})")  # fmt: skip
        else:
            log.warning(f"webhook: {label} attempt {attempts} failed ({result.detail}); "
                        f"next attempt in {wait:.0f} s")  # fmt: skip
        return not result.unreachable

    @property
    def summary(self) -> str:
        return f"webhook: {self.sent} delivered, {self.failed} failed{self.stopped}"


def build_export_webhook_sensor(
    policy: WebhookPolicy,
    *,
    interval_s: int = 10,
    clock: Callable[[], float] = time.time,
):
    """`export_webhook_sensor`, POSTing to `policy.url`, signed with `policy.secret`.

    Attempts of one outcome: up to `max_attempts`, waiting `backoff_base_s` x 2^n between
    them (at most `backoff_max_s`). Only rows finished within `max_age_s` are considered,
    so turning the webhook on does not replay the whole history. One tick sends at most
    `batch_size` documents and starts no POST after `tick_budget_s` (Dagster stops a
    sensor evaluation after 60 s). `clock` is for tests.
    """

    @sensor(
        name="export_webhook_sensor",
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description="POSTs a signed JSON document to the app when an export finishes.",
    )
    def export_webhook_sensor(context: SensorEvaluationContext, app_db: AppDatabase):
        tick = WebhookTick(policy, context, app_db.store(), load_cursor(context.cursor), clock())
        with httpx.Client(timeout=policy.timeout_s, follow_redirects=False) as client:
            tick.run(client)
        return SensorResult(skip_reason=tick.summary, cursor=dump_cursor(tick.pending))

    return export_webhook_sensor
