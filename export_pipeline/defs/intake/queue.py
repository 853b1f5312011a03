"""The place of each queued export in Dagster's run queue, and its time left, on the row.

`plan_queue` is the maths (pure): it replays what Dagster's queue daemon does (queued runs
in priority, then arrival order; a run starts when fewer than `max_concurrent_runs` are
running and its user has fewer than the per-user limit running) while the running exports
finish one after another (the soonest expected first). The order in which queued runs
start is their position (1 = next to start); the time at which each starts is its wait.
`export_queue_sensor` feeds it from the instance (queued and running runs, the
`concurrency` config of dagster.yaml) and writes `queue_position`, `queue_reason`,
`eta_s` and `estimated_finish_at` of `queued` rows, only when they change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from export_pipeline.defs.dagster_internals import (
    ACTIVE_RUN_STATUSES,
    PARTITION_NAME_TAG,
    PRIORITY_TAG,
)
from export_pipeline.defs.resources import AppDatabase
from export_pipeline.domain import eta
from export_pipeline.domain import status as st
from export_pipeline.domain.clock import as_utc, utcnow
from export_pipeline.domain.failures import InvalidRequest
from export_pipeline.domain.layout import request_id_from_key
from export_pipeline.domain.request import parse_request
from export_pipeline.io.appdb.store import RequestStore

USER_TAG = "export/user_id"
WAITING = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.QUEUED]
WAITING_FOR_USER = "waiting for your other exports"
WAITING_FOR_WORKER = "waiting for a free worker"
# A new estimate of when a queued export finishes is written only if it moved this much
# (the app counts down from estimated_finish_at between writes).
FINISH_TOLERANCE_S = 10.0


@dataclass(frozen=True)
class Running:
    user: str | None
    seconds_left: float | None  # None: unknown


@dataclass(frozen=True)
class Queued:
    key: str  # the run id
    user: str | None
    seconds: float | None  # expected processing time once started; None: unknown


@dataclass(frozen=True)
class Place:
    position: int  # 1 = next to start
    reason: str
    wait_s: float | None  # until it starts; None: unknown


def plan_queue(
    running: Sequence[Running],
    queued: Sequence[Queued],
    max_runs: int | None,
    per_user: int | None,
) -> dict[str, Place]:
    """Positions, reasons and waits of `queued` (in the order the daemon takes them) behind
    `running`. `max_runs` None or negative: no global limit; `per_user` None: no user limit."""
    # Each running export: [expected finish (None: unknown), user]; the clock runs from now.
    slots: list[list] = [[r.seconds_left, r.user] for r in running]
    waiting = list(queued)
    clock: float | None = 0.0
    reasons: dict[str, str] = {}
    places: dict[str, Place] = {}

    def fits(item: Queued) -> tuple[bool, str]:
        mine = sum(1 for _, user in slots if user is not None and user == item.user)
        if per_user is not None and item.user is not None and mine >= per_user:
            return False, WAITING_FOR_USER
        if max_runs is not None and max_runs >= 0 and len(slots) >= max_runs:
            return False, WAITING_FOR_WORKER
        return True, WAITING_FOR_WORKER

    while waiting:
        for item in list(waiting):
            ok, reason = fits(item)
            reasons.setdefault(item.key, reason)  # why it waits now: the first pass
            if ok:
                waiting.remove(item)
                places[item.key] = Place(len(places) + 1, reasons[item.key], clock)
                done = None if clock is None or item.seconds is None else clock + item.seconds
                slots.append([done, item.user])
        if not waiting:
            break
        if not slots:  # limits of 0: nothing ever starts; keep the arrival order
            for item in waiting:
                places[item.key] = Place(len(places) + 1, reasons[item.key], None)
            break
        # The export expected to finish first frees its slot (unknown ones last, oldest first).
        first = min(range(len(slots)), key=lambda i: (slots[i][0] is None, slots[i][0] or 0))
        finish, _ = slots.pop(first)
        clock = None if clock is None or finish is None else max(clock, finish)
    return places


def queue_limits(instance) -> tuple[int | None, int | None]:
    """`max_concurrent_runs` and the per-user limit (tag export/user_id, applied per unique
    value) of the instance's run queue; None where there is none."""
    try:
        config = instance.get_concurrency_config().run_queue_config
    except Exception:  # noqa: BLE001 - an instance without a run queue
        config = None
    if config is None:
        return None, None
    per_user = None
    for limit in config.tag_concurrency_limits or []:
        value = limit.get("value")
        per_value = isinstance(value, Mapping) and value.get("applyLimitPerUniqueValue")
        if limit.get("key") == USER_TAG and per_value:
            per_user = int(limit["limit"])
    return config.max_concurrent_runs, per_user


