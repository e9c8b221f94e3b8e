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


class AirflowApi:
    """Authenticated calls to one API server (``base_url``, e.g. ``http://127.0.0.1:8080``)."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self._token: str | None = None

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True, retries: int | None = None) -> Any:
        """One API call. A busy database (on SQLite while the scheduler writes: 503 "database is locked", or 500
        "Database error" when the request's audit-log write loses the lock) and a server too slow to answer
        within the timeout are retried after a pause, ``retries`` times (default: 3 for a GET, none otherwise:
        only calls that are safe to repeat are retried)."""
        retries = (3 if method == "GET" else 0) if retries is None else retries
        for attempt in range(retries + 1):
            try:
                return self._request_once(method, path, body, auth)
            except AirflowApiError as exc:
                if not exc.database_busy or attempt == retries:
                    raise
            except (TimeoutError, urllib.error.URLError) as exc:
                if isinstance(exc, urllib.error.URLError) and not isinstance(exc.reason, TimeoutError):
                    raise  # refused, unknown host: not a slow server
                if attempt == retries:
                    raise TimeoutError(
                        f"{method} {path}: no answer within {self.timeout:.0f}s, {attempt + 1} tries"
                    ) from exc
            time.sleep(min(2.0 * (attempt + 1), 10.0))
        raise AssertionError("unreachable")

    def _request_once(self, method: str, path: str, body: Any, auth: bool) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise AirflowApiError(method, path, exc.code, exc.read().decode(errors="replace")) from exc
        return json.loads(raw) if raw else None

    def token(self) -> str:
        if self._token is None:
            answer = self._request(
                "POST", "/auth/token", {"username": self.username, "password": self.password}, auth=False
            )
            self._token = answer["access_token"]
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
