"""The demo: simulated days flow through the real Airflow scheduler, then a summary of what happened.

``python -m training_lib.demo`` (``make demo``) resets and starts the local stack with the demo's scenario
settings, then replays the days one by one, the way nights follow each other:

1. the simulator lands the day's transactions and the labels confirmed that day in ``landing/``;
2. a backfill of ``transactions_daily`` and of ``labels_daily`` for the day (quality gate, quarantine,
   drift report; the ``drift_detected`` / ``new_labels`` Assets they emit start ``retrain`` on their own);
3. the demo waits until ``retrain`` has no queued Asset events and no active run;
4. once a champion exists, a backfill of ``batch_score`` for the day (its 02:00 run).

Nothing here calls platform functions directly: every step is a DAG run scheduled by Airflow. The summary
is read back from the lake, the registry's audit log and the Airflow API.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from training_lib.airflow_client import TERMINAL_RUN_STATES, AirflowClient
from training_lib.config import Settings, load_settings
from training_lib.simulate import SimulationConfig, Simulator
from training_lib.storage import (
    LABELS,
    LANDING_LABELS,
    LANDING_TRANSACTIONS,
    PREDICTIONS,
    REPORTS_DRIFT,
    REPORTS_QUALITY,
    REPORTS_SCORING,
    Lake,
    partition_prefix,
)

INGESTION_DAGS = ("transactions_daily", "labels_daily")
DEMO_DAGS = (*INGESTION_DAGS, "retrain", "batch_score", "rollback_model")
DATA_DOCS = "data_docs/index.html"
SCORING_TIME = "02:00:00"  # batch_score runs at 02:00 for the day that ended (its logical date)
PROGRESS_EVERY_S = 15.0
LINK_S = 7 * 24 * 3600  # validity of the report links printed in the summary
POLL_S = 5.0  # the API server is shared with the tasks: poll gently


@dataclass(frozen=True)
class DemoPlan:
    """The scenario: how many days, how much traffic, when drift starts and which day has bad rows.

    ``profile`` holds the platform settings the scenario needs (environment variable names): label delay and
    retrain triggers sized to the demo's volume. The stack's processes run with them.
    """

    start: date
    days: int
    transactions_per_day: int
    customers: int
    drift_day: int  # 1-based day from which amounts are inflated (the drift scenario)
    incident_day: int  # 1-based day with malformed rows (the data-quality incident)
    profile: dict[str, str]
    amount_inflation: float = 1.5
    incident_share: float = 0.02
    seed: int = 7

    @property
    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def simulation(self, label_delay_days: int) -> SimulationConfig:
        return SimulationConfig(
            seed=self.seed,
            start=self.start,
            n_customers=self.customers,
            transactions_per_day=self.transactions_per_day,
            label_delay_days=label_delay_days,
            amount_inflation_day=self.drift_day - 1,
            amount_inflation_factor=self.amount_inflation,
            quality_incident_day=self.incident_day - 1,
            quality_incident_share=self.incident_share,
        )


FULL = DemoPlan(
    start=date(2026, 1, 1),
    days=30,
    transactions_per_day=4000,
    customers=2000,
    drift_day=20,
    incident_day=9,
    profile={
        "FRAUD_LABEL_DELAY_DAYS": "2",
        "FRAUD_MIN_NEW_LABELS": "40000",  # ten days of labels
        "FRAUD_TRAINING_WINDOW_DAYS": "14",
        "FRAUD_RETRAIN_COOLDOWN_DAYS": "7",
        "FRAUD_DRIFT_REFERENCE_DAYS": "3",
    },
)
FAST = DemoPlan(
    start=date(2026, 1, 1),
    days=6,
    transactions_per_day=5000,
    customers=1500,
    drift_day=5,
    incident_day=3,
    profile={
        "FRAUD_LABEL_DELAY_DAYS": "1",
        "FRAUD_MIN_NEW_LABELS": "15000",  # three days of labels
        "FRAUD_TRAINING_WINDOW_DAYS": "6",
        "FRAUD_RETRAIN_COOLDOWN_DAYS": "1",
        "FRAUD_DRIFT_REFERENCE_DAYS": "2",
    },
)


def demo_settings(plan: DemoPlan, environ: dict[str, str] | None = None) -> Settings:
    """The platform settings of a demo: the environment's, with the scenario's profile on top."""
    return load_settings(environ, overrides=plan.profile)


class DemoFailed(RuntimeError):
    """A DAG run of the demo failed; the message names the run and where to look."""


@dataclass
class DayRecord:
    """What happened to one simulated day: the final state of each DAG's run."""

    day: str
    runs: dict[str, str] = field(default_factory=dict)


