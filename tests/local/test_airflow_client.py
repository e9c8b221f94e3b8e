"""AirflowClient against a tiny local HTTP server: token, retries of a busy SQLite (503) or a slow server, errors."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from training_lib.local import airflow_client
from training_lib.local.airflow_api import AirflowApiError
from training_lib.local.airflow_client import AirflowClient

CLIENT_TIMEOUT_S = 0.3
SLOW_S = 0.6  # longer than the client waits


class FakeAirflow(BaseHTTPRequestHandler):
    busy_answers = 0  # how many 503s the next backfill POST gets before it succeeds
    audit_failures = 0  # how many 500 "Database error"s (the audit-log INSERT lost the SQLite lock) first
    running_answers = 0  # how many 409s ("already a running backfill") before it succeeds
    slow_answers = 0  # how many requests for runs answer only after the client gave up
    slow_patches = 0  # how many PATCHes take effect but answer only after the client gave up
    slow_tokens = 0  # how many token requests answer only after the client gave up
    slow_events = 0  # how many asset events are created but answered only after the client gave up
    runs: ClassVar[dict[str, dict]] = {}  # logical date -> run created by a manual trigger
    bodies: ClassVar[list[dict]] = []  # bodies of the clears and asset events received
    calls: ClassVar[list[str]] = []
    paused: ClassVar[dict[str, bool]] = {}  # dag id -> is_paused
    paused_at_backfill: ClassVar[list[bool]] = []  # the DAG's paused state at each backfill POST
    unpause_fails = False  # PATCH is_paused=false answers 400

    def _slow(self, counter: str = "slow_answers") -> bool:
        if getattr(FakeAirflow, counter) > 0:
            setattr(FakeAirflow, counter, getattr(FakeAirflow, counter) - 1)
            time.sleep(SLOW_S)
            return True
        return False

    def _answer(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        FakeAirflow.calls.append(f"POST {self.path}")
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/auth/token":
            if not self._slow("slow_tokens"):
                self._answer(201, {"access_token": "t0ken"})
        elif self.path == "/api/v2/backfills":
            FakeAirflow.paused_at_backfill.append(FakeAirflow.paused.get(body["dag_id"], False))
            if FakeAirflow.audit_failures > 0:
                FakeAirflow.audit_failures -= 1
                self._answer(500, {"detail": {"reason": "Database error", "statement": "hidden"}})
            elif FakeAirflow.busy_answers > 0:
                FakeAirflow.busy_answers -= 1
                self._answer(503, {"detail": "Database is locked."})
            elif FakeAirflow.running_answers > 0:
                FakeAirflow.running_answers -= 1
                self._answer(409, {"detail": f"There is already a running backfill for dag {body['dag_id']}"})
            else:
                self._answer(200, {"id": 1, "dag_id": body["dag_id"], "from_date": body["from_date"]})
        elif self.path == "/api/v2/dags/d/dagRuns":
            if body["logical_date"] in FakeAirflow.runs:
                self._answer(409, {"detail": "DAG run with that logical date already exists"})
                return
            run = {"dag_run_id": f"manual__{len(FakeAirflow.runs)}", "logical_date": body["logical_date"]}
            FakeAirflow.runs[body["logical_date"]] = run
            if not self._slow():  # created, but the answer comes too late: lost
                self._answer(200, run)
        elif self.path == "/api/v2/dags/d/clearTaskInstances":
            if FakeAirflow.busy_answers > 0:
                FakeAirflow.busy_answers -= 1
                self._answer(503, {"detail": "Database is locked."})
            else:
                FakeAirflow.bodies.append(body)
                self._answer(200, {"task_instances": [{"task_id": "t", "only_failed": body["only_failed"]}]})
        elif self.path == "/api/v2/assets/events":
            FakeAirflow.bodies.append(body)
            if not self._slow("slow_events"):
                self._answer(200, {"asset_id": body["asset_id"], "extra": body["extra"]})
        else:
            self._answer(404, {"detail": "not found"})

    def do_GET(self) -> None:
        FakeAirflow.calls.append(f"GET {self.path}")
        if self._slow():
            return
        if self.path.startswith("/api/v2/dags/") and self.path.count("/") == 4:
            dag_id = self.path.rsplit("/", 1)[1]
            self._answer(200, {"dag_id": dag_id, "is_paused": FakeAirflow.paused.get(dag_id, False)})
        elif self.path.startswith("/api/v2/dags/d/dagRuns?"):
            query = parse_qs(urlsplit(self.path).query)
            runs = [run for day, run in FakeAirflow.runs.items() if day == query["logical_date_gte"][0]]
            self._answer(200, {"dag_runs": runs, "total_entries": len(runs)})
        elif self.path == "/api/v2/dags/d/dagRuns/r%2F1/taskInstances":
            tis = [
                {"task_id": "plan", "map_index": -1, "state": "success"},
                {"task_id": "score_shard", "map_index": 0, "state": "success"},
                {"task_id": "score_shard", "map_index": 1, "state": "failed"},
            ]
            self._answer(200, {"task_instances": tis, "total_entries": 3})
        elif self.path.startswith("/api/v2/assets?"):
            assets = [{"id": 7, "name": "drift_detected_old"}, {"id": 8, "name": "drift_detected"}]
            self._answer(200, {"assets": assets, "total_entries": 2})
        elif self.path.startswith("/api/v2/dags/d/dagRuns/r%2F1/taskInstances/t/xcomEntries/return_value?"):
            self._answer(200, {"key": "return_value", "value": {"seconds": 1.5, "query": urlsplit(self.path).query}})
        else:
            self._answer(404, {"detail": "not found"})

    def do_PATCH(self) -> None:
        FakeAirflow.calls.append(f"PATCH {self.path}")
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        dag_id = self.path.rsplit("/", 1)[1]
        if FakeAirflow.unpause_fails and not body["is_paused"]:
            self._answer(400, {"detail": "unpause refused"})
            return
        FakeAirflow.paused[dag_id] = body["is_paused"]
        if not self._slow("slow_patches"):  # paused, but the answer comes too late: lost
            self._answer(200, {"dag_id": dag_id, "is_paused": body["is_paused"]})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def pauses() -> list[float]:
    """The pauses the client took between tries (recorded, not slept)."""
    return []


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAirflow)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    FakeAirflow.calls = []
    FakeAirflow.busy_answers = FakeAirflow.running_answers = FakeAirflow.audit_failures = FakeAirflow.slow_answers = 0
    FakeAirflow.slow_patches = FakeAirflow.slow_tokens = FakeAirflow.slow_events = 0
    FakeAirflow.runs = {}
    FakeAirflow.bodies = []
    FakeAirflow.paused, FakeAirflow.paused_at_backfill = {}, []
    FakeAirflow.unpause_fails = False
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def client(server: ThreadingHTTPServer, pauses: list[float]) -> AirflowClient:
    return AirflowClient(_url(server), "admin", "pw", timeout=CLIENT_TIMEOUT_S, sleep=pauses.append)


def test_a_busy_database_is_retried(client: AirflowClient) -> None:
    FakeAirflow.busy_answers = 2
    backfill = client.create_backfill("batch_score", "2026-01-05", "2026-01-06", at="02:00:00")
    assert backfill["from_date"] == "2026-01-05T02:00:00Z"
    assert FakeAirflow.calls.count("POST /api/v2/backfills") == 3


def test_a_database_that_stays_busy_fails_with_the_answer(client: AirflowClient) -> None:
    FakeAirflow.busy_answers = 100
    with pytest.raises(AirflowApiError, match=r"POST /api/v2/backfills -> HTTP 503: .*Database is locked"):
        client.create_backfill("batch_score", "2026-01-05", "2026-01-06")
    assert FakeAirflow.calls.count("POST /api/v2/backfills") == 11


def test_a_half_failed_creation_is_retried_until_the_left_over_backfill_completes(client: AirflowClient) -> None:
    """What Airflow on SQLite answered under backfill load: 503 "Database is locked", 409 (the partial backfill
    it left behind), 500 "Database error" (the audit-log write); the backfill is created in the end."""
    FakeAirflow.busy_answers, FakeAirflow.running_answers = 1, 2
    FakeAirflow.audit_failures = 1
    assert client.create_backfill("transactions_daily", "2026-04-01", "2026-04-30")["id"] == 1
    assert FakeAirflow.calls.count("POST /api/v2/backfills") == 5


def test_the_dag_is_paused_while_its_backfill_is_created(client: AirflowClient) -> None:
    """So that the scheduler never starts a run of a half-made backfill that Airflow may delete again."""
    FakeAirflow.busy_answers = 1
    client.create_backfill("transactions_daily", "2026-04-01", "2026-04-30")
    assert FakeAirflow.paused_at_backfill == [True, True]
    assert FakeAirflow.paused == {"transactions_daily": False}  # unpaused again after


def test_a_failed_unpause_is_raised_but_never_hides_the_backfill_error(client: AirflowClient) -> None:
    FakeAirflow.unpause_fails = True
    with pytest.raises(AirflowApiError, match="unpause refused"):  # created, but the DAG is left paused: say so
        client.create_backfill("transactions_daily", "2026-04-01", "2026-04-02")
    FakeAirflow.paused, FakeAirflow.busy_answers = {}, 100
    with pytest.raises(AirflowApiError, match="Database is locked"):  # the creation's own error comes first
        client.create_backfill("transactions_daily", "2026-04-01", "2026-04-02")


def test_a_paused_dag_stays_paused_after_its_backfill(client: AirflowClient) -> None:
    FakeAirflow.paused = {"batch_score": True}
    client.create_backfill("batch_score", "2026-01-05", "2026-01-06")
    assert FakeAirflow.paused_at_backfill == [True]
    assert not any(call.startswith("PATCH") for call in FakeAirflow.calls)


def test_other_errors_are_not_retried(client: AirflowClient) -> None:
    with pytest.raises(AirflowApiError) as raised:
        client.trigger("nope")
    assert raised.value.status == 404
    assert FakeAirflow.calls.count("POST /api/v2/dags/nope/dagRuns") == 1


def test_a_backfill_still_marked_running_is_waited_for(client: AirflowClient) -> None:
    FakeAirflow.running_answers = 3
    assert client.create_backfill("transactions_daily", "2026-02-03", "2026-02-03")["id"] == 1
    assert FakeAirflow.calls.count("POST /api/v2/backfills") == 4


def test_a_backfill_that_stays_running_fails_after_the_wait(client: AirflowClient) -> None:
    FakeAirflow.running_answers = 100
    with pytest.raises(AirflowApiError, match="already a running backfill"):
        client.create_backfill("transactions_daily", "2026-02-03", "2026-02-03", wait_for_running_s=0)
    assert FakeAirflow.calls.count("POST /api/v2/backfills") == 1


def test_a_slow_read_is_retried(client: AirflowClient) -> None:
    FakeAirflow.runs = {"2026-01-02T00:00:00Z": {"dag_run_id": "manual__0"}}
    FakeAirflow.slow_answers = 2
    assert client.run_at("d", "2026-01-02T00:00:00Z") == {"dag_run_id": "manual__0"}
    assert sum(call.startswith("GET /api/v2/dags/d/dagRuns?") for call in FakeAirflow.calls) == 3


def test_a_read_that_stays_slow_fails_naming_the_call(client: AirflowClient, pauses: list[float]) -> None:
    FakeAirflow.slow_answers = 10
    pattern = r"GET /api/v2/dags/d/dagRuns\?\S*: no answer after 5 tries in \d+s \(last: timed out\)"
    with pytest.raises(TimeoutError, match=pattern):
        client.run_at("d", "2026-01-02T00:00:00Z")
    assert pauses == [1, 2, 4, 8]


def test_a_slow_pause_is_retried_with_backoff_and_each_retry_logged(
    client: AirflowClient, pauses: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    """The PATCH that failed a test session under load: the API server waited on SQLite past the timeout."""
    caplog.set_level(logging.WARNING, logger="training_lib.local.airflow_api")
    FakeAirflow.slow_patches = 3
    assert client.set_paused("labels_daily", True) == {"dag_id": "labels_daily", "is_paused": True}
    assert FakeAirflow.calls.count("PATCH /api/v2/dags/labels_daily") == 4
    assert pauses == [1, 2, 4]
    assert [record.getMessage() for record in caplog.records] == [
        f"PATCH /api/v2/dags/labels_daily: timed out; try {i} of 5, again in {pause}s"
        for i, pause in [(1, 1), (2, 2), (3, 4)]
    ]


def test_a_server_that_stays_slow_fails_within_the_deadline(server: ThreadingHTTPServer) -> None:
    """No pause goes past the deadline: after 0.3 s + 1 s + 0.3 s the next pause (2 s) would end at 3.6 s."""
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    client = AirflowClient(_url(server), "admin", "pw", timeout=CLIENT_TIMEOUT_S, deadline=2.5, sleep=sleep)
    FakeAirflow.slow_patches = 100
    start = time.monotonic()
    with pytest.raises(TimeoutError) as raised:
        client.set_paused("labels_daily", True)
    assert time.monotonic() - start < 2.5
    expected = r"PATCH /api/v2/dags/labels_daily: no answer after 2 tries in 2s \(last: timed out\)"
    assert re.fullmatch(expected, str(raised.value))
    assert slept == [1] and FakeAirflow.calls.count("PATCH /api/v2/dags/labels_daily") == 2


def test_a_slow_token_request_is_retried_three_times(client: AirflowClient, pauses: list[float]) -> None:
    FakeAirflow.slow_tokens = 3
    assert client.token() == "t0ken"
    assert pauses == [1, 2, 4]
    FakeAirflow.slow_tokens = 4
    client._token = None
    with pytest.raises(TimeoutError, match=r"POST /auth/token: no answer after 4 tries"):
        client.token()


def test_a_refused_connection_is_retried_then_named(pauses: list[float]) -> None:
    """A restarting API server refuses connections for a while; a port nothing listens on, for good."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    client = AirflowClient(f"http://127.0.0.1:{port}", "admin", "pw", timeout=CLIENT_TIMEOUT_S, sleep=pauses.append)
    client._token = "t0ken"
    with pytest.raises(TimeoutError, match=r"GET /api/v2/dags/d: no answer after 5 tries .*ConnectionRefusedError"):
        client.get_dag("d")
    assert pauses == [1, 2, 4, 8]


