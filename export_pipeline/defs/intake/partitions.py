"""One dynamic partition per export request: `exp-<id>`, and the tags its runs carry."""

from __future__ import annotations

import logging
from collections.abc import Callable

from dagster import DynamicPartitionsDefinition

from export_pipeline.domain.layout import request_id_from_key
from export_pipeline.io.appdb.store import RequestStore

export_partitions = DynamicPartitionsDefinition(name="export_requests")

log = logging.getLogger(__name__)


# Intake refuses longer ids; a backfill of such a row must still get a run whose tags fit
# Dagster's tag index on PostgreSQL (about 2.7 KB), or the run is stored without them.
MAX_TAG_CHARS = 256


def run_tags(request_id: int, user_id: str, project_id: str) -> dict[str, str]:
    """`export/user_id` is what the per-user queue limit in dagster.yaml keys on."""
    return {
        "export/request_id": str(request_id),
        "export/user_id": str(user_id)[:MAX_TAG_CHARS],
        "export/project_id": str(project_id)[:MAX_TAG_CHARS],
    }


def partition_tags(db_url: str) -> Callable[[str], dict[str, str]]:
    """Tags for every run of a partition, however it is launched (the intake sensor, a job
    backfill, the launchpad), read from the request row. A row that cannot be read gives no
    tags rather than blocking the run: the run itself reports what is wrong with it."""

    def tags_for(key: str) -> dict[str, str]:
        try:
            row = RequestStore.from_url(db_url).get(request_id_from_key(key))
        except Exception as exc:  # noqa: BLE001 - a launch must not fail over its tags
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("no export/* tags for partition %s: %s", key, reason)
            return {}
        if row is None:
            return {}
        return run_tags(row["id"], row["user_id"], row["project_id"])

    return tags_for
