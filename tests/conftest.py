"""Shared fixtures: a real local stack (moto S3 server, MLflow server, Airflow) on free ports."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from training_lib.config import Settings, StackSettings, load_settings, load_stack_settings
from training_lib.local.airflow_client import AirflowClient

REPO = Path(__file__).resolve().parents[1]

# Keep library telemetry and progress bars out of test runs.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server (the real S3 HTTP API) on a free loopback port, for one test module."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        _, port = server.get_host_and_port()
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class StackHandle:
    """A local stack started by a test: its platform settings, its own settings, environment and CLI."""

    settings: Settings
    stack: StackSettings
    env: dict[str, str]
    log: Path

    def cli(self, command: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "training_lib.local.stack", command, "--timeout", "180"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )
        with self.log.open("a") as handle:
            handle.write(f"$ stack {command}  (exit {result.returncode}, {time.monotonic() - started:.1f}s)\n")
            handle.write(result.stdout + result.stderr)
        return result

    def airflow(self) -> AirflowClient:
        return AirflowClient(self.stack.airflow_api_url, self.stack.airflow_admin_user, self.airflow_password())

    def airflow_password(self) -> str:
        import json

        passwords = self.stack.state_dir / "airflow" / "simple_auth_manager_passwords.json.generated"
        return json.loads(passwords.read_text())[self.stack.airflow_admin_user]


def private_state_dir(prefix: str) -> Path:
    """A state folder the postgres OS user can reach (PostgreSQL refuses root; pytest's tmp is root-only)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


def stack_environment(state_dir: Path) -> dict[str, str]:
    """Environment for a private stack: its own state folder, free ports for every service, and Airflow's
    metadata in the stack's own PostgreSQL (SQLite's database lock stalled the API server for a minute at a
    time when two test stacks shared the machine); ``FRAUD_AIRFLOW_DATABASE=sqlite`` keeps `make up`'s."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FRAUD_", "AIRFLOW", "MLFLOW_"))}
    env.update(
        {
            "FRAUD_STATE_DIR": str(state_dir),
            "FRAUD_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
            "FRAUD_AIRFLOW_API_URL": f"http://127.0.0.1:{free_port()}",
            "FRAUD_BUCKET": "fraud-platform-test",
            "FRAUD_AIRFLOW_DATABASE": "postgres",
            "FRAUD_POSTGRES_PORT": str(free_port()),
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
    )
    env.pop("AWS_ACCESS_KEY_ID", None)
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    return env


@pytest.fixture(scope="module")
def local_stack(request: pytest.FixtureRequest) -> Iterator[StackHandle]:
    """Start the whole stack for a test module; always stopped (by PID) at the end, its state folder deleted
    unless a test of the module failed.

    A module can set ``STACK_SETTINGS = {"FRAUD_…": "…"}`` to run its stack with other settings.
    """
    state_dir = private_state_dir(f"fraud-{request.module.__name__.rsplit('.', 1)[-1]}-")
    env = stack_environment(state_dir)
    env.update(getattr(request.module, "STACK_SETTINGS", {}))
    handle = start_stack(env, state_dir)
    failed_before = request.session.testsfailed
    try:
        yield handle
    finally:
        if request.session.testsfailed > failed_before:
            try:
                _report_stack(request, handle, state_dir)
            except Exception as exc:  # a report that fails must not keep the stack running
                print(f"(no stack report: {exc!r})")
        stop_stack(handle, state_dir, keep_state=request.session.testsfailed > failed_before)


def stop_stack(handle: StackHandle, state_dir: Path, *, keep_state: bool = False) -> None:
    """``stack down``; the state folder is deleted unless ``keep_state`` or the stop failed: then its PID files
    stay (the processes can still be stopped by PID) and the terminal says so."""
    down = handle.cli("down")
    if down.returncode != 0:
        print(f"\n--- stack down failed (exit {down.returncode}); state kept in {state_dir}\n"
              f"{down.stdout[-3000:]}{down.stderr[-3000:]}")  # fmt: skip
    elif not keep_state:
        shutil.rmtree(state_dir, ignore_errors=True)


def _report_stack(request: pytest.FixtureRequest, handle: StackHandle, state_dir: Path, lines: int = 25) -> None:
    """After a failure in a module: the stack's process status and the end of each service's log, on the
    terminal (CI keeps nothing else of a test's stack)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    write = reporter.write_line if reporter else print
    status = handle.cli("status", timeout=60)
    write(f"\n--- stack status after a failure in {request.module.__name__}\n{status.stdout}{status.stderr}")
    for path in sorted((state_dir / "logs").glob("*.log")):
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        write(f"--- last {len(tail)} lines of {path.name}\n" + "\n".join(line[:400] for line in tail))


def start_stack(env: dict[str, str], state_dir: Path) -> StackHandle:
    """``stack up`` with this environment; fails the test with the services' log tails if it does not come up."""
    handle = StackHandle(load_settings(env), load_stack_settings(env), env, state_dir / "stack-cli.log")
    result = handle.cli("up")
    if result.returncode != 0:
        handle.cli("down")
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted((state_dir / "logs").glob("*.log")))
        pytest.fail(f"stack up failed:\n{result.stdout}\n{result.stderr}\n{logs}")
    return handle


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Expose each phase's report on the test item (``item.rep_call``), e.g. to keep screenshots on failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