def test_a_trigger_whose_answer_was_lost_returns_the_run_it_created(client: AirflowClient) -> None:
    FakeAirflow.slow_answers = 1  # the first POST creates the run, then answers too late
    run = client.trigger("d", logical_date="2026-01-02T00:00:00Z")
    assert run["dag_run_id"] == "manual__0" and len(FakeAirflow.runs) == 1  # one run, not two
    posts = [call for call in FakeAirflow.calls if call == "POST /api/v2/dags/d/dagRuns"]
    assert len(posts) == 2


def test_a_trigger_without_a_logical_date_is_never_repeated(client: AirflowClient, pauses: list[float]) -> None:
    FakeAirflow.slow_answers = 1
    with pytest.raises(TimeoutError, match=r"POST /api/v2/dags/d/dagRuns: no answer after 1 tries"):
        client.trigger("d", logical_date=None)
    assert FakeAirflow.calls.count("POST /api/v2/dags/d/dagRuns") == 1 and pauses == []


def test_only_a_clear_of_failed_tasks_is_repeated_on_a_busy_answer(client: AirflowClient) -> None:
    FakeAirflow.busy_answers = 1
    with pytest.raises(AirflowApiError) as raised:
        client.clear_run("d", "r/1")
    assert raised.value.status == 503 and FakeAirflow.bodies == []
    FakeAirflow.busy_answers = 2
    cleared = client.clear_run("d", "r/1", only_failed=True)
    assert cleared == [{"task_id": "t", "only_failed": True}]
    assert FakeAirflow.bodies == [{"dag_run_id": "r/1", "dry_run": False, "only_failed": True, "reset_dag_runs": True}]
    assert FakeAirflow.calls.count("POST /api/v2/dags/d/clearTaskInstances") == 4


