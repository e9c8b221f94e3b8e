"""Airflow UI plugin: the "Fraud models" page (champion, challenger, alias history, latest reports).

A FastAPI app served by the Airflow API server under ``/fraud-models/``, shown in the UI's navigation as an
external view. Only the Airflow login can open it (the UI's session cookie, or a bearer token). The data
comes from :func:`training_lib.monitoring.model_status.platform_status`; this file only renders it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from html import escape
from typing import Any

from airflow.api_fastapi.core_api.security import get_user
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

URL_PREFIX = "/fraud-models"

app = FastAPI(title="Fraud models", description="Champion, challenger, alias history and daily reports.")


def _status() -> dict[str, Any]:
    from training_lib.config import load_settings
    from training_lib.monitoring.model_status import platform_status

    return platform_status(load_settings())


@app.get("/status.json")
async def status_json(user=Depends(get_user)) -> dict[str, Any]:  # noqa: B008 - FastAPI dependency
    """The page's data as JSON."""
    return await asyncio.to_thread(_status)


@app.get("/", response_class=HTMLResponse)
async def page(user=Depends(get_user)) -> HTMLResponse:  # noqa: B008 - FastAPI dependency
    try:
        status = await asyncio.to_thread(_status)
    except Exception as exc:
        return HTMLResponse(_layout(f'<p class="error">Cannot read the platform state: {escape(str(exc))}</p>'), 503)
    return HTMLResponse(render(status))


# --------------------------------------------------------------------------- rendering


def _link(url: str | None, text: str) -> str:
    if not url:
        return escape(text)
    return f'<a href="{escape(url)}" target="_blank" rel="noopener">{escape(text)}</a>'


def _number(value: Any, digits: int = 3) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "—"


