"""The "Fraud models" Airflow plugin: registration and rendering (the live page: tests/test_plugin_live.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PLUGIN_FILE = Path(__file__).resolve().parents[1] / "plugins" / "fraud_models.py"


@pytest.fixture(scope="module")
def plugin():
    spec = importlib.util.spec_from_file_location("fraud_models_plugin", PLUGIN_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _status(**changes) -> dict:
    status = {
        "model_name": "fraud-detector",
        "champion": None,
        "challenger": None,
        "history": [],
        "outside_moves": [],
        "reports": [],
        "links": {"model": "http://127.0.0.1:5000/#/models/fraud-detector"},
    }
    return {**status, **changes}


def _version(version: str, pr_auc: float) -> dict:
    return {
        "alias": "champion",
        "version": version,
        "run_id": "abc",
        "created_at": 1_767_225_600_000,
        "tags": {"decision": "promotion", "threshold": "0.4321", "training_window": "2026-01-01..2026-01-14"},
        "metrics": {"test_pr_auc": pr_auc, "test_roc_auc": 0.99},
        "links": {"version": f"http://m/#/models/fraud-detector/versions/{version}", "run": "http://m/#/runs/abc"},
    }


def test_the_plugin_registers_an_app_and_a_nav_entry(plugin) -> None:
    (app,) = plugin.FraudModelsPlugin.fastapi_apps
    assert app["url_prefix"] == "/fraud-models" and app["app"] is plugin.app
    (view,) = plugin.FraudModelsPlugin.external_views
    assert view["name"] == "Fraud models" and view["destination"] == "nav"
    assert view["href"] == "fraud-models/"  # relative: works behind a proxy's base path


def test_the_page_renders_without_any_model(plugin) -> None:
    html = plugin.render(_status())
    assert '<section class="card" data-alias="champion"><h2>champion</h2><p>none</p>' in html
    assert "No alias move yet." in html and "No daily report yet." in html
    assert "outside-moves" not in html


def test_the_page_shows_versions_history_reports_and_outside_moves(plugin) -> None:
    entry = {
        "kind": "promotion",
        "at": "2026-11-22T01:19:44.123+00:00",
        "previous_champion_version": None,
        "champion_version": "1",
        "candidate_version": "1",
        "actor": "airflow:retrain/asset_triggered__x",
        "reason": "first model <script>alert(1)</script>",
        "evaluation": {"trigger": "new_labels:2026-01-13"},
        "links": {"run": "http://m/#/runs/abc"},
    }
    report = {
        "day": "2026-01-20",
        "quality": {"validated": 4000, "quarantined": 12},
        "quality_url": "http://s3/q?sig=1&x=2",
        "drift": {"share": 0.14, "drift_detected": True, "drifted_columns": ["amt"]},
        "drift_url": "http://s3/d",
        "scoring": {"rows": 4012, "alerts": 9, "model_version": "1"},
    }
    moved = {"alias": "champion", "description": "alias 'champion' is on version 1 in the registry but on 2"}
    html = plugin.render(
        _status(champion=_version("2", 0.91), history=[entry], reports=[report], outside_moves=[moved])
    )
    assert '<span class="version">version 2</span>' in html and "0.910" in html and "0.4321" in html
    assert "<script>" not in html and "&lt;script&gt;" in html  # audit text is escaped
    assert "trigger: new_labels:2026-01-13" in html and "airflow:retrain/asset_triggered__x" in html
    assert 'href="http://s3/q?sig=1&amp;x=2"' in html and "DRIFT (amt)" in html and "4,012 rows" in html
    assert 'id="outside-moves"' in html and "on version 1 in the registry but on 2" in html
