"""A small client of Airflow's REST API v2, for the demo driver and the tests: DAGs, runs, tasks, backfills, Assets.

Plain HTTP (:mod:`training_lib.local.airflow_api`): no Airflow import, so it works against any Airflow 3 API server.
"""

from __future__ import annotations

import logging
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from training_lib.local.airflow_api import SAFE_RETRIES, TERMINAL_RUN_STATES, AirflowApi, AirflowApiError, poll

log = logging.getLogger(__name__)


class AirflowClient(AirflowApi):
    """The operations on DAGs, runs, task instances, backfills and Asset events that the demo and tests use."""

    def plugins(self) -> list[dict]:
        """The plugins the API server loaded, with their views."""
        return self._request("GET", "/api/v2/plugins")["plugins"]

    # ---- DAGs and runs
    def get_dag(self, dag_id: str) -> dict:
        return self._request("GET", f"/api/v2/dags/{dag_id}")

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> dict:
        """Wait until the DAG processor has parsed ``dag_id`` (new files appear after a refresh)."""
        return poll(lambda: self._get_or_none(f"/api/v2/dags/{dag_id}"), timeout, f"DAG {dag_id} to be parsed")

    def set_paused(self, dag_id: str, paused: bool) -> dict:
        """Pause or unpause ``dag_id`` (safe to repeat: retried when the server is busy or slow)."""
        return self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused}, retries=SAFE_RETRIES)

    def trigger(
        self, dag_id: str, conf: dict | None = None, logical_date: str | None = None, *, busy_retries: int = 0
    ) -> dict:
        """A manual run. With a ``logical_date`` the call is safe to repeat (a DAG has one run per logical date):
        a busy or slow API server is retried, and a run an unanswered attempt created is returned. Without one,
        a busy server is retried only ``busy_retries`` times (the caller accepts that a retry may add a run)."""
        path, body = f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": logical_date, "conf": conf or {}}
        if logical_date is None:
            return self._request("POST", path, body, retries=busy_retries)
        try:
            return self._request("POST", path, body, retries=3)
        except AirflowApiError as exc:
            existing = self.run_at(dag_id, logical_date) if exc.status == 409 else None
            if existing is None:
                raise
            return existing

    def run_at(self, dag_id: str, logical_date: str) -> dict | None:
        """The run of ``dag_id`` with this logical date (ISO, e.g. 2026-01-02T00:00:00Z), if there is one."""
        query = urllib.parse.urlencode({"logical_date_gte": logical_date, "logical_date_lte": logical_date})
        runs = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?{query}")["dag_runs"]
        return runs[0] if runs else None

    def get_run(self, dag_id: str, run_id: str) -> dict:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}")

    def list_runs(self, dag_id: str, limit: int = 100) -> list[dict]:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit={limit}&order_by=-run_after")["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        quoted = urllib.request.quote(run_id, safe="")
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances")["task_instances"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        """Each task's state in one run: ``task_id`` → state; a mapped task as ``task_id[map_index]``."""
        return {
            ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]": ti["state"]
            for ti in self.task_instances(dag_id, run_id)
        }

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600.0) -> dict:
        """Poll a run until it succeeds or fails; returns the final run record."""

        def finished() -> dict | None:
            run = self.get_run(dag_id, run_id)
            return run if run["state"] in TERMINAL_RUN_STATES else None

        return poll(finished, timeout, f"{dag_id} run {run_id} to finish")

    def clear_run(
        self, dag_id: str, run_id: str, *, only_failed: bool = False, busy_retries: int | None = None
    ) -> list[dict]:
        """Clear the task instances of a run (the UI's "Clear" on a run; ``only_failed``: "Clear failed tasks"),
        which then run again. A busy or slow server is retried ``busy_retries`` times; by default only a clear
        of the failed tasks is, which is safe to repeat (the tasks it cleared are no longer failed; a repeat
        may then answer fewer of them). A full clear that took effect but went unanswered, repeated, would
        clear tasks that had already started again."""
        body = {"dag_run_id": run_id, "dry_run": False, "only_failed": only_failed, "reset_dag_runs": True}
        path = f"/api/v2/dags/{dag_id}/clearTaskInstances"
        retries = (SAFE_RETRIES if only_failed else 0) if busy_retries is None else busy_retries
        return self._request("POST", path, body, retries=retries)["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """The deserialized value of one XCom of a task instance (``map_index`` of a mapped task)."""
        quoted = urllib.request.quote(run_id, safe="")
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/xcomEntries/{key}"
            f"?map_index={map_index}&deserialize=true"
        )
        return self._request("GET", path)["value"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> Any:
        """The log of one try of a task: the API's structured events (``content``)."""
        quoted = urllib.request.quote(run_id, safe="")
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/logs/{try_number}?full_content=true"
        return self._request("GET", path)["content"]

    def rerun(self, dag_id: str, run_id: str, timeout: float = 600.0) -> dict:
        """Clear a finished run and wait until it has run again; returns the final run record."""
        before = {ti["task_id"]: ti.get("try_number") or 0 for ti in self.task_instances(dag_id, run_id)}
        self.clear_run(dag_id, run_id)

        def finished() -> dict | None:
            run = self.get_run(dag_id, run_id)
            if run["state"] not in TERMINAL_RUN_STATES:
                return None
            tries = {ti["task_id"]: ti.get("try_number") or 0 for ti in self.task_instances(dag_id, run_id)}
            ran_again = all(tries.get(task, 0) > count for task, count in before.items() if count)
            return run if ran_again else None

        return poll(finished, timeout, f"{dag_id} run {run_id} to run again", interval=2.0)

    # ---- backfills
    def create_backfill(
        self,
        dag_id: str,
        from_date: str,
        to_date: str,
        *,
        max_active_runs: int = 1,
        reprocess: str = "completed",
        at: str = "00:00:00",
        wait_for_running_s: float = 300.0,
    ) -> dict:
        """Backfill ``dag_id`` over [from_date, to_date] (ISO dates, ``at`` the UTC time of day of the logical
        dates, e.g. "02:00:00" for a 02:00 schedule); ``reprocess``: none|failed|completed.

        On SQLite, Airflow creates (or re-queues) a backfill's runs one savepoint at a time, each visible at once,
        and when the database turns busy half-way it deletes the runs it made or re-queued: a scheduler that had
        started one of them exits (foreign-key / deleted-row errors) and a crash loop stops the platform. So the
        DAG is paused while its backfill is created, and its paused state restored after: the scheduler leaves
        the runs alone until the backfill is whole.

        A busy database or a slow server is retried (10 times, within the client's ``deadline``), which is safe
        because a DAG has one backfill at a time. A creation that failed half-way (or went unanswered) can leave
        its backfill behind, and the scheduler marks a finished backfill complete only every 30 s: while the API
        answers 409 "already a running backfill", this waits (``wait_for_running_s`` in all) and tries again;
        with the default ``reprocess="completed"`` the new backfill re-runs the days the left-over one ran,
        which changes nothing (re-runs are idempotent)."""
        body = {
            "dag_id": dag_id,
            "from_date": f"{from_date}T{at}Z",
            "to_date": f"{to_date}T{at}Z",
            "max_active_runs": max_active_runs,
            "reprocess_behavior": reprocess,
        }
        deadline = time.monotonic() + wait_for_running_s
        while True:
            hold = not self.get_dag(dag_id)["is_paused"]  # read again each try: a pause by someone else stays
            try:
                if hold:
                    self.set_paused(dag_id, True)
                return self._request("POST", "/api/v2/backfills", body, retries=10)
            except AirflowApiError as exc:
                running = exc.status == 409 and "already a running backfill" in str(exc)
                if not running or time.monotonic() > deadline:
                    raise
            finally:
                if hold:  # also lets a left-over backfill finish while this waits
                    self._unpause(dag_id, raising=sys.exc_info()[1] is None)
            self.sleep(5.0)

    def _unpause(self, dag_id: str, *, raising: bool) -> None:
        """Unpause ``dag_id`` after its backfill; a failure is raised only when no earlier error is on its way
        (it must not hide that one), and logged either way: a DAG left paused runs no backfill."""
        try:
            self.set_paused(dag_id, False)
        except (AirflowApiError, TimeoutError, urllib.error.URLError):
            log.warning("could not unpause %s after creating its backfill: unpause it in the UI", dag_id)
            if raising:
                raise

    def backfill_runs(self, dag_id: str, days: list[str]) -> list[dict]:
        """The latest backfill run of each of ``days`` (ISO dates), in logical-date order."""
        runs = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=1000&order_by=-run_after")["dag_runs"]
        return latest_backfill_runs(runs, days)

    def wait_for_backfill(
        self, dag_id: str, days: list[str], timeout: float = 900.0, *, rerun_of: list[dict] | None = None
    ) -> list[dict]:
        """Wait until the backfill runs of all ``days`` have finished; returns them in day order.

        ``rerun_of``: the runs before a re-processing backfill; each day's run must have started again since.
        """
        started_before = {(run.get("logical_date") or "")[:10]: run.get("start_date") or "" for run in rerun_of or []}

        def pending(runs: list[dict]) -> list[str]:
            return pending_backfill_days(runs, days, started_before)

        def finished() -> list[dict] | None:
            runs = self.backfill_runs(dag_id, days)
            return None if pending(runs) else runs

        def diagnosis() -> str:
            try:
                waiting = pending(self.backfill_runs(dag_id, days))
                backfills = self._request("GET", f"/api/v2/backfills?dag_id={dag_id}&limit=100")["backfills"]
                paused = self.get_dag(dag_id)["is_paused"]
            except (AirflowApiError, TimeoutError, urllib.error.URLError) as exc:
                return f"no diagnosis: {exc}"
            keys = ("id", "from_date", "to_date", "completed_at", "is_paused", "reprocess_behavior")
            rows = [{k: b.get(k) for k in keys} for b in backfills]
            return f"{len(waiting)} day(s) pending: {waiting[:10]}; DAG paused: {paused}; backfills: {rows}"

        return poll(
            finished, timeout, f"backfill of {dag_id} for {days[0]}..{days[-1]}", interval=2.0, diagnosis=diagnosis
        )

    # ---- Assets
    def queued_asset_events(self, dag_id: str) -> list[dict]:
        """Asset events waiting to start a run of ``dag_id`` (its asset-triggered schedule)."""
        return self._request("GET", f"/api/v2/dags/{dag_id}/assets/queuedEvents")["queued_events"]

    def create_asset_event(self, asset_name: str, extra: dict | None = None) -> dict:
        """An event of the Asset named ``asset_name``, as the UI's "Create Asset Event" makes it."""
        query = urllib.parse.urlencode({"name_pattern": asset_name})
        (asset,) = [a for a in self._request("GET", f"/api/v2/assets?{query}")["assets"] if a["name"] == asset_name]
        return self._request("POST", "/api/v2/assets/events", {"asset_id": asset["id"], "extra": extra or {}})

    def asset_events(self, *, source_dag_id: str | None = None, asset_name: str | None = None) -> list[dict]:
        """Asset events, oldest first, optionally only those of one source DAG and/or one asset name."""
        query = "limit=1000&order_by=timestamp"
        if source_dag_id:
            query += f"&source_dag_id={source_dag_id}"
        events = self._request("GET", f"/api/v2/assets/events?{query}")["asset_events"]
        return [event for event in events if asset_name is None or event.get("name") == asset_name]


def latest_backfill_runs(runs: list[dict], days: list[str]) -> list[dict]:
    """The newest backfill run of each of ``days`` among ``runs`` (newest first), in logical-date order."""
    latest: dict[str, dict] = {}
    for run in runs:
        day = (run.get("logical_date") or "")[:10]
        if run.get("run_type") == "backfill" and day in days and day not in latest:
            latest[day] = run
    return [latest[day] for day in sorted(latest)]


def pending_backfill_days(runs: list[dict], days: list[str], started_before: dict[str, str]) -> list[str]:
    """What each unfinished day of ``days`` waits for: no run yet, a run not finished, or (a re-processing
    backfill) a run that has not started again since ``started_before[day]``; [] when all are done."""
    by_day = {(run.get("logical_date") or "")[:10]: run for run in runs}
    waiting = []
    for day in days:
        run = by_day.get(day)
        if run is None:
            waiting.append(f"{day}: no backfill run")
        elif run["state"] not in TERMINAL_RUN_STATES:
            waiting.append(f"{day}: {run['state']}")
        elif (run.get("start_date") or "") <= started_before.get(day, ""):
            waiting.append(f"{day}: {run['state']}, not started again (start_date {run.get('start_date')})")
    return waiting
