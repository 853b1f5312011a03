"""The production stack of docker/, built and run for real (marker `stack`).

One module-scoped stack for every test here, in this order: stand-in base images where a
pull fails (docker/stand-ins/build.sh), the two images, `docker-compose up` until every
service is healthy; the UI with the code location loaded; an export end to end (the app's
INSERT into the stack's PostgreSQL, clips from a CDN container, a run container of its own
through the Docker socket, video and poster in S3, a presigned URL that downloads a file
ffprobe accepts, the row complete with eta_s and expires_at, the signed webhook at a
receiver container); six faults through the stack; the same export with every step in a
container of its own, timed; and `down`, leaving no container, network or volume.

Skipped only where Docker cannot run (no CLI, no engine answering, no compose tool):
`.ci/run` installs docker.io and docker-compose and starts dockerd. Measurements are
written to export_pipeline_tests/artifacts/stack-measurements.json (docker/README.md)."""

from __future__ import annotations

import base64
import json
import re
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from export_pipeline.defs.notify.webhook import verify
from export_pipeline.media.samples import make_sample_clip
from export_pipeline_tests.stack.world import (
    NETWORK,
    RUN_LABEL,
    Stack,
    docker,
    docker_unavailable,
    wait_for,
)

pytestmark = [pytest.mark.stack, pytest.mark.timeout(3600)]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
FINISHED = ("complete", "failed", "canceled", "rejected")
CLIPS = 3
# Operator settings the stack is started with: each must reach the code server, the
# daemon and every run and step container (docker/envgen.py).
OPERATOR = {
    "EXPORT_WEBHOOK_URL": "http://webhook:8080/hook",
    "EXPORT_RETENTION_DAYS": "3",
    "EXPORT_DAILY_LIMIT": "40",
    "EXPORT_STORAGE_QUOTA_MB": "5000",
    "EXPORT_EXPIRY_REMINDER_DAYS": "1.5",
}
MEASURED: dict = {}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    reason = docker_unavailable()
    if reason:
        pytest.skip(f"Docker cannot run here: {reason}")
    work = tmp_path_factory.mktemp("stack")
    started = time.monotonic()
    world = Stack(work)
    world.volumes_before = set(docker("volume", "ls", "-q").split())
    world.down()  # what an interrupted earlier run left
    try:
        world.build()
        # The network exists once the first services are up; clip URLs on it must be let
        # through (a CDN on a private network: README, EXPORT_ALLOWED_PRIVATE_NETWORKS).
        world.compose("up", "-d", "--no-build", "postgres", "minio")
        world._ids.clear()
        world.write_env(
            EXPORT_EXECUTOR="in_process",
            EXPORT_ALLOW_HTTP="true",
            EXPORT_ALLOWED_PRIVATE_NETWORKS=world.subnet(),
            EXPORT_WEBHOOK_SECRET=world.values["EXPORT_WEBHOOK_SECRET"],
            # Step retries 5 s, 15 s, 35 s apart: an S3 outage of 30 s is outlived.
            EXPORT_RETRY_DELAY_S="5",
            **OPERATOR,
        )
        cdn = work / "cdn"
        cdn.mkdir()
        for i in range(CLIPS):
            make_sample_clip(cdn / f"clip{i}.mp4", width=1280, height=720, fps=24,
                             duration=4.0, tone_hz=330 + 110 * i)  # fmt: skip
        hooks = work / "hooks"
        hooks.mkdir()
        (hooks / "receiver.py").write_text((Path(__file__).parent / "receiver.py").read_text())
        (hooks / "deliveries.jsonl").write_text("")
        for path in (cdn, hooks):
            path.chmod(0o777)
            for child in path.iterdir():
                child.chmod(0o666)
        world.side_container("stack-test-cdn", "cdn", cdn,
                             ["python", "-m", "http.server", "8080", "--directory", "/srv"])  # fmt: skip
        world.side_container("stack-test-webhook", "webhook", hooks,
                             ["python", "/srv/receiver.py"])  # fmt: skip
        world.hooks = hooks / "deliveries.jsonl"
        world.timings["up_to_healthy_s"] = world.up()
        world.exports = 0
        yield world
    finally:
        world.down()
        MEASURED.update(world.timings)
        MEASURED["stack_test_wall_s"] = round(time.monotonic() - started, 1)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "stack-measurements.json").write_text(json.dumps(MEASURED, indent=2))


