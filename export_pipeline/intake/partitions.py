"""One dynamic partition per export request: `exp-<id>`."""

from __future__ import annotations

import re

from dagster import DynamicPartitionsDefinition

export_partitions = DynamicPartitionsDefinition(name="export_requests")

_KEY = re.compile(r"^exp-(\d+)$")


def partition_key(request_id: int) -> str:
    return f"exp-{int(request_id)}"


def request_id_from_key(key: str) -> int:
    match = _KEY.match(key or "")
    if not match:
        raise ValueError(f"partition key {key!r} is not of the form exp-<request id>")
    return int(match.group(1))
