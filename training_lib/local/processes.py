"""Processes by PID: start one service in its own session with a PID file, probe it, stop it by that PID.

Every process is recorded in a PID file under ``<state_dir>/pids`` together with its start time, and stopped
by that PID only (never by name or process group); after a parent exits, any child it left behind in its
session is stopped by PID as well. Processes are inspected through psutil, so this works on Linux and macOS.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from training_lib.local.environment import LOOPBACK, StackError, StackPaths


@dataclass
class Service:
    """One long-running process of the stack."""

    name: str
    argv: list[str]
    env: dict[str, str]
    health: Callable[[], bool] | None = None
    port: int | None = None


# --------------------------------------------------------------------------- health checks


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local URLs
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def airflow_health(api_url: str, timeout: float = 2.0) -> dict[str, str]:
    """Component name → status from ``/api/v2/monitor/health`` (empty when it does not answer)."""
    try:
        with urllib.request.urlopen(f"{api_url}/api/v2/monitor/health", timeout=timeout) as response:  # noqa: S310
            body = json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return {}
    return {name: (part or {}).get("status", "unknown") for name, part in body.items() if isinstance(part, dict)}


def airflow_healthy(api_url: str) -> bool:
    health = airflow_health(api_url)
    needed = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return bool(health) and all(health.get(name) == "healthy" for name in needed)


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


# --------------------------------------------------------------------------- processes by PID


def process_start_time(pid: int) -> str | None:
    """When the process started (seconds since the epoch, as ``"%.2f"``), or None when there is no such process.

    The PID file records this string and ``recorded_pid`` compares it, so both go through this function.
    """
    if pid <= 0:
        return None
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:  # NoSuchProcess (ZombieProcess among them), AccessDenied
        return None


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # ZombieProcess among them
        return False
    except psutil.AccessDenied:
        return True  # it exists, it is just not ours to inspect


def session_members(session_id: int) -> list[int]:
    """PIDs of live processes in the given session (children a stopped parent left behind)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session_id and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (OSError, psutil.Error):  # gone meanwhile, or not ours to inspect
            continue
    return members


def listening_addresses(pids: list[int]) -> set[tuple[str, int]]:
    """(host, port) of every TCP socket in LISTEN state held by these processes or their session members."""
    members = {member for pid in pids for member in [pid, *session_members(pid)]}
    found = set()
    for pid in members:
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:  # gone meanwhile, or not ours to inspect
            continue
        found |= {(conn.laddr.ip, conn.laddr.port) for conn in connections if conn.status == psutil.CONN_LISTEN}
    return found


def read_pid_file(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def recorded_pid(path: Path) -> int | None:
    """The PID in a PID file if that very process (same start time) is still alive."""
    record = read_pid_file(path)
    if not record:
        return None
    pid = int(record["pid"])
    if process_alive(pid) and process_start_time(pid) == record.get("start_time"):
        return pid
    return None


def start_process(service: Service, paths: StackPaths) -> int:
    log = open(paths.log_file(service.name), "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        service.argv,
        env=service.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=paths.root,
        start_new_session=True,
    )
    log.close()
    record = {
        "pid": process.pid,
        "start_time": process_start_time(process.pid),
        "argv": service.argv,
        "started_at": time.time(),
    }
    paths.pid_file(service.name).write_text(json.dumps(record))
    return process.pid


def _signal_and_wait(pid: int, sig: int, timeout: float) -> bool:
    """Send ``sig`` (0: send nothing) and wait up to ``timeout`` seconds for the process to end."""
    try:
        if sig:
            os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.1)
    return not process_alive(pid)


def stop_processes(names: list[str], paths: StackPaths, timeout: float = 30.0) -> dict[str, str]:
    """Stop recorded processes by PID: SIGTERM to all, wait, SIGKILL what remains; then leftover children.

    Returns name -> what happened, for display.
    """
    targets: dict[str, int] = {}
    outcome: dict[str, str] = {}
    for name in names:
        pid = recorded_pid(paths.pid_file(name))
        if pid is None:
            paths.pid_file(name).unlink(missing_ok=True)
            outcome[name] = "not running"
        else:
            targets[name] = pid
    started = time.monotonic()
    for pid in targets.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for name, pid in targets.items():
        remaining = max(0.5, timeout - (time.monotonic() - started))
        how = "stopped" if _signal_and_wait(pid, 0, remaining) else None
        if how is None:
            how = "killed (SIGTERM ignored)" if _signal_and_wait(pid, signal.SIGKILL, 5) else None
        if how is None:
            raise StackError(f"{name}: PID {pid} did not stop, even after SIGKILL")
        leftovers = [child for child in session_members(pid) if child != pid]
        for child in leftovers:
            if not _signal_and_wait(child, signal.SIGTERM, 5):
                _signal_and_wait(child, signal.SIGKILL, 5)
        paths.pid_file(name).unlink(missing_ok=True)
        note = f" and {len(leftovers)} leftover child(ren)" if leftovers else ""
        outcome[name] = f"{how} PID {pid}{note} after {time.monotonic() - started:.1f}s"
    return outcome