def test_a_write_not_marked_safe_to_repeat_is_never_repeated(client: AirflowClient, pauses: list[float]) -> None:
    """An asset event whose answer was lost may exist: a second POST would start a second run downstream."""
    FakeAirflow.slow_events = 1
    with pytest.raises(TimeoutError, match=r"POST /api/v2/assets/events: no answer after 1 tries"):
        client.create_asset_event("drift_detected")
    assert len(FakeAirflow.bodies) == 1 and pauses == []


def test_an_asset_event_goes_to_the_asset_of_exactly_that_name(client: AirflowClient) -> None:
    event = client.create_asset_event("drift_detected", {"dt": "2026-03-12"})
    assert event == {"asset_id": 8, "extra": {"dt": "2026-03-12"}}
    assert "GET /api/v2/assets?name_pattern=drift_detected" in FakeAirflow.calls


def test_an_xcom_of_a_mapped_task_is_read_by_map_index(client: AirflowClient) -> None:
    value = client.xcom("d", "r/1", "t", map_index=3)
    assert value["seconds"] == 1.5 and value["query"] == "map_index=3&deserialize=true"


def test_task_states_name_each_mapped_task_by_its_index(client: AirflowClient) -> None:
    states = client.task_states("d", "r/1")
    assert states == {"plan": "success", "score_shard[0]": "success", "score_shard[1]": "failed"}


