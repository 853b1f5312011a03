from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, instance_for_test
from sqlalchemy import create_engine, text

from export_pipeline.defs.settings import Settings
from export_pipeline.io.appdb.store import RequestStore
from export_pipeline.io.storage import make_s3_client
from export_pipeline_tests import processes
from export_pipeline_tests.cdn import FakeCDN
from export_pipeline_tests.s3_server import S3Server, start_s3_server

POSTGRES_ADMIN_URL = os.environ.get(
    "EXPORT_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)

# Clips with different sizes, rates and audio layouts: (name, w, h, fps, seconds, audio channels)
SAMPLES = {
    "landscape.mp4": (1280, 720, 24, 2.0, 2),
    "portrait.mp4": (720, 1280, 30, 2.0, 0),
    "classic.mp4": (640, 480, 25, 1.5, 1),
}


# A suite started in the background of a shell (`cmd &`, nohup) inherits SIGINT ignored, and
# Dagster maps SIGTERM to SIGINT's handler in a run's process: every child then ignores
# SIGTERM, and Dagster's compute-log `tail -F` processes outlive their step (a 30 s wait,
# and a pipe held open after `export-pipeline demo` ends). Start from the defaults.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# ---- No process outlives the test run (processes.py): every process it starts inherits this
# marker; the first test after which one was seen is noted, and at the end none may be left.

RUN_ID = uuid.uuid4().hex
os.environ[processes.RUN_MARKER] = RUN_ID
FIRST_SEEN: dict[tuple[int, int], str] = {}  # (pid, start) of a marked process -> test id
_known_pids: set[int] = set()
_last_test = "?"


def pytest_runtest_logstart(nodeid: str, location) -> None:
    global _last_test
    _last_test = nodeid


def pytest_runtest_logfinish(nodeid: str, location) -> None:
    """Note the marked processes that appeared during this test (only new pids are read)."""
    global _known_pids
    pids = {int(entry) for entry in os.listdir("/proc") if entry.isdigit()}
    for pid in pids - _known_pids:
        proc = processes.read(pid)
        if proc is not None and proc.environ().get(processes.RUN_MARKER) == RUN_ID:
            FIRST_SEEN.setdefault((pid, proc.started), nodeid)
    _known_pids = pids


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Fails the run if a process it started (a code server, a run worker, FFmpeg, ...) is
    still alive after every test and fixture has ended; kills those it finds."""
    yield
    left = processes.wait_gone(  # a moment for those on their way out
        lambda: processes.left_behind(RUN_ID, os.getpid()), 15.0
    )
    if left:
        processes.kill(left)
        lines = [
            f"{p.describe()}\n    first seen after {FIRST_SEEN.get((p.pid, p.started), _last_test)}"
            for p in left
        ]
        pytest.fail(
            f"{len(left)} process(es) started by the tests outlived them (now killed):\n"
            + "\n".join(lines),
            pytrace=False,
        )


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    from export_pipeline.media.samples import make_sample_clip

    directory = tmp_path_factory.mktemp("samples")
    for name, (w, h, fps, seconds, channels) in SAMPLES.items():
        make_sample_clip(
            directory / name,
            width=w,
            height=h,
            fps=fps,
            duration=seconds,
            audio=channels > 0,
            audio_channels=max(channels, 1),
        )
    return directory


@pytest.fixture
def cdn(sample_dir, tmp_path) -> Iterator[FakeCDN]:
    """A loopback CDN serving a private copy of the samples (tests may add files)."""
    root = tmp_path / "cdn"
    shutil.copytree(sample_dir, root)
    with FakeCDN(root) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_admin():
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # pragma: no cover - CI starts PostgreSQL
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}")
    yield engine
    engine.dispose()


@pytest.fixture
def new_postgres_db(postgres_admin) -> Iterator:
    """Makes throwaway databases (returns each one's URL); drops them after the test."""
    from export_pipeline.io.appdb.store import engine_for

    made: list[str] = []

    def make() -> str:
        name = f"export_test_{uuid.uuid4().hex[:10]}"
        with postgres_admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    yield make
    engine_for.cache_clear()  # close our pools before dropping
    for name in made:
        with postgres_admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url(new_postgres_db) -> str:
    """A fresh database for one test, dropped afterwards."""
    return new_postgres_db()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Embedded settings in a private directory. The fake CDN is plain HTTP on 127.0.0.1:
    allowed through the same address check production uses, with loopback allow-listed."""
    base = Settings.from_env({"EXPORT_PIPELINE_HOME": str(tmp_path / "home")})
    return base.replace(
        downloads={"allow_http": True, "private_networks": list(("127.0.0.0/8",))},
        runs={"retry_delay_s": 0.1, "max_retries": 1},
        media={"work_dir": str(tmp_path / "work")},
        # An empty intake tick returns at once (the daemon's wait: test_sensors.py).
        intake={"wait_s": 0.0},
    )


@pytest.fixture
def db_store(db_url, settings) -> tuple[RequestStore, Settings]:
    """A store on SQLite or PostgreSQL (the `db_url` fixture), and settings pointing at it."""
    settings.home.mkdir(parents=True, exist_ok=True)
    store = RequestStore.from_url(db_url)
    store.create_schema()
    return store, settings.replace(app_db={"url": db_url})


@pytest.fixture
def store(settings) -> RequestStore:
    settings.home.mkdir(parents=True, exist_ok=True)
    store = RequestStore.from_url(settings.app_db.url)
    store.create_schema()
    return store


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as inst:
        yield inst


def clip(url: str, scene: int, trim: float = 0.0, duration: float | None = None) -> dict:
    return {"url": url, "scene_number": scene, "trim_start": trim, "duration": duration}


# ---- S3: moto's standalone server over loopback HTTP, one per test session


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with start_s3_server() as server:
        yield server


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake credentials for boto3, and no way for the developer's own AWS setup to leak in."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def s3_client(s3_server: S3Server) -> Any:
    """A client with the fake credentials given explicitly; boto3 clients are thread-safe."""
    return make_s3_client(s3_server.endpoint_url, session=s3_server.boto_session())


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    """A new, empty bucket for one test."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_settings(settings, s3_server, s3_env, s3_bucket) -> Settings:
    """The test's settings with S3-compatible storage (moto over loopback) in a new bucket."""
    return settings.replace(
        storage={
            "backend": "s3",
            "s3_bucket": s3_bucket,
            "s3_endpoint_url": s3_server.endpoint_url,
            "s3_region": "us-east-1",
        }
    )
