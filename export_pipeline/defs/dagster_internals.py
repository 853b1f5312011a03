"""The few names of Dagster's private modules (`dagster._core`) the pipeline needs, in one
place, because Dagster has no public API for them: the tags it puts on runs (partition,
retry number, will-retry, priority), the run statuses it counts as in progress or active,
and the status of a check evaluation. `test_dagster_internals` fails loudly if an upgrade
moves or renames any of them."""

from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.dagster_run import ACTIVE_RUN_STATUSES, IN_PROGRESS_RUN_STATUSES
from dagster._core.storage.tags import (
    PARTITION_NAME_TAG,
    PRIORITY_TAG,
    RETRY_NUMBER_TAG,
    WILL_RETRY_TAG,
)

__all__ = [
    "ACTIVE_RUN_STATUSES",
    "IN_PROGRESS_RUN_STATUSES",
    "PARTITION_NAME_TAG",
    "PRIORITY_TAG",
    "RETRY_NUMBER_TAG",
    "WILL_RETRY_TAG",
    "AssetCheckExecutionRecordStatus",
]
