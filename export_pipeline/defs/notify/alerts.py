"""Alerts that reach a person: failing KPI checks and runs that failed for good, to Slack
and/or PagerDuty (Events API v2), one alert per incident and one resolve when it is over.

`export_alerts_sensor` looks at the Dagster instance on every tick:
- the latest evaluation of each `export_metrics` check (success rate, p95 time): a failed
  evaluation opens the check's incident, a passing one resolves it;
- run status changes since its cursor (`RUN_FAILURE`, `RUN_SUCCESS` in the event log,
  filtered by job in Python: PostgreSQL storage refuses a job-name filter there): a run of
  one of our jobs that failed and will not be retried (Dagster tags every failed run with
  `dagster/will_retry` when it is stored, from `dagster/max_retries`, the retry number and
  the instance's `run_retries`) opens the job's incident; further final failures while it
  is open go into that incident (a reply in the Slack thread, no new page); the job's next
  successful run resolves it.

Incidents, the read positions and the messages not yet delivered live in the sensor's
cursor (JSON, stored by Dagster with the sensor's state): a restart neither repeats an
alert nor forgets a resolve. A channel that is down is tried again on the next ticks
(`max_attempts`), in order per incident, so a resolve never overtakes its trigger.

Messages name the cause (the `failures_*` counts of `export_metrics`, or the failed
request's classified error), a few request ids and links into the Dagster UI
(`EXPORT_DAGSTER_WEBSERVER_URL`). Everything sent passes through `scrub`: no signed URL or
credential leaves in an alert.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterEventType,
    DefaultSensorStatus,
    RunStatusChangeRecordsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from export_pipeline.defs.channels import CHANNELS, Alert, AlertDeliveryError, Delivery
from export_pipeline.defs.channels.base import SOURCE
from export_pipeline.defs.dagster_internals import (
    PARTITION_NAME_TAG,
    WILL_RETRY_TAG,
    AssetCheckExecutionRecordStatus,
)
from export_pipeline.defs.notify.incidents import Incident, Outgoing, State
from export_pipeline.defs.notify.messages import (
    EXAMPLES,
    Links,
    check_alert,
    plain_values,
    request_label,
    run_alert,
)
from export_pipeline.defs.operations.metrics import (
    ASSET_NAME,
    QUOTA_CHECK_NAME,
    SPEED_CHECK_NAME,
    SUCCESS_CHECK_NAME,
)
from export_pipeline.domain import status as st
from export_pipeline.domain.failures import cause_of_row
from export_pipeline.domain.layout import request_id_from_key

SENSOR_NAME = "export_alerts_sensor"
CHECKS = (SUCCESS_CHECK_NAME, SPEED_CHECK_NAME, QUOTA_CHECK_NAME)
EVENTS_PER_TICK = 200


# ---- one tick


class AlertTick:
    def __init__(self, context: SensorEvaluationContext, state: State, channels: Mapping[str, Any],
                 jobs: Collection[str], links: Links, clock: Callable[[], float]):  # fmt: skip
        self.context = context
        self.instance = context.instance
        self.state = state
        self.channels = channels
        self.jobs = set(jobs)
        self.links = links
        self.clock = clock
        self.said: list[str] = []
        self._store = None

    def store(self):
        if self._store is None:
            self._store = self.context.resources.app_db.store()
        return self._store

    def open(self, slot: str, dedup_key: str, alert: Alert, opened_after: int = 0, request_ids=()):
        self.state.incidents[slot] = Incident(
            dedup_key=dedup_key,
            alert=asdict(alert),
            opened_at=self.clock(),
            opened_after=opened_after,
            request_ids=list(request_ids),
        )
        self._queue(slot, "trigger")
        self.said.append(f"opened {slot}")
        self.context.log.warning(f"alert: {alert.title}: {alert.summary} ({dedup_key})")

    def resolve(self, slot: str, note: str) -> None:
        incident = self.state.incidents[slot]
        incident.state = "resolved"
        self._queue(slot, "resolve", note)
        self.said.append(f"resolved {slot}")
        self.context.log.info(f"alert resolved: {incident.alert['title']} ({note})")

    def _queue(self, slot: str, action: str, note: str = "") -> None:
        for channel in self.channels:
            if action == "update" and not self.channels[channel].updates:
                continue  # it already pages for this incident: nothing new to say
            self.state.outbox.append(Outgoing(slot, channel, action, note))

    # -- KPI checks

    def checks(self) -> None:
        keys = [AssetCheckKey(AssetKey(ASSET_NAME), name) for name in CHECKS]
        latest = self.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
        for key in keys:
            record = latest.get(key)
            if record is None or record.status == AssetCheckExecutionRecordStatus.PLANNED:
                continue
            slot = f"check:{key.name}"
            incident = self.state.incidents.get(slot)
            is_open = incident is not None and incident.state == "open"
            failed = record.status == AssetCheckExecutionRecordStatus.FAILED
            if failed and not is_open:
                evaluation = record.event.asset_check_evaluation if record.event else None
                if evaluation is None:
                    continue
                alert = self._check_alert(key.name, evaluation, record.run_id)
                dedup = f"{SOURCE}/check/{key.name}/{record.id}"
                self.open(slot, dedup, alert, record.id, alert.details.get("request_ids", []))
            elif not failed and is_open:
                evaluation = record.event.asset_check_evaluation if record.event else None
                text = evaluation.description if evaluation is not None else "passes again"
                self.resolve(slot, f"{key.name} passes again: {text}")

    def _check_alert(self, name: str, evaluation: Any, run_id: str) -> Alert:
        event = self.instance.get_latest_materialization_event(AssetKey(ASSET_NAME))
        metadata: dict[str, Any] = {}
        if event is not None and event.asset_materialization is not None:
            metadata = plain_values(event.asset_materialization.metadata)
        since = datetime.now(UTC) - timedelta(hours=float(metadata.get("window_hours") or 24))
        status = st.FAILED if name == SUCCESS_CHECK_NAME else st.COMPLETE
        try:
            rows = self.store().list(status=status, since=since.replace(tzinfo=None), limit=500)
        except Exception as exc:  # noqa: BLE001 - the alert matters more than its examples
            self.context.log.warning(f"alert: could not read example requests: {exc}")
            rows = []
        return check_alert(name, evaluation, run_id, metadata, rows, self.links)

    # -- runs

    def runs(self) -> None:
        """Run status changes since the cursor, in order: a final failure opens (or adds
        to) its job's incident, a success after it resolves it."""
        state = self.state
        if state.after_failure is None or state.after_success is None:
            # The first tick starts from now: turning alerts on does not replay history.
            state.after_failure = self._latest_id(DagsterEventType.RUN_FAILURE)
            state.after_success = self._latest_id(DagsterEventType.RUN_SUCCESS)
            return
        updates: dict[str, list[str]] = {}
        for storage_id, kind, record in self._events():
            if kind == "failure":
                state.after_failure = storage_id
            else:
                state.after_success = storage_id
            entry = record.event_log_entry
            if entry.job_name not in self.jobs:
                continue  # another code location's, or a job we do not watch
            run = self.instance.get_run_by_id(entry.run_id)
            if run is None:
                continue
            if kind == "success":
                self._succeeded(run, storage_id)
            elif run.tags.get(WILL_RETRY_TAG) == "true":
                self.context.log.info(f"alert: run {run.run_id} failed and will be retried")
            else:
                self._failed_for_good(run, storage_id, entry, updates)
        for slot, labels in updates.items():
            incident = self.state.incidents[slot]
            more = f" and {len(labels) - EXAMPLES} more" if len(labels) > EXAMPLES else ""
            note = (
                f"{len(labels)} more final failure(s), {incident.failures} in this incident: "
                + "; ".join(labels[:EXAMPLES]) + more
            )  # fmt: skip
            self._queue(slot, "update", note)
            self.said.append(f"updated {slot}")

    def _events(self) -> list[tuple[int, str, Any]]:
        """Failures and successes after the cursor, merged in storage order, up to the point
        both lists are complete (each is read EVENTS_PER_TICK at a time)."""
        failures = self._since(DagsterEventType.RUN_FAILURE, self.state.after_failure or 0)
        successes = self._since(DagsterEventType.RUN_SUCCESS, self.state.after_success or 0)
        horizon = min(
            failures[-1].storage_id if len(failures) >= EVENTS_PER_TICK else float("inf"),
            successes[-1].storage_id if len(successes) >= EVENTS_PER_TICK else float("inf"),
        )
        return sorted(
            [(r.storage_id, "failure", r) for r in failures if r.storage_id <= horizon]
            + [(r.storage_id, "success", r) for r in successes if r.storage_id <= horizon],
            key=lambda item: item[0],
        )

    def _succeeded(self, run: Any, storage_id: int) -> None:
        slot = f"run:{run.job_name}"
        incident = self.state.incidents.get(slot)
        if incident is None or incident.state != "open" or storage_id <= incident.opened_after:
            return
        note = (
            f"a {run.job_name} run succeeded again ({run.run_id[:8]}) after "
            f"{incident.failures} final failure(s)"
        )
        if incident.request_ids:
            note += ": " + ", ".join(f"exp-{i}" for i in incident.request_ids[:10])
        self.resolve(slot, note)

    def _failed_for_good(
        self, run: Any, storage_id: int, entry: Any, updates: dict[str, list[str]]
    ) -> None:
        slot = f"run:{run.job_name}"
        incident = self.state.incidents.get(slot)
        row = self._row(run)
        if incident is not None and incident.state == "open":
            incident.failures += 1
            if row and len(incident.request_ids) < 50:
                incident.request_ids.append(int(row["id"]))
            label = (
                request_label({**row, "run_id": run.run_id}, self.links, cause_of_row(row))
                if row
                else run.run_id
            )
            updates.setdefault(slot, []).append(label)
            return
        message = entry.dagster_event.message if entry.dagster_event else entry.user_message
        alert = run_alert(run, message or "the run failed", row, self.links)
        dedup = f"{SOURCE}/runs/{run.job_name}/{storage_id}"
        self.open(slot, dedup, alert, storage_id, [int(row["id"])] if row else [])

    def _latest_id(self, event_type: DagsterEventType) -> int:
        result = self.instance.fetch_run_status_changes(
            RunStatusChangeRecordsFilter(event_type=event_type), limit=1, ascending=False
        )
        return result.records[0].storage_id if result.records else 0

    def _since(self, event_type: DagsterEventType, after: int):
        # No job_names in the filter: PostgreSQL's event log refuses it (filtered above).
        result = self.instance.fetch_run_status_changes(
            RunStatusChangeRecordsFilter(event_type=event_type, after_storage_id=after),
            limit=EVENTS_PER_TICK,
            ascending=True,
        )
        return list(result.records)

    def _row(self, run: Any) -> dict[str, Any] | None:
        try:
            request_id = request_id_from_key(run.tags.get(PARTITION_NAME_TAG, ""))
        except ValueError:
            return None
        try:
            return self.store().get(request_id)
        except Exception as exc:  # noqa: BLE001 - alert without the row's details
            self.context.log.warning(f"alert: could not read export request {request_id}: {exc}")
            return {"id": request_id}

    # -- delivery

    def deliver(self, max_attempts: int, client_url: str | None) -> tuple[int, int]:
        sent = failed = 0
        blocked: set[tuple[str, str]] = set()
        keep: list[Outgoing] = []
        for item in self.state.outbox:
            incident = self.state.incidents.get(item.slot)
            channel = self.channels.get(item.channel)
            if incident is None or channel is None:
                continue  # the channel was removed from the configuration: drop it
            if (item.slot, item.channel) in blocked:
                keep.append(item)
                continue
            try:
                self._send(channel, item, incident, client_url)
                sent += 1
            except AlertDeliveryError as exc:
                failed += 1
                item.attempts += 1
                if item.attempts >= max_attempts:
                    self.context.log.error(
                        f"alert: giving up on the {item.action} of {incident.dedup_key} to "
                        f"{item.channel} after {item.attempts} attempts: {exc}"
                    )
                else:
                    self.context.log.warning(
                        f"alert: {item.action} of {incident.dedup_key} to {item.channel} "
                        f"failed (attempt {item.attempts}), trying again next tick: {exc}"
                    )
                    blocked.add((item.slot, item.channel))
                    keep.append(item)
        self.state.outbox = keep
        waiting = {item.slot for item in keep}
        self.state.incidents = {
            slot: incident
            for slot, incident in self.state.incidents.items()
            if incident.state == "open" or slot in waiting
        }
        return sent, failed

    def _send(self, channel: Any, item: Outgoing, incident: Incident, client_url: str | None):
        message = Delivery(
            incident.as_alert(),
            item.action,
            item.note,
            incident.dedup_key,
            ref=incident.refs.get(item.channel),
            client_url=client_url,
        )
        ref = channel.deliver(message)
        if item.action == "trigger" and ref:
            incident.refs[item.channel] = ref


