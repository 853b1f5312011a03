"""Emails to the creator, for requests with a `notify_email`: the outcome of the export and
the expiry reminder, each sent once, over SMTP (`io.mail`), when `EXPORT_SMTP_HOST` is set.

`export_email_sensor` (every `EXPORT_EMAIL_INTERVAL_S`) emails rows that finished
`complete` (the link, the poster, length, size, "kept until") or `failed` (the message,
and what to do about its cause) in the last 24 h, so turning email on does not replay
history. Not emailed: `canceled` (the app or the creator asked) and `rejected` (the app
shows the daily limit as it happens). `export_expiry_email_sensor` (every 15 minutes)
emails complete rows `EXPORT_EXPIRY_REMINDER_DAYS` before their `expires_at`, with links
signed at that moment (written to the row too, as the webhook's reminder does), whether or
not the webhook is configured.

Once each: a tick claims the row before it sends, with one conditional UPDATE
(`emailed_status` + `emailed_at` for the outcome, `reminder_emailed_at` for the reminder),
so overlapping ticks or two daemons send it once. What the server answers decides what
happens to the claim:
- taken: kept;
- refused for good (a 5xx reply to the recipient or the message: `550 no such mailbox`):
  kept, logged as an error, never sent again;
- refused for now (4xx), or the server cannot be used (down, timed out, TLS or login
  refused): given back. The outcome email is tried again after a backoff kept in the
  sensor's cursor (30 s, doubling, at most 30 min) until the export is a day old; the
  reminder at the sensor's next tick (15 minutes), until `expires_at`. When the server
  cannot be used the tick stops there instead of trying every other row against it.
A re-export completes with a new `completed_at` and `expires_at`, and earns new emails.

Known limits, as with the webhook's reminder: a process that dies between the claim and the
send loses that email; a server that took a message but whose answer never arrived (a
timeout after the data) gets it again on the retry, with the same Message-ID (mail systems
that deduplicate by it show one).

No log line holds the recipient's address, the SMTP password or a signed URL: lines name
the request, and pass through `scrub` like alerts do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, sensor

from export_pipeline.defs.notify.reminder import INTERVAL_S, REMIND_DAYS, fresh_urls, reminder_key
from export_pipeline.defs.notify.webhook import (
    Pending,
    backoff_s,
    due,
    dump_cursor,
    held,
    load_cursor,
)
from export_pipeline.defs.resources import AppDatabase, StorageResource
from export_pipeline.domain import status as st
from export_pipeline.domain.addresses import address_problem, parse_address
from export_pipeline.domain.clock import as_utc
from export_pipeline.io.appdb.notices import EMAIL
from export_pipeline.io.mail import (
    SendResult,
    SmtpConfig,
    SmtpSender,
    Templates,
    compose,
    email_values,
    mailbox,
)
from export_pipeline.io.storage import Storage
from export_pipeline.observability.scrub import scrub_text

# The finished statuses a creator is emailed about, and the template each one uses.
KIND_OF_STATUS = {st.COMPLETE: "completion", st.FAILED: "failure"}


@dataclass(frozen=True)
class EmailPolicy:
    """How and what the email sensors send (see `EmailPolicy.build`)."""

    smtp: SmtpConfig
    sender: str  # the From header
    reply_to: str | None
    templates: Templates
    batch_size: int = 50
    max_age_s: float = 24 * 3600.0  # outcomes older than this are not emailed
    tick_budget_s: float = 40.0  # Dagster stops a sensor evaluation after 60 s
    backoff_base_s: float = 30.0
    backoff_max_s: float = 1800.0

    @classmethod
    def build(
        cls,
        smtp: SmtpConfig,
        *,
        from_address: str | None,
        reply_to: str | None = None,
        templates_dir: str | None = None,
        **options: Any,
    ) -> EmailPolicy:
        """Checked before any sensor runs: the From and Reply-To addresses, and every
        template rendered once (an operator's typo stops the start, not each email)."""
        if not from_address:
            raise ValueError("emails need a From address: set EXPORT_EMAIL_FROM")
        templates = Templates(templates_dir)
        templates.check()
        return cls(
            smtp=smtp,
            sender=mailbox(from_address, "From address (EXPORT_EMAIL_FROM)"),
            reply_to=mailbox(reply_to, "Reply-To address (EXPORT_EMAIL_REPLY_TO)")
            if reply_to
            else None,
            templates=templates,
            **options,
        )

    def message(self, kind: str, row: Mapping[str, Any], delivery: str, now: float) -> EmailMessage:
        """The email of `kind` about `row` to its `notify_email` (ValueError: the row has
        no address that is one)."""
        moment = datetime.fromtimestamp(now, UTC)
        to = parse_address(row.get("notify_email"))
        error = row.get("error_message")
        clean = {**row, "error_message": scrub_text(str(error)) if error else None}
        rendered = self.templates.render(kind, email_values(kind, clean, moment))
        return compose(
            rendered,
            sender=self.sender,
            to=to,
            reply_to=self.reply_to,
            delivery=delivery,
            request_id=int(row["id"]),
            date=moment,
        )


class _Tick:
    """What both sensors' ticks share: the clock, the counts, scrubbed logging."""

    def __init__(self, policy: EmailPolicy, context, store, now: float):
        self.policy, self.context, self.store, self.now = policy, context, store, now
        self.moment = datetime.fromtimestamp(now, UTC)
        self.started = time.monotonic()
        self.sent = self.failed = 0
        self.stopped = ""

    def log(self, level: str, text: str) -> None:
        getattr(self.context.log, level)(scrub_text(text))

    def out_of_time(self) -> bool:
        elapsed = time.monotonic() - self.started
        if elapsed + self.policy.smtp.timeout_s > self.policy.tick_budget_s:
            self.stopped = "; out of time for this tick"
            return True
        return False

    def compose(
        self, kind: str, row: Mapping[str, Any], delivery: str, label: str
    ) -> EmailMessage | None:
        """The message, or None (logged) when this row cannot have one: an address that is
        not one (a request failed at intake for it, or written before the check), a
        template failing on it."""
        problem = address_problem(row.get("notify_email"))
        if problem:
            self.log("warning", f"email: {label} not sent: its notify_email is not an email "
                                f"address ({problem})")  # fmt: skip
            return None
        try:
            return self.policy.message(kind, row, delivery, self.now)
        except Exception as exc:  # noqa: BLE001 - one row's email must not stop the others
            self.failed += 1
            self.log("error", f"email: {label} not sent, and not tried again: "
                              f"{type(exc).__name__}: {exc}")  # fmt: skip
            return None

    def sent_or_refused(self, result: SendResult, label: str) -> bool:
        """Count and log a send that is over for good (True), or say it is not (False)."""
        if result.ok:
            self.sent += 1
            self.log("info", f"email: {label} sent ({result.detail})")
            return True
        self.failed += 1
        if result.permanent:
            self.log("error", f"email: the server refused {label} for good ({result.detail}); "
                              "not sent again")  # fmt: skip
            return True
        return False


class EmailTick(_Tick):
    """One evaluation of `export_email_sensor`: finished rows not emailed yet, each claimed
    then sent; failed sends given back and remembered in `pending` (the cursor)."""

    def __init__(self, policy: EmailPolicy, context, store, pending: dict[str, Pending],
                 now: float):  # fmt: skip
        super().__init__(policy, context, store, now)
        self.pending = pending
        self.tried = 0

    def run(self, smtp: SmtpSender) -> None:
        policy = self.policy
        since = datetime.fromtimestamp(self.now - policy.max_age_s, UTC)
        limit = policy.batch_size + held(self.pending, self.now)
        rows = self.store.unemailed(tuple(KIND_OF_STATUS), since=since, limit=limit)
        for row, key, outcome, entry in due(rows, self.pending, self.now):
            if self.tried >= policy.batch_size or self.out_of_time():
                break
            self.tried += 1
            if not self._email(smtp, row, key, outcome, entry):
                self.stopped = "; the SMTP server cannot be used, trying again later"
                break
        self._forget_old()

    def _email(self, smtp: SmtpSender, row, key: str, outcome: str, entry: Pending | None):
        """Claim, compose and send one row's email; False when the server cannot be used."""
        request_id, status = int(row["id"]), row["status"]
        claim = self.store.claim_email(request_id, status, row.get("completed_at"), self.moment)
        if claim is None:
            self.pending.pop(key, None)
            return True  # another tick has it, or the row moved on
        label = f"export request {key} ({status})"
        message = self.compose(KIND_OF_STATUS[status], row, outcome, label)
        if message is None:
            self.pending.pop(key, None)
            return True
        result = smtp.send(message)
        if self.sent_or_refused(result, label):
            self.pending.pop(key, None)
            return True
        self.store.release_email(request_id, claim, row.get("emailed_status"),
                                 row.get("emailed_at"))  # fmt: skip
        attempts = (entry.attempts if entry else 0) + 1
        wait = backoff_s(attempts, self.policy.backoff_base_s, self.policy.backoff_max_s)
        finished = row.get("completed_at") or row.get("updated_at")
        self.pending[key] = Pending(
            outcome=outcome,
            attempts=attempts,
            next_at=self.now + wait,
            finished_at=as_utc(finished).timestamp() if finished else self.now,
        )
        self.log("warning", f"email: {label} attempt {attempts} failed ({result.detail}); "
                            f"next attempt in {wait:.0f} s")  # fmt: skip
        return not result.unusable

    def _forget_old(self) -> None:
        """Rows that left the window are no longer looked at: give up on them, loudly."""
        horizon = self.now - self.policy.max_age_s
        for key, entry in list(self.pending.items()):
            if entry.finished_at < horizon:
                del self.pending[key]
                self.log("error", f"email: giving up on export request {key} after "
                                  f"{entry.attempts} attempts: it finished over "
                                  f"{self.policy.max_age_s / 3600:g} h ago")  # fmt: skip

    @property
    def summary(self) -> str:
        return f"email: {self.sent} sent, {self.failed} failed{self.stopped}"


class ExpiryEmailTick(_Tick):
    """One evaluation of `export_expiry_email_sensor`: each due row claimed, then emailed
    with links signed now; a failed send gives the claim back (a refusal keeps it)."""

    def __init__(self, policy: EmailPolicy, context, store, storage: Storage, now: float):
        super().__init__(policy, context, store, now)
        self.storage = storage

    def run(self, smtp: SmtpSender, remind_days: float) -> None:
        until = self.moment + timedelta(days=remind_days)
        rows = self.store.expiring(self.moment, until, self.policy.batch_size, channel=EMAIL)
        for row in rows:
            if self.out_of_time():
                break
            if not self._remind(smtp, row):
                self.stopped = "; the SMTP server cannot be used, trying again later"
                break

    def _remind(self, smtp: SmtpSender, row: Mapping[str, Any]) -> bool:
        request_id = int(row["id"])
        urls = fresh_urls(self.storage, row)
        claimed = self.store.claim_reminder(
            request_id, row["expires_at"], self.moment, channel=EMAIL, **urls
        )
        if not claimed:
            return True  # another tick has it, or the row moved on
        label = f"the expiry reminder of export request {request_id}"
        message = self.compose("expiring", {**row, **urls}, reminder_key(row), label)
        if message is None:
            return True
        result = smtp.send(message)
        if self.sent_or_refused(result, label):
            return True
        self.store.release_reminder(request_id, self.moment, channel=EMAIL)
        self.log("warning", f"email: {label} failed ({result.detail}); trying again next tick")
        return not result.unusable

    @property
    def summary(self) -> str:
        return f"expiry email: {self.sent} sent, {self.failed} failed{self.stopped}"


def build_export_email_sensor(
    policy: EmailPolicy, *, interval_s: int = 10, clock: Callable[[], float] = time.time
):
    """`export_email_sensor`: emails each finished export's outcome to its `notify_email`,
    once. `clock` is for tests."""

    @sensor(
        name="export_email_sensor",
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description="Emails the creator (notify_email) when an export completes or fails.",
    )
    def export_email_sensor(context: SensorEvaluationContext, app_db: AppDatabase):
        tick = EmailTick(policy, context, app_db.store(), load_cursor(context.cursor), clock())
        with SmtpSender(policy.smtp) as smtp:  # connects only if there is something to send
            tick.run(smtp)
        return SensorResult(skip_reason=tick.summary, cursor=dump_cursor(tick.pending))

    return export_email_sensor


def build_export_expiry_email_sensor(
    policy: EmailPolicy,
    *,
    remind_days: float = REMIND_DAYS,
    interval_s: int = INTERVAL_S,
    clock: Callable[[], float] = time.time,
):
    """`export_expiry_email_sensor`: emails `remind_days` before each complete export's
    `expires_at` (the webhook's `expiring` time), once per completion."""
    if remind_days <= 0:
        raise ValueError(f"remind_days must be > 0, got {remind_days}")

    @sensor(
        name="export_expiry_email_sensor",
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Emails the creator (notify_email) {remind_days:g} days before "
        "retention deletes an export.",
    )
    def export_expiry_email_sensor(
        context: SensorEvaluationContext, app_db: AppDatabase, storage: StorageResource
    ):
        tick = ExpiryEmailTick(policy, context, app_db.store(), storage.open(), clock())
        with SmtpSender(policy.smtp) as smtp:
            tick.run(smtp, remind_days)
        return SensorResult(skip_reason=tick.summary)

    return export_expiry_email_sensor
