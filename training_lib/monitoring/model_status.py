"""What the "Fraud models" page shows: champion and challenger, alias history, the latest daily reports.

Everything is read from the platform's sources of truth (the MLflow registry, the audit log and the reports in
the lake) through the modules that own them; this module only gathers it for display. No Airflow import.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from training_lib.config import Settings
from training_lib.lake.layout import REPORTS_DRIFT, REPORTS_QUALITY, REPORTS_SCORING
from training_lib.lake.storage import Lake

VERSION_TAGS = ("decision", "reason", "decided_at", "decided_by", "test_pr_auc", "threshold", "training_window")
RUN_METRICS = (
    "test_pr_auc",
    "test_roc_auc",
    "test_precision_at_threshold",
    "test_recall_at_threshold",
    "test_card_precision_at_100",
    "baseline_test_pr_auc",
)
REPORT_LINK_SECONDS = 24 * 3600  # presigned links: the browser needs no S3 credentials


def mlflow_links(settings: Settings, version: str | None = None, run_id: str | None = None) -> dict[str, str]:
    """MLflow UI links: the registered model, one of its versions, one run."""
    base = settings.mlflow_tracking_uri.rstrip("/")
    links = {"model": f"{base}/#/models/{settings.model_name}"}
    if version:
        links["version"] = f"{base}/#/models/{settings.model_name}/versions/{version}"
    if run_id:
        links["run"] = f"{base}/#/runs/{run_id}"
    return links


def describe_version(settings: Settings, client: Any, version: Any, alias: str) -> dict[str, Any]:
    """One aliased version: its tags, its run's test metrics and its MLflow links."""
    try:
        metrics = client.get_run(version.run_id).data.metrics
    except Exception:
        metrics = {}
    return {
        "alias": alias,
        "version": str(version.version),
        "run_id": version.run_id,
        "created_at": version.creation_timestamp,
        "tags": {key: version.tags[key] for key in VERSION_TAGS if key in (version.tags or {})},
        "metrics": {key: metrics[key] for key in RUN_METRICS if key in metrics},
        "links": mlflow_links(settings, str(version.version), version.run_id),
    }


def latest_reports(settings: Settings, lake: Lake, days: int = 7) -> list[dict[str, Any]]:
    """The newest ``days`` days that have a quality, drift or scoring report, newest first, with links."""
    found: set[date] = set()
    for prefix in (REPORTS_QUALITY, REPORTS_DRIFT, REPORTS_SCORING):
        found.update(lake.list_days(prefix))
    rows = []
    for day in sorted(found, reverse=True)[:days]:
        row: dict[str, Any] = {"day": day.isoformat()}
        for name, prefix, html in (
            ("quality", REPORTS_QUALITY, "data_docs/index.html"),
            ("drift", REPORTS_DRIFT, "report.html"),
            ("scoring", REPORTS_SCORING, None),
        ):
            summary = lake.get_json(lake.report_key(prefix, day, "summary.json"), missing_ok=True)
            if summary is None:
                continue
            row[name] = summary
            if html and lake.exists(lake.report_key(prefix, day, html)):
                row[f"{name}_url"] = lake.report_url(prefix, day, html, expires_in=REPORT_LINK_SECONDS)
        rows.append(row)
    return rows


def platform_status(settings: Settings, *, days: int = 7, lake: Lake | None = None) -> dict[str, Any]:
    """Champion, challenger, alias history (audit log), alias moves made outside the platform, latest reports.

    Works before the first model (no registered model, no audit entries) and on an empty lake."""
    from training_lib.modeling.registry import Registry

    lake = lake or Lake(settings)
    registry = Registry(settings, lake=lake)
    aliased = {}
    for alias, version in (("champion", registry.champion()), ("challenger", registry.challenger())):
        if version is not None:
            aliased[alias] = describe_version(settings, registry.client, version, alias)
    history = registry.history()
    for entry in history:
        version = entry.get("champion_version") or entry.get("candidate_version")
        entry["links"] = mlflow_links(settings, version, entry.get("candidate_run_id"))
    return {
        "model_name": settings.model_name,
        "champion": aliased.get("champion"),
        "challenger": aliased.get("challenger"),
        "history": list(reversed(history)),
        "outside_moves": registry.alias_moves_outside_platform(),
        "reports": latest_reports(settings, lake, days),
        "links": mlflow_links(settings),
    }
