"""training_lib.local.supervise with real processes: restart on death, stop on SIGTERM, give up on a crash loop."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from training_lib.local.processes import process_alive, session_members

REPO = Path(__file__).resolve().parents[2]


def _supervise(tmp_path: Path, script: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "training_lib.local.supervise", "--", sys.executable, "-c", script],
        cwd=REPO,
        stdout=(tmp_path / "out.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def _children(supervisor: subprocess.Popen) -> list[int]:
    return [pid for pid in session_members(supervisor.pid) if pid != supervisor.pid]


def test_a_child_that_dies_is_restarted_and_sigterm_stops_both(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    script = f"import time; open({str(starts)!r}, 'a').write('x'); time.sleep(600)"
    supervisor = _supervise(tmp_path, script)
    try:
        [first] = _wait_for(lambda: _children(supervisor))
        _wait_for(lambda: starts.exists())
        subprocess.run(["kill", "-9", str(first)], check=True)  # the child dies on its own
        [second] = _wait_for(lambda: [p for p in _children(supervisor) if p != first] or None)
        assert second != first
        _wait_for(lambda: starts.read_text() == "xx")  # the new child is a new process: it starts again
        assert "exited with code -9; restarting" in (tmp_path / "out.log").read_text()
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) is not None
        _wait_for(lambda: not process_alive(second))
    finally:
        if supervisor.poll() is None:
            supervisor.kill()


def test_a_crash_loop_makes_the_supervisor_give_up(tmp_path: Path) -> None:
    supervisor = _supervise(tmp_path, "import sys; sys.exit(3)")
    # 1+2+4+8+16 s of back-off before the sixth exit: it gives up with the child's code
    assert supervisor.wait(timeout=90) == 3
    assert "giving up" in (tmp_path / "out.log").read_text()