def build_export_alerts_sensor(
    channels: Collection[str],
    jobs: Collection[str],
    *,
    webserver_url: str | None = None,
    interval_s: int = 30,
    max_attempts: int = 20,
    clock: Callable[[], float] = time.time,
):
    """`export_alerts_sensor`, sending to the resources named in `channels` (`alert_slack`,
    `alert_pagerduty`: at least one), watching the runs of `jobs`."""
    channels = tuple(channels)
    known = tuple(channel.key for channel in CHANNELS)
    unknown = set(channels) - set(known)
    if not channels or unknown:
        raise ValueError(f"alert channels must be some of {known}, got {channels}")
    links = Links(webserver_url)

    @sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        # Taken from context.resources: resource parameters are not filled for sensors
        # in the daemon when they are optional.
        required_resource_keys={"app_db", *channels},
        description=(
            "Alerts Slack/PagerDuty when an export_metrics check fails or a run fails for "
            "good; one alert per incident, resolved when it passes or succeeds again."
        ),
    )
    def export_alerts_sensor(context: SensorEvaluationContext):
        state = State.load(context.cursor)
        resources = {key: getattr(context.resources, key) for key in channels}
        tick = AlertTick(context, state, resources, jobs, links, clock)
        tick.checks()
        tick.runs()
        sent, failed = tick.deliver(max_attempts, links.base or None)
        opened = sum(1 for i in state.incidents.values() if i.state == "open")
        said = "; ".join(tick.said) or "nothing new"
        summary = f"alerts: {said}; {sent} sent, {failed} failed; {opened} incident(s) open"
        return SensorResult(skip_reason=summary, cursor=state.dump())

    return export_alerts_sensor
