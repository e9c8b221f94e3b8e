"""What the demo reads back, never writes: reports in the lake, the registry's audit log, the Airflow API.

The progress lines and the summary of :mod:`training_lib.local.demo` come from here, so what the demo prints is
what a user finds in the UIs and the bucket.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, timedelta
from typing import Any

from training_lib.config import Settings
from training_lib.lake.layout import (
    LABELS,
    PREDICTIONS,
    REPORTS_DRIFT,
    REPORTS_PERFORMANCE,
    REPORTS_QUALITY,
    REPORTS_SCORING,
)
from training_lib.lake.storage import Lake
from training_lib.local.airflow_client import AirflowClient
from training_lib.local.demo_plan import DemoPlan
from training_lib.local.demo_summary import describe_decision, recovery

DATA_DOCS = "data_docs/index.html"
LINK_S = 7 * 24 * 3600  # validity of the report links printed in the summary


class DemoReadback:
    """Reads of one demo's state (``settings``' lake and registry, ``client``'s Airflow)."""

    def __init__(self, settings: Settings, client: AirflowClient, lake: Lake) -> None:
        self.settings = settings
        self.client = client
        self.lake = lake

    def champion_version(self) -> str | None:
        """The version the champion alias is on now (None before the first promotion)."""
        from training_lib.modeling.registry import Registry

        champion = Registry(self.settings).champion()
        return champion.version if champion else None

    def report(self, prefix: str, day: date) -> dict[str, Any] | None:
        """The ``summary.json`` of a day's report, None when the day has none."""
        return self.lake.get_json(self.lake.report_key(prefix, day, "summary.json"), missing_ok=True)

    def history(self) -> list[dict[str, Any]]:
        """The registry's audit log, oldest first."""
        from training_lib.modeling.registry import Registry

        return Registry(self.settings).history()

    def describe_ingestion(self, day: date, states: dict[str, str]) -> str:
        """One line on a night's ingestion: validated and quarantined rows, drift, labels."""
        quality = self.report(REPORTS_QUALITY, day) or {}
        drift = self.report(REPORTS_DRIFT, day) or {}
        labels = self.lake.partition_manifest(LABELS, day) or {}
        text = (
            f"transactions_daily {states['transactions_daily']}: {quality.get('validated', 0):,} validated,"
            f" {quality.get('quarantined', 0):,} quarantined"
        )
        if drift.get("drift_detected"):
            text += f" · DRIFT {drift['share']:.2f} ({', '.join(drift['drifted_columns'])}) → drift_detected"
        elif drift.get("status") == "computed":
            text += f" · drift {drift['share']:.2f}"
        return text + f" · labels_daily {states['labels_daily']}: {labels.get('rows', 0):,} labels"

    def describe_retrain(self, run: dict) -> str:
        """One line on a finished retrain run: skipped by the cooldown, or the decision it recorded."""
        tasks = {ti["task_id"]: ti["state"] for ti in self.client.task_instances("retrain", run["dag_run_id"])}
        trigger = run["run_type"]
        if tasks.get("build_dataset") == "skipped":
            return f"retrain ({trigger}) {run['state']}: skipped by the cooldown"
        entry = next(
            (e for e in reversed(self.history()) if e.get("actor", "").endswith(run["dag_run_id"])),
            None,
        )
        if entry is None:
            return f"retrain ({trigger}) {run['state']}: no decision recorded"
        because = (entry.get("evaluation") or {}).get("trigger", "")
        return f"retrain ({trigger}) {run['state']}: {describe_decision(entry)} ← {because}"

    def describe_scoring(self, day: date, state: str) -> str:
        """One line on a night's scoring: predictions, alerts, model, and the realized quality that matured."""
        scoring = self.report(REPORTS_SCORING, day) or {}
        text = (
            f"batch_score {state}: {scoring.get('rows', 0):,} predictions,"
            f" {scoring.get('alerts', 0)} alerts, model v{scoring.get('model_version', '?')}"
        )
        matured = day - timedelta(days=self.settings.label_delay_days)  # its labels completed tonight
        realized = self.report(REPORTS_PERFORMANCE, matured) or {}
        if realized.get("pr_auc") is not None:
            text += f" · realized PR-AUC of {matured}: {realized['pr_auc']:.2f} (v{realized.get('model_version')})"
        return text

    def day_record(self, day: date, states: dict[str, str]) -> dict[str, Any]:
        """One day of the summary: its runs, quality, drift, labels, predictions and realized quality."""
        quality = self.report(REPORTS_QUALITY, day) or {}
        drift = self.report(REPORTS_DRIFT, day) or {}
        predictions = self.lake.partition_manifest(PREDICTIONS, day) or {}
        scoring = self.report(REPORTS_SCORING, day) or {}
        realized = self.report(REPORTS_PERFORMANCE, day) or {}
        return {
            "day": day.isoformat(),
            "runs": states,
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
            "realized_pr_auc": realized.get("pr_auc"),
            "realized_frauds": realized.get("frauds"),
        }

    def summary(self, plan: DemoPlan, runs: dict[date, dict[str, str]], seconds: float) -> dict[str, Any]:
        """Everything the demo did (``runs``: day -> dag_id -> final state), read back from the lake, the audit
        log and the Airflow API."""
        days = [self.day_record(day, states) for day, states in runs.items()]
        registry = self.history()
        settings = self.settings
        drift_days = [d["day"] for d in days if d["drift_detected"]]
        drift_day = date.fromisoformat(drift_days[-1]) if drift_days else plan.dates[-1]
        quality_day = plan.dates[-1]
        return {
            "plan": {**asdict(plan), "start": plan.start.isoformat()},
            "seconds": round(seconds, 1),
            "days": days,
            "retrain_runs": [
                {"run_id": r["dag_run_id"], "run_type": r["run_type"], "state": r["state"]}
                for r in sorted(self.client.list_runs("retrain"), key=lambda r: r["run_after"])
            ],
            "registry": registry,
            "champion": self.champion_version(),
            "recovery": recovery(days, registry, plan.day(plan.change_day)),
            "links": {
                "airflow": self.client.base_url,
                "mlflow_model": f"{settings.mlflow_tracking_uri}/#/models/{settings.model_name}",
                # presigned: the browser opens them without S3 credentials
                "latest_drift_report": self.lake.report_url(REPORTS_DRIFT, drift_day, "report.html", expires_in=LINK_S),
                "latest_quality_report": self.lake.report_url(
                    REPORTS_QUALITY, quality_day, DATA_DOCS, expires_in=LINK_S
                ),
            },
        }
