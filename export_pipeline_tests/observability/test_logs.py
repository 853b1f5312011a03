"""Logs a forwarder can read: every line one JSON object, from the formatter alone, from the
dagster.yaml `python_logs` block README documents (read from README itself) and from
`EXPORT_LOG_FORMAT=json` on real runs; the default stays prose."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from pathlib import Path

import pytest
import yaml
from dagster import get_dagster_logger, instance_for_test, job, op

from export_pipeline.definitions import build_definitions
from export_pipeline.observability.logs import (
    JsonFormatter,
    configure_logging,
    step_log_context,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def json_lines(text: str) -> list[dict]:
    """Every non-empty line parsed as JSON (fails on the first line that is not)."""
    out = []
    for line in text.splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                pytest.fail(f"not a JSON line: {line!r}")
    return out


def record(msg: str, level=logging.INFO, exc_info=None, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("export_pipeline.x", level, __file__, 1, msg, (), exc_info)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_formatter_writes_one_json_object_per_line():
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        exc_info = sys.exc_info()
    formatter = JsonFormatter()
    line = formatter.format(record("two\nlines https://cdn/a.mp4?token=abc", exc_info=exc_info))
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "info" and data["logger"] == "export_pipeline.x"
    assert data["message"] == "two\nlines https://cdn/a.mp4?[Filtered]"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["timestamp"])
    assert "ValueError: boom" in data["exception"]
    assert "run_id" not in data  # unknown: left out rather than null


def test_formatter_takes_dagster_metadata_and_the_step_context():
    meta = {
        "run_id": "r-1",
        "job_name": "export_video_job",
        "step_key": "encoded_video.encoded_video_join",
        "job_tags": {"dagster/partition": "exp-9"},
        "orig_message": "exp-9: 50% done",
        "dagster_event": None,
    }
    with step_log_context(request_id=9, attempt=2, partition="exp-9", step="encoded_video"):
        data = json.loads(
            JsonFormatter().format(record("prefixed - exp-9: 50% done", dagster_meta=meta))
        )
    assert data["message"] == "exp-9: 50% done"  # Dagster's own text, without its prefix
    assert (data["run_id"], data["job"], data["partition"]) == ("r-1", "export_video_job", "exp-9")
    assert data["step"] == "encoded_video.encoded_video_join"  # Dagster's step key wins
    assert data["request_id"] == 9 and data["attempt"] == 2
    outside = json.loads(JsonFormatter().format(record("after")))
    assert "request_id" not in outside


def test_configure_logging_json_for_our_modules_and_back_to_text():
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    configure_logging("json", stream=stream)  # idempotent: one handler
    try:
        logging.getLogger("export_pipeline.defs.intake.partitions").warning(
            "partition %s gone", "exp-1"
        )
        (line,) = json_lines(stream.getvalue())
        assert line["message"] == "partition exp-1 gone" and line["level"] == "warning"
    finally:
        configure_logging("text")
    assert not [
        h
        for h in logging.getLogger("export_pipeline").handlers
        if getattr(h, "_export_json", False)
    ]
    with pytest.raises(ValueError, match="EXPORT_LOG_FORMAT"):
        configure_logging("xml")


# ---- through Dagster


@op
def chatty(context):
    context.log.info("step says hello")
    # our own modules log with plain logging; python_logs.managed_python_loggers takes them in
    logging.getLogger("export_pipeline.tests").warning("module says https://cdn/x.mp4?sig=abc")
    get_dagster_logger().info("dagster logger says hi")


@job
def chatty_job():
    chatty()


def readme_python_logs() -> dict:
    """The `python_logs` block of README's "Alerts, error tracking, logs" section."""
    text = README.read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    (block,) = [b for b in blocks if b.lstrip().startswith("python_logs:")]
    return yaml.safe_load(block)


def test_the_readme_dagster_yaml_block_gives_json_lines(capfd):
    config = readme_python_logs()
    handlers = config["python_logs"]["dagster_handler_config"]["handlers"]
    assert {h["formatter"] for h in handlers.values()} == {"json"}
    capfd.readouterr()
    with instance_for_test(overrides=config) as instance:
        result = chatty_job.execute_in_process(
            instance=instance,
            tags={"dagster/partition": "exp-5"},
            # the prose console logger off: stdout is the handler's alone
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )
    assert result.success
    lines = json_lines(capfd.readouterr().out)
    messages = {line["message"]: line for line in lines}
    hello = messages["step says hello"]
    assert hello["run_id"] == result.run_id and hello["step"] == "chatty"
    assert hello["partition"] == "exp-5" and hello["job"] == "chatty_job"
    assert "module says https://cdn/x.mp4?[Filtered]" in messages
    assert messages["module says https://cdn/x.mp4?[Filtered]"]["run_id"] == result.run_id
    assert "dagster logger says hi" in messages
    events = {line.get("event") for line in lines}
    assert {"STEP_START", "STEP_SUCCESS"} <= events
    assert all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)


def test_export_log_format_json_makes_run_console_logs_json(settings, store, instance, capfd):
    defs = build_definitions(settings.replace(observability={"log_format": "json"}))
    capfd.readouterr()
    result = defs.resolve_job_def("export_metrics_job").execute_in_process(instance=instance)
    assert result.success
    lines = json_lines(capfd.readouterr().err)
    assert lines, "no log lines"
    assert all(line["run_id"] == result.run_id for line in lines if line["logger"] == "dagster")
    events = {line.get("event") for line in lines}
    assert {"PIPELINE_START", "ASSET_CHECK_EVALUATION", "PIPELINE_SUCCESS"} <= events
    assert any("success rate" in line["message"] for line in lines)


def test_the_default_stays_prose(settings, store, instance, capfd):
    defs = build_definitions(settings)
    capfd.readouterr()
    defs.resolve_job_def("export_metrics_job").execute_in_process(instance=instance)
    err = capfd.readouterr().err
    assert " - dagster - " in err and not err.lstrip().startswith("{")