def test_each_day_waits_for_its_newest_backfill_run_to_finish_and_to_have_started_again() -> None:
    def run(day: str, state: str, start: str, run_type: str = "backfill") -> dict:
        return {"logical_date": f"{day}T00:00:00Z", "state": state, "start_date": start, "run_type": run_type}

    newest_first = [
        run("2026-01-02", "running", "2026-03-01T10:05"),
        run("2026-01-01", "success", "2026-03-01T10:04"),
        run("2026-01-01", "success", "2026-03-01T09:00"),  # an older backfill of the same day
        run("2026-01-03", "success", "2026-03-01T08:00", run_type="manual"),
    ]
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    latest = airflow_client.latest_backfill_runs(newest_first, days)
    assert [(r["logical_date"][:10], r["start_date"]) for r in latest] == [
        ("2026-01-01", "2026-03-01T10:04"),
        ("2026-01-02", "2026-03-01T10:05"),
    ]
    assert airflow_client.pending_backfill_days(latest, days, {}) == [
        "2026-01-02: running",
        "2026-01-03: no backfill run",
    ]
    rerun = airflow_client.pending_backfill_days(latest[:1], days[:1], {"2026-01-01": "2026-03-01T10:04"})
    assert rerun == ["2026-01-01: success, not started again (start_date 2026-03-01T10:04)"]
    assert airflow_client.pending_backfill_days(latest[:1], days[:1], {"2026-01-01": "2026-03-01T09:00"}) == []