def _version_card(title: str, version: dict[str, Any] | None) -> str:
    if version is None:
        return f'<section class="card" data-alias="{escape(title)}"><h2>{escape(title)}</h2><p>none</p></section>'
    metrics, tags = version["metrics"], version["tags"]
    created = datetime.fromtimestamp(version["created_at"] / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = [
        ("test PR-AUC", _number(metrics.get("test_pr_auc", tags.get("test_pr_auc")))),
        ("test ROC-AUC", _number(metrics.get("test_roc_auc"))),
        ("precision / recall at threshold", f"{_number(metrics.get('test_precision_at_threshold'))} / "
         f"{_number(metrics.get('test_recall_at_threshold'))}"),
        ("card precision@100", _number(metrics.get("test_card_precision_at_100"))),
        ("baseline test PR-AUC", _number(metrics.get("baseline_test_pr_auc"))),
        ("threshold", _number(tags.get("threshold"), 4)),
        ("training window", escape(tags.get("training_window", "—"))),
        ("decision", escape(tags.get("decision", "—"))),
        ("registered", created),
    ]  # fmt: skip
    body = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    links = version["links"]
    return (
        f'<section class="card" data-alias="{escape(title)}"><h2>{escape(title)}: '
        f'<span class="version">version {escape(version["version"])}</span></h2>'
        f"<table>{body}</table><p>{_link(links.get('version'), 'version in MLflow')} · "
        f"{_link(links.get('run'), 'training run in MLflow')}</p></section>"
    )


def _history(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "<p>No alias move yet.</p>"
    rows = []
    for entry in entries:
        versions = f"{entry.get('previous_champion_version') or '—'} → {entry.get('champion_version') or '—'}"
        why = entry.get("reason", "")
        trigger = (entry.get("evaluation") or {}).get("trigger")
        if trigger:
            why = f"{why} (trigger: {trigger})"
        rows.append(
            f'<tr class="{escape(entry["kind"])}"><td>{escape(entry["at"][:19].replace("T", " "))}</td>'
            f"<td>{escape(entry['kind'])}</td><td>{escape(versions)}</td>"
            f"<td>{escape(str(entry.get('candidate_version') or ''))}</td><td>{escape(entry.get('actor', ''))}</td>"
            f"<td>{escape(why)}</td><td>{_link(entry['links'].get('run'), 'run')}</td></tr>"
        )
    head = "<tr><th>when (UTC)</th><th>what</th><th>champion</th><th>candidate</th><th>who</th><th>why</th>"
    return f'<table class="history">{head}<th>MLflow</th></tr>{"".join(rows)}</table>'


def _outside(moves: list[dict[str, Any]]) -> str:
    if not moves:
        return ""
    items = "".join(f"<li>{escape(move['description'])}</li>" for move in moves)
    return (
        '<section class="warning" id="outside-moves"><h2>Moved outside the platform</h2>'
        f"<p>The registry is the truth; these alias moves have no audit entry (e.g. made in the MLflow UI):</p>"
        f"<ul>{items}</ul></section>"
    )


def _reports(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>No daily report yet.</p>"
    out = []
    for row in rows:
        quality, drift, scoring = row.get("quality"), row.get("drift"), row.get("scoring")
        quality_text = f"{quality['validated']:,} valid, {quality['quarantined']:,} quarantined" if quality else "—"
        drift_text = "—"
        if drift:
            drift_text = f"share {_number(drift.get('share'), 2)}"
            if drift.get("drift_detected"):
                drift_text += f" DRIFT ({', '.join(drift.get('drifted_columns', []))})"
        scoring_text = (
            f"{scoring['rows']:,} rows, {scoring['alerts']:,} alerts, v{scoring['model_version']}" if scoring else "—"
        )
        out.append(
            f"<tr><td>{escape(row['day'])}</td>"
            f"<td>{_link(row.get('quality_url'), quality_text)}</td>"
            f"<td>{_link(row.get('drift_url'), drift_text)}</td><td>{escape(scoring_text)}</td></tr>"
        )
    head = "<tr><th>day</th><th>quality (Data Docs)</th><th>drift (Evidently report)</th><th>scoring</th></tr>"
    return f'<table class="reports">{head}{"".join(out)}</table>'


def render(status: dict[str, Any]) -> str:
    """The page for one :func:`platform_status` result."""
    body = (
        f"<h1>Fraud models: {escape(status['model_name'])}</h1>"
        f"<p>{_link(status['links']['model'], 'registered model in the MLflow UI')}</p>"
        f"{_outside(status['outside_moves'])}"
        f'<div class="cards">{_version_card("champion", status["champion"])}'
        f"{_version_card('challenger', status['challenger'])}</div>"
        f"<h2>Alias history (audit log)</h2>{_history(status['history'])}"
        f"<h2>Latest daily reports</h2>{_reports(status['reports'])}"
    )
    return _layout(body)


def _layout(body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fraud models</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #1a202c; }}
table {{ border-collapse: collapse; margin: .5rem 0 1.5rem; }}
th, td {{ border: 1px solid #cbd5e0; padding: .3rem .6rem; text-align: left; vertical-align: top; }}
.cards {{ display: flex; gap: 1.5rem; flex-wrap: wrap; }}
.card {{ border: 1px solid #a0aec0; border-radius: 6px; padding: 0 1rem; }}
.warning {{ background: #fffbea; border: 1px solid #d69e2e; padding: 0 1rem; }}
.error {{ color: #c53030; }}
tr.promotion td:nth-child(2) {{ color: #276749; }} tr.rejection td:nth-child(2) {{ color: #9b2c2c; }}
</style></head><body>{body}</body></html>"""


class FraudModelsPlugin(AirflowPlugin):
    name = "fraud_models"
    # Airflow reads these class attributes (the AirflowPlugin convention).
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Fraud models"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {
            "name": "Fraud models",
            "href": URL_PREFIX.lstrip("/") + "/",
            "url_route": "fraud-models",
            "destination": "nav",
            "nav_top_level": True,  # its own entry in the navigation bar, not under "Plugins"
        }
    ]