def _priority(run) -> int:
    try:
        return int(run.tags.get(PRIORITY_TAG, "0"))
    except ValueError:
        return 0


def _request_id(run) -> int | None:
    try:
        return request_id_from_key(run.tags.get(PARTITION_NAME_TAG, ""))
    except ValueError:
        return None


def _seconds_until(moment: datetime | None, now: datetime) -> float | None:
    return None if moment is None else max(0.0, (as_utc(moment) - now).total_seconds())


def _prior(row: dict[str, Any], history: list[eta.Finished]) -> float | None:
    try:
        spec = parse_request(row)
    except InvalidRequest:
        return None
    return eta.prior_for(history, spec)


def update_queue(instance, store: RequestStore) -> int:
    """One look at the queue; returns how many rows changed."""
    now = utcnow()
    rows = {int(r["id"]): r for r in store.active()}
    history = eta.history_from_rows(store.recent_completed())
    active_runs = instance.get_runs(RunsFilter(statuses=ACTIVE_RUN_STATUSES), ascending=True)
    queued_runs = sorted(
        # NOT_STARTED: created by a sensor tick and about to be queued. Counting them keeps a
        # place from rising while a tick's runs are still being submitted one by one (seen
        # with the daemon: 2, then 3).
        instance.get_runs(RunsFilter(statuses=WAITING), ascending=True),
        key=_priority,
        reverse=True,  # stable: arrival order within a priority, as the daemon does
    )
    running = []
    for run in active_runs:
        row = rows.get(_request_id(run) or -1)
        # Other jobs (metrics, retention) are short: count them as about to finish.
        left = _seconds_until(row.get("estimated_finish_at"), now) if row else 0.0
        running.append(Running(run.tags.get(USER_TAG), left))
    priors: dict[int, float | None] = {}
    queued = []
    for run in queued_runs:
        request_id = _request_id(run)
        row = rows.get(request_id or -1)
        if row is not None:
            priors[request_id] = _prior(row, history)
        seconds = priors.get(request_id) if row is not None else 0.0
        queued.append(Queued(run.run_id, run.tags.get(USER_TAG), seconds))
    places = plan_queue(running, queued, *queue_limits(instance))
    place_of_row = {_request_id(run): places[run.run_id] for run in queued_runs}

    changed = 0
    for request_id, row in rows.items():
        if row["status"] != st.QUEUED:
            continue
        place = place_of_row.get(request_id)
        if place is None:  # not (or no longer) waiting in Dagster's queue: starting
            target = (None, None, row.get("eta_s"), row.get("estimated_finish_at"))
        else:
            prior = priors.get(request_id)
            left = None if place.wait_s is None or prior is None else place.wait_s + prior
            eta_s = eta.eta_seconds(left)
            finish = now + timedelta(seconds=eta_s) if eta_s is not None else None
            target = (place.position, place.reason, eta_s, finish)
        if _differs(row, target):
            changed += store.set_queue_place(request_id, *target)
    return changed


def _differs(row: dict[str, Any], target: tuple) -> bool:
    position, reason, eta_s, finish = target
    if (row.get("queue_position"), row.get("queue_reason")) != (position, reason):
        return True
    old = row.get("estimated_finish_at")
    if (old is None) != (finish is None) or (row.get("eta_s") is None) != (eta_s is None):
        return True
    moved = abs((as_utc(old) - as_utc(finish)).total_seconds()) if finish else 0.0
    return moved > FINISH_TOLERANCE_S


def build_export_queue_sensor(interval_s: int = 5):
    @sensor(
        name="export_queue_sensor",
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description="Writes each queued export's place in the run queue and time left.",
    )
    def export_queue_sensor(context: SensorEvaluationContext, app_db: AppDatabase):
        changed = update_queue(context.instance, app_db.store())
        return SkipReason(f"{changed} queued export(s) updated" if changed else "queue unchanged")

    return export_queue_sensor
