"""`notify_email` (issue 23): one address or NULL, checked at intake; a value that is not an
address fails the request with a message naming the field, through the real sensor too."""

import pytest
from dagster import build_sensor_context

from export_pipeline.definitions import build_definitions
from export_pipeline.domain import status as st
from export_pipeline.domain.addresses import MAX_ADDRESS_CHARS, address_problem, parse_address
from export_pipeline.domain.failures import InvalidRequest
from export_pipeline.domain.request import parse_request
from export_pipeline_tests.conftest import clip
from export_pipeline_tests.domain.test_request import row


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ann@example.com", "ann@example.com"),
        ("  Ann.Lee+exports@Example.COM ", "Ann.Lee+exports@example.com"),
        ("o'brien@mail.example.co.uk", "o'brien@mail.example.co.uk"),
        ("x@xn--bcher-kva.example", "x@xn--bcher-kva.example"),
        ("x@bücher.example", "x@xn--bcher-kva.example"),
        ("a_b-c@sub-domain.example", "a_b-c@sub-domain.example"),
    ],
)
def test_addresses_that_are_one(value, expected):
    assert parse_address(value) == expected
    assert address_problem(value) is None


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("ann", "no @"),
        ("ann@", "no domain"),
        ("@example.com", "nothing before"),
        ("ann@@example.com", "more than one @"),
        ("a@b@example.com", "more than one @"),
        ("ann@example", "no dot"),
        ("ann@localhost", "no dot"),
        ("ann lee@example.com", "spaces"),
        ("ann@example.com\r\nBcc: all@example.com", "control characters"),
        ("Ann <ann@example.com>", "spaces"),
        ("ann@example.com,bob@example.com", "more than one @"),
        ("ann@example.com;x", "not a valid host name"),
        ("ann@exa_mple.com", "not a valid host name"),
        ("ann@-example.com", "not a valid host name"),
        ("ann@example..com", "not a valid host name"),
        (".ann@example.com", "characters or dots"),
        ("ann.@example.com", "characters or dots"),
        ("an..n@example.com", "characters or dots"),
        ('"ann"@example.com', "characters or dots"),
        ("ann@[127.0.0.1]", "IP address"),
        ("ann@127.0.0.1", "IP address"),
        ("ann@example.123", "last part is a number"),
        ("a" * 65 + "@example.com", "longer than 64"),
        ("a@" + ".".join(["b" * 60] * 5) + ".com", f"longer than {MAX_ADDRESS_CHARS}"),
        ("ann@" + "b" * 64 + ".com", "not a valid host name"),
        (42, "not a string"),
        (["ann@example.com"], "not a string"),
    ],
)
def test_values_that_are_not_an_address(value, why):
    problem = address_problem(value)
    assert problem is not None and why in problem


def test_the_spec_carries_the_address_and_null_means_no_email():
    assert parse_request(row()).notify_email is None
    assert parse_request(row(notify_email=" Ann@Example.com")).notify_email == "Ann@example.com"


def test_a_bad_address_is_refused_naming_the_field_with_the_other_problems():
    with pytest.raises(InvalidRequest) as info:
        parse_request(row(notify_email="ann@", quality="ultra"))
    message = str(info.value)
    assert message.startswith("invalid export request: ")
    assert "quality 'ultra' is not supported" in message
    assert (
        "notify_email must be one email address like name@example.com, or NULL for no email "
        "(no domain after the @), got 'ann@'"
    ) in message


def test_intake_fails_a_row_whose_address_is_not_one(settings, store, instance):
    defs = build_definitions(settings)
    fields = dict(
        project_id="p1", user_id="u1", resolution="720p", quality="low",
        clips=[clip("https://cdn.example/a.mp4", 1)],
    )  # fmt: skip
    bad = store.insert(**fields, notify_email="ann at example.com")
    good = store.insert(**fields, notify_email="ann@example.com")
    sensor = defs.resolve_sensor_def("export_requests_sensor")
    context = build_sensor_context(
        instance=instance, definitions=defs, resources=dict(defs.resources)
    )
    result = sensor(context)
    assert [r.partition_key for r in result.run_requests] == [f"exp-{good}"]
    failed = store.get(bad)
    assert failed["status"] == st.FAILED and failed["error_cause"] == "invalid_request"
    assert "notify_email must be one email address" in failed["error_message"]
    assert "got 'ann at example.com'" in failed["error_message"]
    assert store.get(good)["status"] == st.QUEUED