def request(stack: Stack, user: str = "stack-user") -> int:
    """A new export of the CDN's clips, trimmed differently each time so that no segment
    comes from the cache of an earlier one: every export encodes."""
    stack.exports += 1
    trim = round(0.05 * stack.exports, 2)
    clips = [{"url": f"http://cdn:8080/clip{i}.mp4", "scene_number": i + 1,
              "trim_start": trim, "duration": 3.5} for i in range(CLIPS)]  # fmt: skip
    # 720p: the clips' own size, so an export encodes in about half a minute here.
    return stack.insert(clips, user=user, resolution="720p")


def encoding(row: dict) -> bool:
    return row["status"] == "processing" and (row["progress"] or 0) >= 15


def s3(stack: Stack, script: str) -> str:
    """Python with boto3 in a container on the stack's network, as the pipeline's key."""
    env = {k: stack.values[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    prelude = (
        "import boto3, json\n"
        "s3 = boto3.client('s3', endpoint_url='http://minio:9000', region_name='us-east-1')\n"
    )
    argv = ["run", "--rm", "--network", NETWORK, "--label", "export-pipeline-stack-test"]
    for key, value in env.items():
        argv += ["-e", f"{key}={value}"]
    return docker(*argv, "export-pipeline-user-code:local", "python", "-c", prelude + script)


def video_keys(stack: Stack) -> set[str]:
    out = s3(stack, "print(json.dumps([o['Key'] for o in s3.list_objects_v2("
             "Bucket='exports', Prefix='pipeline/videos/').get('Contents', [])]))")  # fmt: skip
    return set(json.loads(out))


def operator_settings_in(stack: Stack, container: str) -> None:
    env = stack.env_of(container)
    for name, value in {
        **OPERATOR,
        "EXPORT_WEBHOOK_SECRET": stack.values["EXPORT_WEBHOOK_SECRET"],
    }.items():
        assert env.get(name) == value, f"{name} did not reach {container[:12]}: {env.get(name)!r}"


# ---- the stack comes up --------------------------------------------------------------------


def test_stack_is_healthy_and_the_one_shots_succeeded(stack):
    for service in ("postgres", "minio", "user_code", "webserver", "daemon"):
        assert stack.health(service) == "healthy", service
    for one_shot in ("db-init", "minio-setup"):
        assert stack.exit_code(one_shot) == 0, one_shot
    # The code server and the daemon carry the operator's settings (the daemon passes them
    # on to every run container).
    for service in ("user_code", "daemon"):
        operator_settings_in(stack, stack.container(service))


def test_ui_shows_the_code_location_loaded(stack):
    import httpx

    query = ("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
             "locationOrLoadError { __typename } } } } }")  # fmt: skip
    answer = httpx.post("http://127.0.0.1:3000/graphql", json={"query": query}, timeout=30)
    entries = answer.json()["data"]["workspaceOrError"]["locationEntries"]
    assert [(e["name"], e["loadStatus"], e["locationOrLoadError"]["__typename"])
            for e in entries] == [("export_pipeline", "LOADED", "RepositoryLocation")]  # fmt: skip

    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Debian's chromium is not installed: no screenshot (the GraphQL check ran)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium),
                                    args=["--no-sandbox", "--disable-gpu"])  # fmt: skip
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto("http://127.0.0.1:3000/locations", wait_until="networkidle")
        page.get_by_text("export_pipeline").first.wait_for(timeout=60_000)
        skip = page.get_by_role("button", name="Skip")  # the UI's welcome dialog, if shown
        try:
            skip.wait_for(timeout=5_000)
            skip.click()
        except Exception:  # noqa: BLE001 (no dialog this time)
            pass
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "stack-ui-locations.png"))
        text = page.inner_text("body")
        browser.close()
    assert "export_pipeline" in text and "Loaded" in text


# ---- one export through the stack -------------------------------------------------------------


