"""An export's steps outside a Dagster run, on real parts: the request row in SQLite, local
storage, FFmpeg. Dagster's own test context stands in for the run."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import build_asset_context

from export_pipeline.defs.export.steps import ExportStep
from export_pipeline.defs.resources import MediaTools
from export_pipeline.domain import status as st
from export_pipeline.domain.layout import partition_key
from export_pipeline.domain.request import parse_request
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline.io.storage import LocalStorage

RUN_ID = "EPHEMERAL"  # the run id of Dagster's test context


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def media(tmp_path: Path) -> MediaTools:
    return MediaTools(work_dir=str(tmp_path / "work"), segments_per_step=1)


def step_of(store: RequestStore, request_id: int, band: tuple[int, int] = (0, 100)) -> ExportStep:
    """The step of request `request_id`'s run, its row claimed by that run (`processing`)."""
    row = store.get(request_id)
    if row["status"] != st.PROCESSING:
        store.transition(request_id, st.QUEUED)
        assert store.transition(request_id, st.PROCESSING, run_id=RUN_ID)
    context = build_asset_context(partition_key=partition_key(request_id))
    return ExportStep(context=context, store=store, spec=parse_request(store.get(request_id)),
                      band=band)  # fmt: skip