class DemoDriver:
    """Drives the DAGs day by day through the Airflow API and prints progress."""

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
        self.simulator = Simulator(plan.simulation(settings.label_delay_days))
        self.timeout_s = timeout_s
        self.records: dict[str, DayRecord] = {}

    # ---- the replay
    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        dates = self.plan.dates
        first, last = dates[0].isoformat(), dates[-1].isoformat()
        for dag_id in DEMO_DAGS:
            self.client.wait_for_dag(dag_id, timeout=180)
            self.client.set_paused(dag_id, False)
        self.echo(f"landing {len(dates)} days of transactions and labels in s3://{self.settings.bucket}/landing/ …")
        for day in dates:
            self.land(day)
        self.echo(f"backfills: transactions_daily and labels_daily {first} .. {last}")
        self.client.create_backfill("transactions_daily", first, last, max_active_runs=2)
        self.client.create_backfill("labels_daily", first, last, max_active_runs=2)
        self.follow(started)
        summary = self.summary(time.monotonic() - started)
        self.lake.put_json(f"reports/demo/{first}_{len(dates)}d.json", summary)
        return summary

    def land(self, day: date) -> None:
        """The day's files arrive, as an upstream system would drop them."""
        self.lake.put_bytes(
            f"{partition_prefix(LANDING_TRANSACTIONS, day)}/transactions.csv", self.simulator.day_csv_bytes(day)
        )
        self.lake.put_bytes(f"{partition_prefix(LANDING_LABELS, day)}/labels.csv", self.simulator.labels_csv_bytes(day))

    def follow(self, started: float) -> None:
        """Print each day, retrain and scoring as it finishes; start scoring once there is a champion."""
        days = [d.isoformat() for d in self.plan.dates]
        retrains_seen: set[str] = set()
        scoring_days: list[str] | None = None
        last_note = time.monotonic()
        while True:
            runs = {dag_id: self.client.backfill_runs(dag_id, days) for dag_id in INGESTION_DAGS}
            states = {dag_id: {r["logical_date"][:10]: r for r in found} for dag_id, found in runs.items()}
            for day in days:
                finished = [states[dag_id].get(day) for dag_id in INGESTION_DAGS]
                if self.done(day, INGESTION_DAGS[0]) or not all(
                    r and r["state"] in TERMINAL_RUN_STATES for r in finished
                ):
                    continue
                record = self.records.setdefault(day, DayRecord(day))
                record.runs.update({dag: run["state"] for dag, run in zip(INGESTION_DAGS, finished, strict=True)})
                self.echo(f"[{day}] {self.describe_ingestion(date.fromisoformat(day), record)}")
                self.raise_on_failure(INGESTION_DAGS, finished)
            retrain_runs = self.client.list_runs("retrain")
            retrained = False
            for run in sorted(retrain_runs, key=lambda r: r["run_after"]):
                if run["state"] in TERMINAL_RUN_STATES and run["dag_run_id"] not in retrains_seen:
                    retrains_seen.add(run["dag_run_id"])
                    retrained = True
                    self.echo(f"[retrain] {self.describe_retrain(run)}")
            # a first champion can only appear when a retrain finished: read the audit log only then
            if scoring_days is None and retrained and (start := self.scoring_start()) is not None:
                scoring_days = [day for day in days if day >= start.isoformat()]
                if scoring_days:
                    self.echo(
                        f"backfill: batch_score {scoring_days[0]} .. {scoring_days[-1]} (from the first champion's day)"
                    )
                    self.client.create_backfill(
                        "batch_score", scoring_days[0], scoring_days[-1], max_active_runs=2, at=SCORING_TIME
                    )
            scored = {r["logical_date"][:10]: r for r in self.client.backfill_runs("batch_score", scoring_days or [])}
            for day in scoring_days or []:
                run = scored.get(day)
                if self.done(day, "batch_score") or not run or run["state"] not in TERMINAL_RUN_STATES:
                    continue
                self.records.setdefault(day, DayRecord(day)).runs["batch_score"] = run["state"]
                self.echo(f"[{day}] {self.describe_scoring(date.fromisoformat(day), run['state'])}")
                self.raise_on_failure(["batch_score"], [run])
            ingested = all(self.done(day, INGESTION_DAGS[0]) for day in days)
            retrain_busy = bool(self.client.queued_asset_events("retrain")) or any(
                run["state"] not in TERMINAL_RUN_STATES for run in retrain_runs
            )
            scoring_done = all(self.done(day, "batch_score") for day in scoring_days or [])
            if ingested and not retrain_busy and scoring_done and (scoring_days is not None or not retrains_seen):
                return
            if time.monotonic() - started > self.timeout_s:
                raise TimeoutError(f"the demo did not finish within {self.timeout_s:.0f}s")
            if time.monotonic() - last_note > PROGRESS_EVERY_S:
                self.echo(self.progress(days, retrain_runs, scoring_days, started))
                last_note = time.monotonic()
            time.sleep(POLL_S)

    def done(self, day: str, dag_id: str) -> bool:
        """Whether the run of ``dag_id`` for ``day`` has finished and been reported."""
        return dag_id in self.records.get(day, DayRecord(day)).runs

    def scoring_start(self) -> date | None:
        """The data day of the first promotion: scoring starts there (no model, nothing to score before)."""
        for entry in self.history():
            if entry["kind"] == "promotion":
                data_day = (entry.get("evaluation") or {}).get("data_day")
                return date.fromisoformat(data_day) if data_day else self.plan.dates[0]
        return None

    def raise_on_failure(self, dag_ids: Sequence[str], runs: Sequence[dict]) -> None:
        for dag_id, run in zip(dag_ids, runs, strict=True):
            if run["state"] != "success":
                tasks = self.client.task_instances(dag_id, run["dag_run_id"])
                failed = [ti["task_id"] for ti in tasks if ti["state"] in {"failed", "upstream_failed"}]
                raise DemoFailed(
                    f"{dag_id} run {run['dag_run_id']} {run['state']} (tasks {failed}): open it in the Airflow UI,"
                    f" {self.settings.airflow_api_url}/dags/{dag_id}/runs/{run['dag_run_id']}"
                )

    def progress(
        self, days: list[str], retrain_runs: list[dict], scoring_days: list[str] | None, started: float
    ) -> str:
        ingested = sum(1 for day in days if self.done(day, INGESTION_DAGS[0]))
        active = [r for r in retrain_runs if r["state"] not in TERMINAL_RUN_STATES]
        retrain = "idle"
        if active:
            tasks = self.client.task_instances("retrain", active[0]["dag_run_id"])
            busy = [ti["task_id"] for ti in tasks if ti["state"] in {"running", "queued"}]
            retrain = f"running ({', '.join(busy) or active[0]['state']})"
        scoring = (
            "waiting for a champion"
            if scoring_days is None
            else (f"{sum(1 for day in scoring_days if self.done(day, 'batch_score'))}/{len(scoring_days)} days")
        )
        return (
            f"  … {time.monotonic() - started:.0f}s: ingested {ingested}/{len(days)} days · retrain {retrain}"
            f" · batch_score {scoring}"
        )

    # ---- reading state back
    def champion_version(self) -> str | None:
        from training_lib.registry import Registry

        champion = Registry(self.settings).champion()
        return champion.version if champion else None

    def report(self, prefix: str, day: date) -> dict[str, Any] | None:
        return self.lake.get_json(self.lake.report_key(prefix, day, "summary.json"), missing_ok=True)

    def describe_ingestion(self, day: date, record: DayRecord) -> str:
        quality = self.report(REPORTS_QUALITY, day) or {}
        drift = self.report(REPORTS_DRIFT, day) or {}
        labels = self.lake.partition_manifest(LABELS, day) or {}
        text = (
            f"transactions_daily {record.runs['transactions_daily']}: {quality.get('validated', 0):,} validated,"
            f" {quality.get('quarantined', 0):,} quarantined"
        )
        if drift.get("drift_detected"):
            text += f" · DRIFT {drift['share']:.2f} ({', '.join(drift['drifted_columns'])}) → drift_detected"
        elif drift.get("status") == "computed":
            text += f" · drift {drift['share']:.2f}"
        return text + f" · labels_daily {record.runs['labels_daily']}: {labels.get('rows', 0):,} labels"

    def describe_retrain(self, run: dict) -> str:
        tasks = {ti["task_id"]: ti["state"] for ti in self.client.task_instances("retrain", run["dag_run_id"])}
        trigger = run["run_type"]
        if tasks.get("build_dataset.snapshot") == "skipped":
            return f"retrain ({trigger}) {run['state']}: skipped by the cooldown"
        entry = next(
            (e for e in reversed(self.history()) if e.get("actor", "").endswith(run["dag_run_id"])),
            None,
        )
        if entry is None:
            return f"retrain ({trigger}) {run['state']}: no decision recorded"
        return f"retrain ({trigger}) {run['state']}: {describe_decision(entry)}"

    def describe_scoring(self, day: date, state: str) -> str:
        scoring = self.report(REPORTS_SCORING, day) or {}
        return (
            f"batch_score {state}: {scoring.get('rows', 0):,} predictions,"
            f" {scoring.get('alerts', 0)} alerts, model v{scoring.get('model_version', '?')}"
        )

    def history(self) -> list[dict[str, Any]]:
        from training_lib.registry import Registry

        return Registry(self.settings).history()

    def summary(self, seconds: float) -> dict[str, Any]:
        """Everything the demo did, read back from the lake, the audit log and the Airflow API."""
        days = []
        for day in self.plan.dates:
            record = self.records.get(day.isoformat(), DayRecord(day.isoformat()))
            quality = self.report(REPORTS_QUALITY, day) or {}
            drift = self.report(REPORTS_DRIFT, day) or {}
            predictions = self.lake.partition_manifest(PREDICTIONS, day) or {}
            scoring = self.report(REPORTS_SCORING, day) or {}
            days.append(
                {
                    "day": record.day,
                    "runs": record.runs,
                    "rows_in": quality.get("rows_in", 0),
                    "validated": quality.get("validated", 0),
                    "quarantined": quality.get("quarantined", 0),
                    "quarantine_reasons": quality.get("reasons", {}),
                    "drift_share": drift.get("share"),
                    "drift_detected": bool(drift.get("drift_detected")),
                    "drifted_columns": drift.get("drifted_columns", []),
                    "labels": (self.lake.partition_manifest(LABELS, day) or {}).get("rows", 0),
                    "predictions": predictions.get("rows", 0),
                    "scored_by_version": scoring.get("model_version"),
                }
            )
        retrain_runs = self.client.list_runs("retrain")
        settings = self.settings
        drift_days = [d["day"] for d in days if d["drift_detected"]]
        drift_day = date.fromisoformat(drift_days[-1]) if drift_days else self.plan.dates[-1]
        quality_day = self.plan.dates[-1]
        return {
            "plan": {**asdict(self.plan), "start": self.plan.start.isoformat()},
            "seconds": round(seconds, 1),
            "days": days,
            "retrain_runs": [
                {"run_id": r["dag_run_id"], "run_type": r["run_type"], "state": r["state"]}
                for r in sorted(retrain_runs, key=lambda r: r["run_after"])
            ],
            "registry": self.history(),
            "champion": self.champion_version(),
            "links": {
                "airflow": settings.airflow_api_url,
                "mlflow_model": f"{settings.mlflow_tracking_uri}/#/models/{settings.model_name}",
                # presigned: the browser opens them without S3 credentials
                "latest_drift_report": self.lake.report_url(REPORTS_DRIFT, drift_day, "report.html", expires_in=LINK_S),
                "latest_quality_report": self.lake.report_url(
                    REPORTS_QUALITY, quality_day, DATA_DOCS, expires_in=LINK_S
                ),
            },
        }


