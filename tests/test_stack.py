"""Stack process management without services: PID records, stopping by PID, loopback checks, conflicts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest

from training_lib.config import load_settings
from training_lib.stack import (
    LocalStack,
    Service,
    StackError,
    StackPaths,
    airflow_aws_connection,
    listening_addresses,
    process_alive,
    recorded_pid,
    session_members,
    start_process,
    stop_processes,
)


@pytest.fixture
def paths(tmp_path) -> StackPaths:
    stack_paths = StackPaths(load_settings({"FRAUD_STATE_DIR": str(tmp_path)}))
    stack_paths.create()
    return stack_paths


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_stop_by_pid_also_stops_children_left_in_the_session(paths: StackPaths) -> None:
    # The parent ignores nothing, but leaves a grandchild behind when it exits.
    service = Service("sleeper", ["bash", "-c", "sleep 300 & wait"], {"PATH": "/usr/bin:/bin"})
    pid = start_process(service, paths)
    assert recorded_pid(paths.pid_file("sleeper")) == pid
    assert _wait_for(lambda: len(session_members(pid)) == 2)
    members = session_members(pid)
    outcome = stop_processes(["sleeper"], paths)
    assert outcome["sleeper"].startswith("stopped PID")
    assert not [member for member in members if process_alive(member)]
    assert not paths.pid_file("sleeper").exists()


def test_a_process_ignoring_sigterm_is_killed(paths: StackPaths) -> None:
    ready = paths.root / "trap-installed"
    loop = f"trap '' TERM; touch {ready}; while true; do sleep 0.1; done"
    pid = start_process(Service("stubborn", ["bash", "-c", loop], {"PATH": "/usr/bin:/bin"}), paths)
    assert _wait_for(ready.exists)
    outcome = stop_processes(["stubborn"], paths, timeout=1.0)
    assert outcome["stubborn"].startswith("killed")
    assert not process_alive(pid)


def test_a_recycled_pid_is_never_signalled(paths: StackPaths) -> None:
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        # A stale PID file that names a live process started at another time (a recycled PID).
        paths.pid_file("ghost").write_text(json.dumps({"pid": bystander.pid, "start_time": "1", "argv": ["x"]}))
        assert recorded_pid(paths.pid_file("ghost")) is None
        assert stop_processes(["ghost"], paths)["ghost"] == "not running"
        assert bystander.poll() is None, "a process we did not start was signalled"
    finally:
        bystander.kill()
        bystander.wait()


def test_listening_addresses_tell_loopback_from_all_interfaces() -> None:
    with socket.socket() as loopback, socket.socket() as everywhere:
        loopback.bind(("127.0.0.1", 0))
        loopback.listen()
        everywhere.bind(("0.0.0.0", 0))  # noqa: S104 - the case the check must catch
        everywhere.listen()
        found = listening_addresses([os.getpid()])
        assert ("127.0.0.1", loopback.getsockname()[1]) in found
        assert ("0.0.0.0", everywhere.getsockname()[1]) in found  # noqa: S104


def test_up_refuses_a_port_taken_by_someone_else(tmp_path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = load_settings(
            {
                "FRAUD_STATE_DIR": str(tmp_path),
                "FRAUD_EMBEDDED_SERVICES": "s3",
                "FRAUD_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            }
        )
        with pytest.raises(StackError, match=f"port {port}"):
            LocalStack(settings, echo=lambda _line: None).up(timeout=5)
    assert not list((tmp_path / "pids").glob("*.pid"))


def test_aws_connection_follows_the_settings() -> None:
    moto = json.loads(airflow_aws_connection(load_settings({})))
    assert moto["extra"]["endpoint_url"] == "http://127.0.0.1:5001"
    assert moto["login"] == "fraud-local"
    aws = json.loads(
        airflow_aws_connection(load_settings({"FRAUD_S3_ENDPOINT_URL": "", "FRAUD_EMBEDDED_SERVICES": "airflow"}))
    )
    assert "endpoint_url" not in aws["extra"]
    assert "login" not in aws  # boto3's own credential chain


def test_reset_deletes_mlflow_and_airflow_state_but_keeps_the_login(tmp_path) -> None:
    stack = LocalStack(load_settings({"FRAUD_STATE_DIR": str(tmp_path)}), echo=lambda _: None)
    stack.paths.create()
    (stack.paths.mlflow / "mlflow.db").write_text("runs")
    (stack.paths.airflow_home / "airflow.db").write_text("dag runs")
    stack.paths.airflow_passwords.write_text(json.dumps({"admin": "kept"}))
    (stack.paths.secrets / "card_token.key").write_text("k")
    stack.reset()
    assert not (stack.paths.mlflow / "mlflow.db").exists()
    assert not (stack.paths.airflow_home / "airflow.db").exists()
    assert json.loads(stack.paths.airflow_passwords.read_text()) == {"admin": "kept"}
    assert (stack.paths.secrets / "card_token.key").read_text() == "k"


def test_reset_refuses_while_the_stack_runs(tmp_path) -> None:
    stack = LocalStack(load_settings({"FRAUD_STATE_DIR": str(tmp_path)}), echo=lambda _: None)
    stack.paths.create()
    service = Service("s3", ["sleep", "30"], dict(os.environ), None, None)
    start_process(service, stack.paths)
    try:
        with pytest.raises(StackError, match="stop the stack"):
            stack.reset()
    finally:
        stop_processes(["s3"], stack.paths)
