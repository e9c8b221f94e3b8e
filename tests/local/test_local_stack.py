"""The embedded stack for real: S3 (moto server), MLflow server, Airflow; started, used, stopped by PID.

The tests in this module run in order against one stack; the last one stops it.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time

import pytest

from training_lib.lake.objects import s3_client
from training_lib.local.airflow_api import AirflowApiError
from training_lib.local.airflow_client import AirflowClient
from training_lib.local.environment import StackPaths
from training_lib.local.processes import (
    airflow_health,
    listening_addresses,
    process_alive,
    read_pid_file,
    recorded_pid,
    session_members,
)

pytestmark = pytest.mark.integration

SERVICES = ["s3", "mlflow", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"]


def _pids(stack) -> dict[str, int | None]:
    paths = StackPaths(stack.stack)
    return {name: recorded_pid(paths.pid_file(name)) for name in SERVICES}


def test_every_service_has_a_live_pid_file(local_stack) -> None:
    pids = _pids(local_stack)
    assert all(pids.values()), pids
    assert len(set(pids.values())) == len(SERVICES)


def test_services_listen_on_loopback_only(local_stack) -> None:
    addresses = listening_addresses([pid for pid in _pids(local_stack).values() if pid])
    ports = {port for _host, port in addresses}
    settings = local_stack.settings
    urls = (settings.s3_endpoint_url, settings.mlflow_tracking_uri, local_stack.stack.airflow_api_url)
    for url in urls:
        assert int(url.rsplit(":", 1)[1]) in ports, f"{url} is not among our listening sockets {addresses}"
    assert {host for host, _port in addresses} == {"127.0.0.1"}, addresses
    # Nothing else listens, not even on loopback: the scheduler's and triggerer's log servers
    # ([logging] worker_log_server_port 8793 / trigger_log_server_port 8794, which bind every interface)
    # and the scheduler's health server are off; the execution API is served by the API server itself.
    assert ports == {int(url.rsplit(":", 1)[1]) for url in urls}, addresses


def test_s3_object_round_trip_through_boto3(local_stack) -> None:
    client = s3_client(local_stack.settings)
    bucket = local_stack.settings.bucket
    client.put_object(Bucket=bucket, Key="tests/hello.txt", Body=b"card fraud platform")
    assert client.get_object(Bucket=bucket, Key="tests/hello.txt")["Body"].read() == b"card fraud platform"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="tests/")["Contents"]]
    assert keys == ["tests/hello.txt"]


def test_mlflow_run_with_artifact_stored_in_s3(local_stack, tmp_path) -> None:
    import mlflow
    from mlflow import MlflowClient

    settings = local_stack.settings
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment_id = client.create_experiment("stack-integration")
    artifact = tmp_path / "note.json"
    artifact.write_text(json.dumps({"hello": "mlflow"}))
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_param("alpha", 0.5)
        mlflow.log_metric("pr_auc", 0.87)
        mlflow.log_artifact(str(artifact))
    stored = client.get_run(run.info.run_id)
    assert stored.data.params == {"alpha": "0.5"}
    assert stored.data.metrics == {"pr_auc": 0.87}
    # The server proxies artifacts into the platform bucket (--artifacts-destination s3://…).
    listed = s3_client(settings).list_objects_v2(Bucket=settings.bucket, Prefix="mlflow/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert any(key.endswith(f"{run.info.run_id}/artifacts/note.json") for key in keys), keys


def test_airflow_reports_every_component_healthy(local_stack) -> None:
    health = airflow_health(local_stack.stack.airflow_api_url)
    assert {name: health.get(name) for name in ("metadatabase", "scheduler", "triggerer", "dag_processor")} == {
        "metadatabase": "healthy",
        "scheduler": "healthy",
        "triggerer": "healthy",
        "dag_processor": "healthy",
    }


def test_airflow_api_rejects_calls_without_a_token(local_stack) -> None:
    anonymous = AirflowClient(local_stack.stack.airflow_api_url, "admin", "not-the-password")
    with pytest.raises(AirflowApiError) as error:
        anonymous.get("/api/v2/dags", auth=False)
    assert error.value.status == 401
    with pytest.raises(AirflowApiError) as error:
        anonymous.token()
    assert error.value.status == 401


def test_airflow_execution_api_rejects_missing_forged_and_user_tokens(local_stack) -> None:
    """The execution API (what task processes call; it hands out connections and variables) is mounted on
    the API server: no token, a token signed with another key and a user's REST token are all refused."""
    import time
    import urllib.error
    import urllib.request

    import jwt

    base = local_stack.stack.airflow_api_url

    def status(path: str, token: str | None = None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(base + path, headers=headers)  # noqa: S310 - the local stack
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    assert status("/execution/health") == 200  # mounted and answering: the refusals below are not 404s
    secrets = ["/execution/connections/aws_default", "/execution/variables/any", "/execution/task-instances/count"]
    assert {path: status(path) for path in secrets} == dict.fromkeys(secrets, 401)
    user_token = local_stack.airflow().token()
    assert status("/api/v2/dags", user_token) == 200
    assert status(secrets[0], user_token) == 403  # a user's token is no task identity
    claims = {"sub": "admin", "iat": int(time.time()), "nbf": int(time.time()), "exp": int(time.time()) + 600}
    forged = jwt.encode(claims, "not-the-stack-secret-" * 4, algorithm="HS512")
    assert status("/api/v2/dags", forged) in (401, 403)
    assert status(secrets[0], forged) in (401, 403)


def test_fraud_models_page_needs_a_login_and_renders_before_any_model(local_stack) -> None:
    import urllib.error
    import urllib.request

    page = f"{local_stack.stack.airflow_api_url}/fraud-models/"
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(page, timeout=60)  # noqa: S310 - the local stack
    assert error.value.code in (401, 403)
    client = local_stack.airflow()
    request = urllib.request.Request(page, headers={"Authorization": f"Bearer {client.token()}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
        html = response.read().decode()
    assert "<h1>Fraud models: " in html
    assert '<section class="card" data-alias="champion"><h2>champion</h2><p>none</p>' in html
    plugins = {p["name"]: p for p in client.plugins()}
    (view,) = plugins["fraud_models"]["external_views"]
    assert view["name"] == "Fraud models" and view["url_route"] == "fraud-models"


def test_platform_health_dag_runs_through_the_scheduler(local_stack) -> None:
    settings = local_stack.settings
    client = local_stack.airflow()
    client.wait_for_dag("platform_health", timeout=120)
    client.set_paused("platform_health", False)
    run = client.trigger("platform_health")
    final = client.wait_for_run("platform_health", run["dag_run_id"], timeout=300)
    states = {ti["task_id"]: ti["state"] for ti in client.task_instances("platform_health", run["dag_run_id"])}
    assert final["state"] == "success", states
    assert states == {"s3": "success", "mlflow": "success"}
    # The probe object was deleted again: the health check leaves nothing behind.
    leftover = s3_client(settings).list_objects_v2(Bucket=settings.bucket, Prefix="_health/")
    assert leftover.get("KeyCount", 0) == 0


def test_api_writes_wait_out_a_busy_metadata_database(local_stack) -> None:
    """Another writer holding SQLite's lock for 8 s (a scheduler loop under backfill load) delays an API
    write instead of failing it: sqlite3's default 5 s lock wait made POST /backfills return HTTP 500."""
    client = local_stack.airflow()
    client.wait_for_dag("platform_health", timeout=120)
    client.token()  # log in before the lock is taken
    database = sqlite3.connect(
        StackPaths(local_stack.stack).airflow_home / "airflow.db",
        timeout=30,
        isolation_level=None,
        check_same_thread=False,
    )
    database.execute("BEGIN IMMEDIATE")  # the write lock, as a long scheduler transaction holds it
    started = time.monotonic()
    releaser = threading.Timer(8.0, database.rollback)
    releaser.start()
    try:
        dag = client.set_paused("platform_health", True)
    finally:
        releaser.join()
        database.close()
    assert dag["is_paused"] is True
    assert time.monotonic() - started >= 7.5  # it really waited for the lock
    client.set_paused("platform_health", False)


def test_status_reports_healthy(local_stack) -> None:
    # a snapshot: on 2 loaded cores a scheduler heartbeat can be late for a moment, so ask up to 4 times
    for _attempt in range(4):
        result = local_stack.cli("status")
        if result.returncode == 0:
            break
        time.sleep(15)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "NOT healthy" not in result.stdout
    assert "listening  : 127.0.0.1:" in result.stdout


def test_up_again_is_a_no_op(local_stack) -> None:
    before = _pids(local_stack)
    result = local_stack.cli("up")
    assert result.returncode == 0, result.stderr
    assert _pids(local_stack) == before
    assert "started PID" not in result.stdout


def test_down_stops_every_process_we_started(local_stack) -> None:
    paths = StackPaths(local_stack.stack)
    records = {name: read_pid_file(paths.pid_file(name)) for name in SERVICES}
    pids = [record["pid"] for record in records.values() if record]
    assert len(pids) == len(SERVICES)
    result = local_stack.cli("down")
    assert result.returncode == 0, result.stderr
    assert not [pid for pid in pids if process_alive(pid)]
    assert not [member for pid in pids for member in session_members(pid)]
    assert not list(paths.pids.glob("*.pid"))
    for url in (local_stack.settings.mlflow_tracking_uri, local_stack.stack.airflow_api_url):
        port = int(url.rsplit(":", 1)[1])
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    assert local_stack.cli("status").returncode == 1
