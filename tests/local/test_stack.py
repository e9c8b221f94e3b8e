"""Stack process management without services: PID records, stopping by PID, loopback checks, conflicts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from training_lib.config import load_settings, load_stack_settings
from training_lib.local.environment import (
    StackError,
    StackPaths,
    airflow_aws_connection,
    airflow_env,
    postgres_password,
    print_environment,
    redis_password,
)
from training_lib.local.processes import (
    Service,
    listening_addresses,
    process_alive,
    recorded_pid,
    session_members,
    start_process,
    stop_processes,
)
from training_lib.local.stack import LocalStack


@pytest.fixture
def paths(tmp_path) -> StackPaths:
    stack_paths = StackPaths(load_stack_settings({"FRAUD_STATE_DIR": str(tmp_path)}))
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
        settings = load_stack_settings(
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
    aws = json.loads(airflow_aws_connection(load_settings({"FRAUD_S3_ENDPOINT_URL": ""})))
    assert "endpoint_url" not in aws["extra"]
    assert "login" not in aws  # boto3's own credential chain


def test_reset_deletes_mlflow_and_airflow_state_but_keeps_the_login(tmp_path) -> None:
    stack = LocalStack(load_stack_settings({"FRAUD_STATE_DIR": str(tmp_path)}), echo=lambda _: None)
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
    stack = LocalStack(load_stack_settings({"FRAUD_STATE_DIR": str(tmp_path)}), echo=lambda _: None)
    stack.paths.create()
    service = Service("s3", ["sleep", "30"], dict(os.environ), None, None)
    start_process(service, stack.paths)
    try:
        with pytest.raises(StackError, match="stop the stack"):
            stack.reset()
    finally:
        stop_processes(["s3"], stack.paths)


# ---------------------------------------------------------------- the distributed topology's definition


def _distributed(tmp_path) -> LocalStack:
    settings = load_stack_settings({"FRAUD_STATE_DIR": str(tmp_path), "FRAUD_CELERY_WORKERS": "3"})
    return LocalStack(settings, echo=lambda _line: None)


def test_local_topology_stays_local_executor_on_sqlite(tmp_path) -> None:
    stack = LocalStack(load_stack_settings({"FRAUD_STATE_DIR": str(tmp_path)}), echo=lambda _line: None)
    assert list(stack.catalog.groups()) == ["s3", "mlflow", "airflow"]
    env = airflow_env(stack.settings, stack.paths)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env  # Airflow's default: SQLite in AIRFLOW_HOME
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] == "training_lib.config.AIRFLOW_SQLITE_ARGS"


def test_distributed_topology_uses_postgres_redis_and_celery_workers(tmp_path) -> None:
    stack = _distributed(tmp_path)
    groups = stack.catalog.groups()
    assert list(groups) == ["postgres", "redis", "s3", "mlflow", "airflow"]
    env = airflow_env(stack.settings, stack.paths)
    password = postgres_password(stack.paths)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert (
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"postgresql+psycopg2://fraud:{password}@127.0.0.1:5432/airflow"
    )
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")  # psycopg2, not psycopg 3
    assert env["AIRFLOW__CELERY__BROKER_URL"] == f"redis://:{redis_password(stack.paths)}@127.0.0.1:6379/0"
    # the SQLite lock-wait arguments would break a PostgreSQL connection
    assert not [key for key in env if key.startswith("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS")]
    workers = [s for s in groups["airflow"] if s.name.startswith("airflow-worker")]
    assert [s.name for s in workers] == ["airflow-worker1", "airflow-worker2", "airflow-worker3"]
    for number, worker in enumerate(workers, start=1):
        command = worker.argv[worker.argv.index("--") + 1 :]
        assert command[1:3] == ["celery", "worker"] and "--skip-serve-logs" in command  # no log server on 0.0.0.0
        assert command[command.index("--celery-hostname") + 1] == f"worker{number}@%h"
    mlflow = groups["mlflow"][0]
    assert "--backend-store-uri" not in mlflow.argv and password not in " ".join(mlflow.argv)
    assert mlflow.env["MLFLOW_BACKEND_STORE_URI"].endswith("@127.0.0.1:5432/mlflow")
    postgres = groups["postgres"][0].argv
    assert postgres[postgres.index("-h") + 1] == "127.0.0.1" and password not in " ".join(postgres)


def test_environment_printout_holds_no_secret_values(tmp_path, capsys) -> None:
    stack = _distributed(tmp_path)
    print_environment(stack.settings, stack.paths)
    printed = capsys.readouterr().out
    for secret in (postgres_password(stack.paths), redis_password(stack.paths)):
        assert secret not in printed
    line = next(row for row in printed.splitlines() if "SQL_ALCHEMY_CONN_CMD" in row)
    secret_file = line.split("cat ", 1)[1].rstrip('"')
    assert (os.stat(secret_file).st_mode & 0o077) == 0
    expected = airflow_env(stack.settings, stack.paths)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert Path(secret_file).read_text() == expected
