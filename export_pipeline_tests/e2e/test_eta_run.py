"""Time left during a real in-process export: present and falling while it runs, NULL after."""

import pytest

from export_pipeline.domain import status as st
from export_pipeline.domain.clock import as_utc
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.e2e.test_pipeline import export

pytestmark = pytest.mark.e2e


def test_eta_falls_during_a_run_and_is_cleared_at_the_end(
    settings, store, instance, cdn, monkeypatch
):
    clips = [
        clip(cdn.url("landscape.mp4"), 1, duration=2.0),
        clip(cdn.url("portrait.mp4"), 2, duration=2.0),
        clip(cdn.url("classic.mp4"), 3, duration=1.5),
    ]
    # A first export gives the history the next one is estimated from (before it, the
    # built-in rate: never none).
    first_id, first, _ = export(settings, store, instance, clips)
    assert first.success and store.get(first_id)["eta_s"] is None  # cleared when done

    seen: list[dict] = []
    write = RequestStore.set_progress

    def recording(self, request_id, progress, *args, **kwargs):
        changed = write(self, request_id, progress, *args, **kwargs)
        if changed:  # the row as the app would read it right after this tick
            seen.append(self.get(request_id))
        return changed

    monkeypatch.setattr(RequestStore, "set_progress", recording)
    request_id, result, _ = export(settings, store, instance, clips)
    assert result.success

    during = [r for r in seen if r["id"] == request_id and r["status"] == st.PROCESSING]
    assert len(during) >= 3, [r["progress"] for r in during]
    etas = [r["eta_s"] for r in during if r["progress"] < 100]
    # Known from the first tick (the history of the first export), never negative.
    assert all(e is not None and e >= 0 for e in etas), etas
    assert etas[-1] < etas[0], etas
    for row in during:
        if row["eta_s"] is not None:
            left = (as_utc(row["estimated_finish_at"]) - as_utc(row["updated_at"])).total_seconds()
            assert abs(left - row["eta_s"]) <= 1.0

    row = store.get(request_id)
    assert row["status"] == st.COMPLETE
    assert row["eta_s"] is None and row["estimated_finish_at"] is None
    assert row["queue_position"] is None and row["queue_reason"] is None
