import pytest

from export_pipeline.domain import status as st


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (st.PENDING, st.QUEUED, True),
        (st.PENDING, st.FAILED, True),
        (st.QUEUED, st.PROCESSING, True),
        (st.PROCESSING, st.COMPLETE, True),
        (st.PROCESSING, st.RETRYING, True),
        (st.RETRYING, st.PROCESSING, True),
        (st.FAILED, st.PROCESSING, True),  # re-execution from failure
        (st.COMPLETE, st.PROCESSING, True),  # backfill / re-export
        (st.COMPLETE, st.FAILED, False),  # a late failure must not undo a result
        (st.COMPLETE, st.RETRYING, False),
        (st.FAILED, st.COMPLETE, False),  # only a processing run completes
        (st.CANCELED, st.PROCESSING, False),
        (st.EXPIRED, st.QUEUED, False),
        (st.EXPIRED, st.PENDING, True),  # a backfill puts it back in line
        (st.COMPLETE, st.PENDING, True),
        (st.EXPIRED, st.PROCESSING, False),
        (st.PENDING, st.COMPLETE, False),
    ],
)
def test_transitions(current, target, allowed):
    assert st.can_transition(current, target) is allowed
    assert (current in st.sources(target)) is allowed


def test_every_status_is_known_and_terminal_ones_do_not_retry():
    for nexts in st.TRANSITIONS.values():
        assert nexts <= set(st.STATUSES)
    for terminal in st.TERMINAL:
        assert st.RETRYING not in st.TRANSITIONS[terminal]


def test_unknown_target_is_an_error():
    with pytest.raises(ValueError, match="unknown status"):
        st.sources("done")


def test_retry_takes_failures_and_a_backfill_any_finished_export():
    assert st.RETRYABLE < st.BACKFILLABLE <= st.sources(st.PENDING)
    assert st.COMPLETE not in st.RETRYABLE and st.EXPIRED in st.BACKFILLABLE
