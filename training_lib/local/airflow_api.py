"""Airflow's REST API v2 over plain HTTP: token auth, retries of a busy or slow server, polling.

No Airflow import, so it works against any Airflow 3 API server.
:class:`~training_lib.local.airflow_client.AirflowClient` builds on it the operations the demo and the tests use.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

TERMINAL_RUN_STATES = {"success", "failed"}


class AirflowApiError(RuntimeError):
    """The API answered with an error status; the message carries method, path, status and body."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:500]}")
        self.status = status
        self.database_busy = status == 503 or (status == 500 and "Database error" in body)
        self.retryable = self.database_busy or status in (502, 504)


SAFE_RETRIES = 4  # repeats of a call that is safe to repeat: 5 tries
MAX_PAUSE_S = 15.0


def retry_reason(exc: BaseException) -> str | None:
    """Why ``exc`` deserves another try of a call that is safe to repeat, or None when it is a final answer:
    a busy database or gateway (HTTP 500 "Database error", 502, 503, 504), a timeout (``TimeoutError`` is
    ``socket.timeout``; ``urlopen`` wraps one while connecting in a ``URLError``), a refused or dropped
    connection (a restarting server). An unknown host, a 4xx or any other error is final."""
    if isinstance(exc, AirflowApiError):
        return f"HTTP {exc.status}" if exc.retryable else None
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionError):
        return f"connection failed ({type(exc).__name__})"
    return None


class AirflowApi:
    """Authenticated calls to one API server (``base_url``, e.g. ``http://127.0.0.1:8080``).

    Each request waits ``timeout`` seconds for the server; a call that is retried ends within ``deadline``
    seconds of its start (no pause goes past it). ``sleep`` takes the pauses between tries (tests record them).
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        timeout: float = 30.0,
        *,
        deadline: float = 180.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self.deadline = deadline
        self.sleep = time.sleep if sleep is None else sleep
        self._token: str | None = None

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True, retries: int | None = None) -> Any:
        """One API call, repeated ``retries`` times at most (default: 4 for a GET, none otherwise: only the
        caller knows whether a write is safe to repeat) while :func:`retry_reason` names a reason, after
        pauses of 1, 2, 4 ... 15 s, each logged. Gives up before a pause would pass ``deadline``: then raises
        the last HTTP error (``AirflowApiError``), or ``TimeoutError`` naming the call, the tries and the
        last reason."""
        tries = 1 + ((SAFE_RETRIES if method == "GET" else 0) if retries is None else retries)
        token = self.token() if auth else None
        start = time.monotonic()
        for attempt in range(1, tries + 1):
            timeout = min(self.timeout, max(self.deadline - (time.monotonic() - start), 0.1))
            try:
                return self._request_once(method, path, body, timeout, token=token)
            except (AirflowApiError, OSError) as exc:  # URLError, TimeoutError, ConnectionError are OSErrors
                reason = retry_reason(exc)
                if reason is None:
                    raise
                pause, elapsed = min(2.0 ** (attempt - 1), MAX_PAUSE_S), time.monotonic() - start
                if attempt == tries or elapsed + pause >= self.deadline:
                    if isinstance(exc, AirflowApiError):
                        raise
                    message = f"{method} {path}: no answer after {attempt} tries in {elapsed:.0f}s (last: {reason})"
                    raise TimeoutError(message) from exc
                log.warning("%s %s: %s; try %d of %d, again in %gs", method, path, reason, attempt, tries, pause)
                self.sleep(pause)
        raise AssertionError("unreachable")

    def _request_once(self, method: str, path: str, body: Any, timeout: float, *, token: str | None = None) -> Any:
        """One HTTP exchange, waiting ``timeout`` seconds; an error status raises ``AirflowApiError``."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise AirflowApiError(method, path, exc.code, exc.read().decode(errors="replace")) from exc
        return json.loads(raw) if raw else None

    def token(self) -> str:
        """The access token, fetched once (a new token is harmless: the POST is retried 3 times)."""
        if self._token is None:
            credentials = {"username": self.username, "password": self.password}
            self._token = self._request("POST", "/auth/token", credentials, auth=False, retries=3)["access_token"]
        return self._token

    def get(self, path: str, *, auth: bool = True) -> Any:
        """A GET of any API path (reads are retried when the server is busy or slow)."""
        return self._request("GET", path, auth=auth)

    def _get_or_none(self, path: str) -> Any:
        try:
            return self._request("GET", path)
        except AirflowApiError as exc:
            if exc.status == 404:
                return None
            raise


def poll(
    probe: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 1.0,
    diagnosis: Callable[[], str] | None = None,
) -> Any:
    """``probe()`` every ``interval`` seconds until it returns something truthy; on timeout the error says what
    was awaited and, with ``diagnosis``, what was still missing."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f": {diagnosis()}" if diagnosis else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)
