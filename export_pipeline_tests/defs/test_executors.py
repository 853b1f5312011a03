"""EXPORT_EXECUTOR chooses the Dagster executor of the export job; the job's shape is the
same under every one (the real runs: e2e/test_fanout.py, in process, and the daemon test
with the multiprocess executor)."""

import pytest

from export_pipeline.definitions import build_definitions
from export_pipeline.defs.export.definitions import build_executor
from export_pipeline.defs.settings import Settings
from export_pipeline_tests import REPO_ROOT

DOCKER = REPO_ROOT / "docker"


def job_executor(settings: Settings):
    return build_definitions(settings).resolve_job_def("export_video_job").executor_def


def test_the_default_is_in_process(tmp_path):
    settings = Settings.from_env({"EXPORT_PIPELINE_HOME": str(tmp_path)})
    assert settings.runs.executor == "in_process"
    assert job_executor(settings).name == "in_process"


def test_multiprocess_takes_the_step_limit(tmp_path):
    settings = Settings.from_env(
        {"EXPORT_PIPELINE_HOME": str(tmp_path), "EXPORT_EXECUTOR": "multiprocess",
         "EXPORT_MAX_CONCURRENT_STEPS": "3"}
    )  # fmt: skip
    executor = job_executor(settings)
    assert executor.name == "multiprocess"
    # Configured here: run config has nothing left to give it.
    assert executor.config_schema.as_field().is_required is False


@pytest.mark.parametrize("name", ["docker", "k8s"])
def test_docker_and_k8s_read_their_config_file(tmp_path, name):
    settings = Settings.from_env(
        {"EXPORT_PIPELINE_HOME": str(tmp_path), "EXPORT_EXECUTOR": name.upper(),
         "EXPORT_EXECUTOR_CONFIG": str(DOCKER / f"executor-{name}.yaml"),
         "EXPORT_MAX_CONCURRENT_STEPS": "8"}
    )  # fmt: skip
    executor = job_executor(settings)
    assert executor.name == name
    # Its config is fixed by the file (and the step limit); nothing is left to run config.
    assert executor.config_schema.as_field().is_required is False


def test_an_unknown_executor_is_named(tmp_path):
    settings = Settings.from_env({"EXPORT_PIPELINE_HOME": str(tmp_path)}).replace(
        runs={"executor": "celery"}
    )
    with pytest.raises(ValueError, match="in_process, multiprocess, docker, k8s.*'celery'"):
        build_executor(settings.runs)
