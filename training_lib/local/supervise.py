"""Keep one service process running: restart it when it dies, stop it when told to.

``python -m training_lib.local.supervise -- airflow scheduler --skip-serve-logs`` is what systemd's
``Restart=always`` or docker-compose's ``restart: unless-stopped`` do in production, for the embedded
stack: a scheduler that exits on a database error (e.g. SQLAlchemy's ``StaleDataError`` under SQLite
contention) is started again after a back-off instead of leaving the platform without a scheduler.

- The child runs in the supervisor's session, so stopping the supervisor's recorded PID (SIGTERM) stops
  the child as well: the signal is forwarded and the supervisor waits for the child to end.
- Restarts back off (1 s, 2 s, 4 s … ``MAX_BACKOFF_S``); after ``MAX_RESTARTS`` restarts within
  ``WINDOW_S`` the supervisor gives up and exits with the child's code (a crash loop must be seen).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from types import FrameType

MAX_BACKOFF_S = 30.0
MAX_RESTARTS = 5
WINDOW_S = 300.0


class Supervisor:
    """Run ``argv``, restart it when it exits unasked, forward SIGTERM/SIGINT to it."""

    def __init__(self, argv: list[str], *, max_restarts: int = MAX_RESTARTS, window_s: float = WINDOW_S) -> None:
        self.argv = argv
        self.name = " ".join([Path(argv[0]).name, *argv[1:2]])
        self.max_restarts, self.window_s = max_restarts, window_s
        self.stopping = False
        self.child: subprocess.Popen | None = None
        self.restarts: deque[float] = deque()

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM if signum == signal.SIGTERM else signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        backoff = 1.0
        while True:
            started = time.monotonic()
            self.child = subprocess.Popen(self.argv)
            code = self.child.wait()
            if self.stopping:
                return code
            now = time.monotonic()
            if now - started > self.window_s:
                backoff = 1.0  # it ran fine for a while: this is a new incident
            self.restarts.append(now)
            while self.restarts and now - self.restarts[0] > self.window_s:
                self.restarts.popleft()
            if len(self.restarts) > self.max_restarts:
                _say(f"{self.name} exited with code {code}, {len(self.restarts) - 1} restarts before: giving up")
                return code or 1
            _say(f"{self.name} exited with code {code}; restarting in {backoff:.0f}s")
            deadline = time.monotonic() + backoff
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.2)
            if self.stopping:
                return code
            backoff = min(backoff * 2, MAX_BACKOFF_S)


def _say(message: str) -> None:
    print(f"[supervise] {time.strftime('%Y-%m-%dT%H:%M:%S')} {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m training_lib.local.supervise -- <command> [args…]", file=sys.stderr)
        return 2
    return Supervisor(args).run()


if __name__ == "__main__":
    sys.exit(main())