def test_export_end_to_end(stack):
    inserted = time.monotonic()
    request_id = request(stack)
    seen_eta = []

    def finished():
        row = stack.row(request_id)
        if row["status"] == "processing" and row["eta_s"] is not None:
            seen_eta.append(row["eta_s"])
        return row if row["status"] in FINISHED else None

    row = wait_for(finished, 600, f"request {request_id} to finish", 0.5)
    took = time.monotonic() - inserted
    assert row["status"] == "complete", row["error_message"]
    assert row["progress"] == 100 and row["eta_s"] is None
    assert seen_eta, "no eta_s was written while the export ran"
    assert row["output_duration_s"] == pytest.approx(CLIPS * 3.5, abs=0.1)
    assert row["expires_at"] is not None
    completed = time.mktime(time.strptime(row["completed_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    expires = time.mktime(time.strptime(row["expires_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert expires - completed == pytest.approx(3 * 86400, abs=5), "EXPORT_RETENTION_DAYS=3"
    MEASURED["insert_to_complete_in_process_s"] = round(took, 1)

    # The run had a container of its own, started by the DockerRunLauncher through the
    # engine's socket, with the operator's settings.
    container = stack.run_container(row["run_id"])
    assert container, "no run container carries the run's label"
    info = stack.inspect(container)
    assert info["Config"]["Image"] == "export-pipeline-user-code:local"
    assert info["Config"]["Cmd"][:3] == ["dagster", "api", "execute_run"]
    assert NETWORK in info["NetworkSettings"]["Networks"]
    assert info["Config"]["User"] == "app"
    operator_settings_in(stack, container)

    # The video and the poster are in the bucket; the presigned URL downloads a file that
    # ffprobe reads as the export's video.
    keys = video_keys(stack)
    assert {
        f"pipeline/videos/exp-{request_id}.mp4",
        f"pipeline/videos/exp-{request_id}.jpg",
    } <= keys
    script = (
        "import json, subprocess, sys, urllib.request\n"
        "urllib.request.urlretrieve(sys.argv[1], '/tmp/v.mp4')\n"
        "print(subprocess.run(['ffprobe', '-v', 'error', '-show_entries',"
        " 'format=duration:stream=codec_name,width,height', '-of', 'json', '/tmp/v.mp4'],"
        " check=True, capture_output=True, text=True).stdout)\n"
    )
    probe = json.loads(stack.probe("python", "-c", script, row["video_url"]))
    codecs = {s["codec_name"] for s in probe["streams"]}
    assert codecs == {"h264", "aac"}
    video = next(s for s in probe["streams"] if s["codec_name"] == "h264")
    assert (video["width"], video["height"]) == (1280, 720)
    assert float(probe["format"]["duration"]) == pytest.approx(CLIPS * 3.5, abs=0.1)

    # The completion webhook reached the receiver container, signed with the secret.
    def delivery():
        for line in stack.hooks.read_text().splitlines():
            record = json.loads(line)
            body = base64.b64decode(record["body"])
            if json.loads(body).get("request_id") == request_id:
                return record, body
        return None

    record, body = wait_for(delivery, 120, "the completion webhook")
    headers = {k.lower(): v for k, v in record["headers"].items()}
    document = json.loads(body)
    assert document["status"] == "complete" and document["video_url"] == row["video_url"]
    assert verify(stack.values["EXPORT_WEBHOOK_SECRET"], headers["x-export-timestamp"], body,
                  headers["x-export-signature"], now=time.time())  # fmt: skip
    assert not verify("another-secret", headers["x-export-timestamp"], body,
                      headers["x-export-signature"], now=time.time())  # fmt: skip
    assert stack.wait_row(request_id, lambda r: r["notified_status"] == "complete", 60,
                          "notified_status")  # fmt: skip


# ---- faults ------------------------------------------------------------------------------


def test_daemon_killed_mid_export_then_started(stack):
    request_id = request(stack, user="fault-daemon")
    row = stack.wait_row(request_id, encoding, 300, "encoding")
    daemon = stack.container("daemon")
    docker("kill", daemon)
    # The run's own container carries on without the daemon.
    assert stack.inspect(stack.run_container(row["run_id"]))["State"]["Running"]
    docker("start", daemon)
    row = stack.wait_finished(request_id)
    assert row["status"] == "complete", row["error_message"]
    wait_for(lambda: stack.health("daemon") == "healthy", 180, "the daemon to be healthy", 2)


def test_postgres_restarted_mid_export(stack):
    request_id = request(stack, user="fault-postgres")
    stack.wait_row(request_id, encoding, 300, "encoding")
    docker("restart", "-t", "10", stack.container("postgres"))
    wait_for(lambda: stack.health("postgres") == "healthy", 120, "PostgreSQL back", 1)
    row = stack.wait_finished(request_id)
    MEASURED["postgres_restart"] = {
        "status": row["status"],
        "retry_count": row["retry_count"],
        "steps_retried": [k for k, _ in stack.events(row["run_id"], "STEP_UP_FOR_RETRY")],
    }
    assert row["status"] == "complete", row["error_message"]


def test_run_container_killed_mid_encode(stack):
    request_id = request(stack, user="fault-run-kill")
    row = stack.wait_row(request_id, encoding, 300, "encoding")
    killed_run = row["run_id"]
    container = stack.run_container(killed_run)
    docker("kill", container)
    killed = time.monotonic()
    # Run monitoring sees the dead container and fails the run; the run retry (one,
    # dagster.yaml) starts a new run, or the failure reaches the row. Never stuck.
    row = stack.wait_finished(request_id, timeout_s=600)
    MEASURED["run_container_killed"] = {
        "status": row["status"],
        "retry_count": row["retry_count"],
        "kill_to_finished_s": round(time.monotonic() - killed, 1),
    }
    assert row["status"] in ("complete", "failed")
    if row["status"] == "failed":
        assert row["error_message"]
    else:
        assert row["run_id"] != killed_run and row["retry_count"] >= 1


def test_s3_stopped_for_30_s_during_the_upload(stack):
    before = video_keys(stack)
    request_id = request(stack, user="fault-s3")
    row = stack.wait_row(request_id, lambda r: r["run_id"] is not None, 300, "a run")

    def join_started():
        return any(
            "encoded_video_join" in key for key, _ in stack.events(row["run_id"], "STEP_START")
        )

    # The join writes the encoded video to S3, then publishing copies it: stop S3 there.
    wait_for(join_started, 600, "the join step", 0.2)
    minio = stack.container("minio")
    docker("stop", "-t", "10", minio)
    stopped = time.monotonic()
    time.sleep(max(0.0, 30 - (time.monotonic() - stopped)))  # the outage is 30 s long
    docker("start", minio)
    wait_for(lambda: stack.health("minio") == "healthy", 120, "the S3 server back", 1)
    row = stack.wait_finished(request_id)
    retried = [key for key, _ in stack.events(row["run_id"], "STEP_UP_FOR_RETRY")]
    MEASURED["s3_outage"] = {"status": row["status"], "steps_retried": retried}
    assert row["status"] == "complete", row["error_message"]
    # The outage was felt (a step failed on it and was retried) and outlived.
    assert retried, "no step met the outage: it missed the run"
    after = video_keys(stack)
    assert before <= after, "an object stored before the outage was lost"
    assert f"pipeline/videos/exp-{request_id}.mp4" in after


def test_cancel_stops_the_run_container(stack):
    request_id = request(stack, user="fault-cancel")
    row = stack.wait_row(request_id, encoding, 300, "encoding")
    container = stack.run_container(row["run_id"])
    asked = time.monotonic()
    stack.sql(f"UPDATE export_requests SET cancel_requested_at = now() WHERE id = {request_id}")
    wait_for(lambda: not stack.inspect(container)["State"]["Running"], 120,
             "the run container to stop", 0.5)  # fmt: skip
    stopped_s = time.monotonic() - asked
    row = stack.wait_finished(request_id, timeout_s=120)
    MEASURED["cancel_to_container_stopped_s"] = round(stopped_s, 1)
    assert row["status"] == "canceled"
    # README: within about 10 s (the cancel sensor's interval), then the run's own stop.
    assert stopped_s < 30
    assert f"pipeline/videos/exp-{request_id}.mp4" not in video_keys(stack)


def test_code_server_restarted_while_exports_are_queued(stack):
    first = request(stack, user="fault-code-server")
    second = request(stack, user="fault-code-server")
    stack.wait_row(first, lambda r: r["status"] == "processing", 300, "processing")
    stack.wait_row(second, lambda r: r["status"] == "queued", 120, "queued behind the first")
    restarted = time.monotonic()
    docker("restart", "-t", "20", stack.container("user_code"))
    wait_for(lambda: stack.health("user_code") == "healthy", 180, "the code server back", 1)
    back = time.monotonic() - restarted
    rows = [stack.wait_finished(first), stack.wait_finished(second)]
    MEASURED["code_server_restart"] = {"back_after_s": round(back, 1),
                                       "statuses": [r["status"] for r in rows]}  # fmt: skip
    assert [r["status"] for r in rows] == ["complete", "complete"], [
        r["error_message"] for r in rows
    ]


# ---- segments in step containers --------------------------------------------------------------


def test_segments_run_in_step_containers(stack):
    stack.write_env(EXPORT_EXECUTOR="docker")
    stack.timings["up_again_with_docker_executor_s"] = stack.up()
    before = set(docker("ps", "-aq", "--filter", f"label={RUN_LABEL}").split())
    inserted = time.monotonic()
    request_id = request(stack, user="steps")
    # FFmpeg's first frames of each segment: the first time its export_segments row is
    # past 0 (written twice a second while it renders), read every 0.2 s in PostgreSQL.
    poll = (
        "for i in $(seq 1 3000); do "
        f'psql -U postgres -d {stack.values["EXPORT_DB_NAME"]} -At -c "SELECT '
        "extract(epoch from clock_timestamp()), segment FROM export_segments "
        f'WHERE request_id = {request_id} AND done > 0"; '
        f's=$(psql -U postgres -d {stack.values["EXPORT_DB_NAME"]} -At -c "SELECT status '
        f'FROM export_requests WHERE id = {request_id}"); '
        "case $s in complete|failed|canceled) break;; esac; sleep 0.2; done"
    )
    poller = subprocess.Popen(["docker", "exec", stack.container("postgres"), "sh", "-c", poll],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    row = stack.wait_finished(request_id)
    took = time.monotonic() - inserted
    out, _ = poller.communicate(timeout=60)
    assert row["status"] == "complete", row["error_message"]
    first_frame: dict[int, float] = {}
    for line in out.splitlines():
        ts, _, segment = line.partition("|")
        first_frame.setdefault(int(segment), float(ts))

    launched = dict(stack.events(row["run_id"], "STEP_WORKER_STARTING"))
    started = dict(stack.events(row["run_id"], "STEP_START"))
    segment_steps = [k for k in launched if "encoded_video_segment[" in k]
    # the audio track and one step per segment (EXPORT_SEGMENTS_PER_STEP auto: 1)
    assert len(segment_steps) == CLIPS + 1, sorted(launched)
    # every step of the run in a container of its own, with the operator's settings
    containers = set(docker("ps", "-aq", "--filter", f"label={RUN_LABEL}").split()) - before
    step_keys = {}
    for container in containers:
        env = stack.env_of(container)
        if "DAGSTER_RUN_STEP_KEY" in env:
            step_keys[env["DAGSTER_RUN_STEP_KEY"]] = container
            operator_settings_in(stack, container)
    assert set(step_keys) == set(launched), "a step ran without a container of its own"

    per_step = {}
    for key in sorted(launched):
        entry = {"start_up_s": round(started[key] - launched[key], 2)}
        match = re.search(r"segment_(\d+)\]", key)
        index = int(match.group(1)) if match else (CLIPS if key.endswith("[audio]") else None)
        if index is not None and index in first_frame:
            entry["first_frame_s"] = round(first_frame[index] - launched[key], 2)
        per_step[key] = entry
    start_ups = [e["start_up_s"] for e in per_step.values()]
    frames = [e["first_frame_s"] for k, e in per_step.items() if "first_frame_s" in e]
    assert len(frames) >= CLIPS, f"first frames seen for {len(frames)} segment steps"
    MEASURED["docker_executor"] = {
        "insert_to_complete_s": round(took, 1),
        "steps": per_step,
        "start_up_median_s": round(statistics.median(start_ups), 2),
        "start_up_max_s": round(max(start_ups), 2),
        "first_frame_median_s": round(statistics.median(frames), 2),
        "first_frame_max_s": round(max(frames), 2),
    }
    assert all(0 < s < 120 for s in start_ups)


# ---- the end ----------------------------------------------------------------------------------


def test_down_leaves_no_container_network_or_volume(stack):
    left = stack.down()
    new_volumes = set(docker("volume", "ls", "-q").split()) - stack.volumes_before
    assert left == {"containers": [], "networks": [], "volumes": []}, left
    assert new_volumes == set(), new_volumes
