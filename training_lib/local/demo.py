"""The demo: simulated nights through the real Airflow scheduler, a fraud change the platform heals, a summary.

``python -m training_lib.local.demo`` (``make demo``) resets and starts the local stack with the demo's scenario
settings, then replays the days night by night, in the order real nights follow each other:

1. the simulator lands the day's transactions and the labels confirmed that day in ``landing/``, and the
   day's runs of ``transactions_daily`` and ``labels_daily`` are triggered (quality gate, quarantine, drift
   report; the ``drift_detected`` / ``new_labels`` Assets they emit start ``retrain`` on their own);
2. the demo waits until ``retrain`` has no queued Asset events and no active run, as the 02:00 scoring
   comes after the night's retrains;
3. once a champion exists, the day's ``batch_score`` run (its 02:00 run): predictions with the champion,
   then realized quality of the days whose labels matured; a champion that got worse on them triggers a
   retrain (``drift_detected``, reason ``performance``);
4. the next night starts once the day's scoring has resolved its model, so no day is ever scored by a
   model trained on it.

From ``change_day`` the scenario's fraud changes (card testing: bursts of tiny online amounts, which the
first champions never saw): realized PR-AUC falls, a retrain that has the change's matured labels learns it,
the gate promotes it on days it was not fitted on, and the later days recover. Nothing here calls platform
functions directly: every step is a DAG run scheduled by Airflow. The summary is read back from the lake,
the registry's audit log and the Airflow API.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from training_lib.config import Settings
from training_lib.lake.layout import (
    LANDING_LABELS,
    LANDING_TRANSACTIONS,
    VALIDATED_TRANSACTIONS,
    partition_prefix,
)
from training_lib.lake.storage import Lake
from training_lib.local.airflow_api import TERMINAL_RUN_STATES
from training_lib.local.airflow_client import AirflowClient
from training_lib.local.demo_plan import FAST, FULL, DemoPlan, demo_settings
from training_lib.local.demo_readback import DemoReadback
from training_lib.local.demo_summary import format_summary
from training_lib.simulation.simulator import Simulator

INGESTION_DAGS = ("transactions_daily", "labels_daily")
DEMO_DAGS = (*INGESTION_DAGS, "retrain", "batch_score", "rollback_model")
SCORING_TIME = "02:00:00"  # batch_score runs at 02:00 for the day that ended (its logical date)
PROGRESS_EVERY_S = 15.0
POLL_S = 3.0  # the API server is shared with the tasks: poll gently


class DemoFailed(RuntimeError):
    """A DAG run of the demo failed; the message names the run and where to look."""


@dataclass
class Night:
    """One simulated day: the run ids of its DAG runs and their final states."""

    day: date
    run_ids: dict[str, str] = field(default_factory=dict)  # dag_id -> run id
    states: dict[str, str] = field(default_factory=dict)  # dag_id -> final state, once finished
    published: bool = False  # its validated partition is in the lake
    scored: bool | None = None  # decided when it is published: scored iff a champion exists then
    settled: bool = False  # its ingestion finished and, after that, no retrain was running or queued

    def finished(self, *dag_ids: str) -> bool:
        return all(dag_id in self.states for dag_id in dag_ids)


def logical_date(dag_id: str, day: date) -> str:
    """The logical date of the manual run that processes ``day`` (its data interval starts on ``day``).

    A manual run's data interval is the last whole period before its logical date: 00:00 of the next day for
    the ingestion DAGs, 02:00 of the next day for batch_score (its nightly run for the day that ended)."""
    at = SCORING_TIME if dag_id == "batch_score" else "00:00:00"
    return f"{(day + timedelta(days=1)).isoformat()}T{at}Z"


class DemoDriver:
    """Drives the DAGs night by night through the Airflow API and prints progress."""

    def __init__(
        self,
        settings: Settings,
        client: AirflowClient,
        plan: DemoPlan,
        echo: Callable[[str], None] = print,
        timeout_s: float = 2400.0,
    ) -> None:
        self.settings = settings
        self.client = client
        self.plan = plan
        self.echo = echo
        self.lake = Lake(settings)
        self.read = DemoReadback(settings, client, self.lake)
        self.simulator = Simulator(plan.simulation(settings.label_delay_days))
        self.timeout_s = timeout_s
        self.nights = [Night(day) for day in plan.dates]
        self.retrains_seen: set[str] = set()
        self.retrain_runs: list[dict] = []
        self.scoring_from: date | None = None  # the first day a champion scored
        self.started = time.monotonic()

    # ---- the replay
    def run(self) -> dict[str, Any]:
        started = self.started = time.monotonic()
        for dag_id in DEMO_DAGS:
            self.client.wait_for_dag(dag_id, timeout=180)
            self.client.set_paused(dag_id, False)
        self.echo(
            f"replaying {self.plan.days} nights from {self.plan.start}: card testing from"
            f" {self.plan.day(self.plan.change_day)}, labels {self.settings.label_delay_days} day(s) late"
        )
        self.follow(started)
        runs = {night.day: night.states for night in self.nights}
        summary = self.read.summary(self.plan, runs, time.monotonic() - started)
        self.lake.put_json(f"reports/demo/{self.plan.start.isoformat()}_{self.plan.days}d.json", summary)
        return summary

    def land(self, day: date) -> None:
        """The day's files arrive, as an upstream system would drop them."""
        self.lake.put_bytes(
            f"{partition_prefix(LANDING_TRANSACTIONS, day)}/transactions.csv", self.simulator.day_csv_bytes(day)
        )
        self.lake.put_bytes(f"{partition_prefix(LANDING_LABELS, day)}/labels.csv", self.simulator.labels_csv_bytes(day))

    def start(self, night: Night, dag_id: str) -> None:
        run = self.client.trigger(dag_id, logical_date=logical_date(dag_id, night.day))
        night.run_ids[dag_id] = run["dag_run_id"]

    def follow(self, started: float) -> None:
        """One poll at a time: record finished runs, then start what the night order allows."""
        last_note = time.monotonic()
        while True:
            self.poll_runs()
            retrain_busy = self.poll_retrains()
            for night in self.nights:
                night.settled = night.settled or (night.finished(*INGESTION_DAGS) and not retrain_busy)
            if self.advance(retrain_busy):
                continue  # something started: look again before sleeping
            if self.done() and not retrain_busy:
                return
            if time.monotonic() - started > self.timeout_s:
                raise TimeoutError(f"the demo did not finish within {self.timeout_s:.0f}s")
            if time.monotonic() - last_note > PROGRESS_EVERY_S:
                self.echo(self.progress(started))
                last_note = time.monotonic()
            time.sleep(POLL_S)

    def poll_runs(self) -> None:
        for night in self.nights:
            if night.run_ids and not night.published:
                night.published = self.lake.partition_exists(VALIDATED_TRANSACTIONS, night.day)
                if night.published:
                    night.scored = self.read.champion_version() is not None
            for dag_id, run_id in night.run_ids.items():
                if dag_id in night.states:
                    continue
                run = self.client.get_run(dag_id, run_id)
                if run["state"] not in TERMINAL_RUN_STATES:
                    continue
                night.states[dag_id] = run["state"]
                self.raise_on_failure([dag_id], [run])
                if dag_id == "batch_score":
                    self.echo(f"{self.clock()} [{night.day}] {self.read.describe_scoring(night.day, run['state'])}")
                elif night.finished(*INGESTION_DAGS):
                    self.echo(f"{self.clock()} [{night.day}] {self.read.describe_ingestion(night.day, night.states)}")

    def clock(self) -> str:
        """Seconds since the replay started, as a prefix of the progress lines."""
        return f"{time.monotonic() - self.started:5.0f}s"

    def poll_retrains(self) -> bool:
        """Report finished retrains; True while one runs or Asset events wait to start one."""
        runs = self.client.list_runs("retrain")
        for run in sorted(runs, key=lambda r: r["run_after"]):
            if run["state"] in TERMINAL_RUN_STATES and run["dag_run_id"] not in self.retrains_seen:
                self.retrains_seen.add(run["dag_run_id"])
                self.echo(f"{self.clock()} [retrain] {self.read.describe_retrain(run)}")
        self.retrain_runs = runs
        return any(r["state"] not in TERMINAL_RUN_STATES for r in runs) or bool(
            self.client.queued_asset_events("retrain")
        )

    def advance(self, retrain_busy: bool) -> bool:
        """Start the next run the night order allows; True when one started.

        Once day D is published its labels are ingested and, when a champion existed at that moment, it is
        scored. Day D+1 lands once D's scoring has started and the retrains the nights before D triggered have
        finished: a retrain may overlap one night, as a slow one would, never more. Before the first champion
        the next day lands as soon as the day is published and no retrain runs, so that scoring starts right
        after the first model.
        A retrain can be fitted through D only once D+1's labels landed, by then D's scoring run has long
        resolved its model (its plan runs seconds after the trigger, a retrain takes minutes); should a day
        ever be scored by a model fitted on it, realized quality (``monitoring.performance``) marks it in-sample."""
        for index, night in enumerate(self.nights):
            if not night.run_ids:  # the next day to land
                previous = self.nights[index - 1] if index else None
                before = self.nights[index - 2] if index > 1 else None
                if previous is None:
                    ready = True
                elif previous.scored:
                    ready = "batch_score" in previous.run_ids and (before is None or before.settled)
                else:  # no champion yet: nothing to score, only the first retrain to wait for
                    ready = previous.published and not retrain_busy
                if ready:
                    self.land(night.day)
                    self.start(night, "transactions_daily")
                return ready
            if not night.published:
                return False
            if "labels_daily" not in night.run_ids:
                self.start(night, "labels_daily")  # its sensor finds the day's validated partition at once
                return True
            if night.scored and "batch_score" not in night.run_ids:
                if self.scoring_from is None:
                    self.scoring_from = night.day
                    self.echo(f"a champion exists: batch_score runs every night from {night.day}")
                self.start(night, "batch_score")
                return True
        return False

    def done(self) -> bool:
        return all(
            night.run_ids and night.finished(*INGESTION_DAGS) and (not night.scored or night.finished("batch_score"))
            for night in self.nights
        )

    def raise_on_failure(self, dag_ids: Sequence[str], runs: Sequence[dict]) -> None:
        for dag_id, run in zip(dag_ids, runs, strict=True):
            if run["state"] != "success":
                tasks = self.client.task_instances(dag_id, run["dag_run_id"])
                failed = [ti["task_id"] for ti in tasks if ti["state"] in {"failed", "upstream_failed"}]
                raise DemoFailed(
                    f"{dag_id} run {run['dag_run_id']} {run['state']} (tasks {failed}): open it in the Airflow UI,"
                    f" {self.client.base_url}/dags/{dag_id}/runs/{run['dag_run_id']}"
                )

    def progress(self, started: float) -> str:
        ingested = sum(1 for night in self.nights if night.finished(*INGESTION_DAGS))
        scored = sum(1 for night in self.nights if night.finished("batch_score"))
        active = [r for r in self.retrain_runs if r["state"] not in TERMINAL_RUN_STATES]
        retrain = "idle"
        if active:
            tasks = self.client.task_instances("retrain", active[0]["dag_run_id"])
            busy = [ti["task_id"] for ti in tasks if ti["state"] in {"running", "queued"}]
            retrain = f"running ({', '.join(busy) or active[0]['state']})"
        scoring = "waiting for a champion" if self.scoring_from is None else f"{scored} days scored"
        return (
            f"  … {time.monotonic() - started:.0f}s: ingested {ingested}/{len(self.nights)} days · retrain {retrain}"
            f" · batch_score {scoring}"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help=f"the short scenario ({FAST.days} days)")
    parser.add_argument("--days", type=int, help="replay only the first N days of the scenario")
    parser.add_argument(
        "--keep-state", action="store_true", help="do not reset the stack's state first (re-runs then add versions)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from training_lib.local.environment import airflow_password
    from training_lib.local.stack import LocalStack

    args = _parser().parse_args(argv)
    plan = FAST if args.fast else FULL
    if args.days:
        plan = replace(plan, days=args.days)
    settings = demo_settings(plan)
    stack = LocalStack(settings)
    print(f"demo: {plan.days} days from {plan.start}, settings {json.dumps(plan.profile)}")
    if not args.keep_state:
        if any(stack.running().values()):
            print("demo: stopping the running local stack to start from a clean state")
            stack.down()
        stack.reset()
    stack.up()
    client = AirflowClient(
        settings.airflow_api_url, settings.airflow_admin_user, airflow_password(settings, stack.paths)
    )
    summary = DemoDriver(settings.platform, client, plan).run()
    print(format_summary(summary))
    print("\nThe stack keeps running: explore the UIs, then `make down`.")
    print(stack.describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