def describe_decision(entry: dict[str, Any]) -> str:
    challenger = entry.get("challenger_pr_auc")
    champion = entry.get("champion_pr_auc")
    versus = f" vs champion v{entry['previous_champion_version']} {champion:.3f}" if champion is not None else ""
    verb = "promoted" if entry["kind"] == "promotion" else "rejected"
    return f"v{entry['candidate_version']} {verb} (PR-AUC {challenger:.3f}{versus})"


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as the text the demo prints at the end."""
    days = summary["days"]
    lines = [
        "",
        f"== Demo summary: {len(days)} days replayed in {summary['seconds'] / 60:.1f} min",
        "",
        f"{'day':<12}{'rows':>8}{'valid':>8}{'quar.':>7}  {'drift':<16}{'labels':>8}{'preds':>8}  model",
    ]
    for d in days:
        drift = (
            "—" if d["drift_share"] is None else f"{d['drift_share']:.2f}" + (" DRIFT" if d["drift_detected"] else "")
        )
        model = f"v{d['scored_by_version']}" if d["scored_by_version"] else "—"
        lines.append(
            f"{d['day']:<12}{d['rows_in']:>8,}{d['validated']:>8,}{d['quarantined']:>7,}  {drift:<16}"
            f"{d['labels']:>8,}{d['predictions']:>8,}  {model}"
        )
    total_in = sum(d["rows_in"] for d in days)
    quarantined = sum(d["quarantined"] for d in days)
    lines += [
        "",
        f"ingested {len(days)} days: {total_in:,} rows, {total_in - quarantined:,} validated, {quarantined:,}"
        " quarantined",
    ]
    for d in days:
        if d["quarantine_reasons"]:
            reasons = ", ".join(f"{reason} ×{count}" for reason, count in d["quarantine_reasons"].items())
            lines.append(f"  quarantine {d['day']}: {reasons}")
    drift_days = [d["day"] for d in days if d["drift_detected"]]
    lines.append(f"drift days: {', '.join(drift_days) if drift_days else 'none'}")
    runs = summary["retrain_runs"]
    triggered = sum(1 for r in runs if r["run_type"] == "asset_triggered")
    lines.append(f"retrain runs: {len(runs)} ({triggered} triggered by Assets); decisions:")
    for entry in summary["registry"]:
        if entry["kind"] in {"promotion", "rejection"}:
            trigger = (entry.get("evaluation") or {}).get("trigger", "")
            lines.append(f"  {entry['at'][:19]}  {describe_decision(entry)}  ← {trigger}")
    moves = [e for e in summary["registry"] if e.get("champion_version") != e.get("previous_champion_version")]
    history = " → ".join(f"v{e['champion_version']}" for e in moves if e.get("champion_version"))
    lines.append(f"champion history: {history or 'no champion'}; champion now: v{summary['champion']}")
    scored = [d for d in days if d["predictions"]]
    lines.append(f"predictions: {len(scored)} days scored, {sum(d['predictions'] for d in scored):,} rows")
    links = summary["links"]
    lines += [
        "",
        f"Airflow UI        : {links['airflow']}  (DAGs → retrain → runs; Assets → drift_detected)",
        f"MLflow UI         : {links['mlflow_model']}",
        f"latest drift report  : {links['latest_drift_report']}",
        f"latest quality report: {links['latest_quality_report']}",
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help=f"the short scenario ({FAST.days} days)")
    parser.add_argument("--days", type=int, help="replay only the first N days of the scenario")
    parser.add_argument(
        "--keep-state", action="store_true", help="do not reset the stack's state first (re-runs then add versions)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from training_lib.stack import LocalStack, airflow_password

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
    summary = DemoDriver(settings, client, plan).run()
    print(format_summary(summary))
    print("\nThe stack keeps running: explore the UIs, then `make down`.")
    print(stack.describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
