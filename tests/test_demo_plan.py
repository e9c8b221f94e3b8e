"""The demo's scenarios and summary text, without services (tests/test_demo.py runs the short demo)."""

from __future__ import annotations

from datetime import date

import pytest

from training_lib.config import load_settings
from training_lib.demo import FAST, FULL, DemoPlan, demo_settings, format_summary


@pytest.mark.parametrize("plan", [FULL, FAST], ids=["full", "fast"])
def test_the_scenario_fits_in_its_days(plan: DemoPlan) -> None:
    assert 1 < plan.incident_day < plan.drift_day <= plan.days
    settings = demo_settings(plan, {})
    simulation = plan.simulation(settings.label_delay_days)
    assert simulation.resolve(simulation.amount_inflation_day) == plan.dates[plan.drift_day - 1]
    assert simulation.resolve(simulation.quality_incident_day) == plan.dates[plan.incident_day - 1]
    # the first retrain needs enough labels before drift days, and labels mature inside the replay
    days_of_labels = settings.min_new_labels / plan.transactions_per_day
    assert settings.label_delay_days + days_of_labels < plan.days
    assert plan.incident_share <= settings.quarantine_share_limit  # the incident quarantines, never holds back


def test_the_profile_wins_over_the_environment() -> None:
    settings = demo_settings(FULL, {"FRAUD_MIN_NEW_LABELS": "5", "FRAUD_BUCKET": "my-bucket"})
    assert settings.min_new_labels == int(FULL.profile["FRAUD_MIN_NEW_LABELS"])
    assert settings.bucket == "my-bucket"  # what the profile does not set comes from the environment
    assert load_settings({}, overrides={"FRAUD_LABEL_DELAY_DAYS": "4"}).label_delay_days == 4


def test_summary_text() -> None:
    day = {
        "day": "2026-01-01",
        "runs": {},
        "rows_in": 10,
        "validated": 9,
        "quarantined": 1,
        "quarantine_reasons": {"amt not in (0, 100000]": 1},
        "drift_share": 0.14,
        "drift_detected": True,
        "drifted_columns": ["amt"],
        "labels": 0,
        "predictions": 9,
        "scored_by_version": "1",
    }
    promotion = {
        "kind": "promotion",
        "at": "2026-11-22T01:00:00+00:00",
        "candidate_version": "1",
        "previous_champion_version": None,
        "champion_version": "1",
        "challenger_pr_auc": 0.91,
        "champion_pr_auc": None,
        "evaluation": {"trigger": "drift_detected:2026-01-01"},
    }
    summary = {
        "plan": {"start": date(2026, 1, 1).isoformat()},
        "seconds": 90.0,
        "days": [day],
        "retrain_runs": [{"run_id": "r", "run_type": "asset_triggered", "state": "success"}],
        "registry": [promotion],
        "champion": "1",
        "links": {
            "airflow": "http://a",
            "mlflow_model": "http://m",
            "latest_drift_report": "http://s/d",
            "latest_quality_report": "http://s/q",
        },
    }
    text = format_summary(summary)
    assert "1 days replayed in 1.5 min" in text
    assert "0.14 DRIFT" in text and "amt not in (0, 100000] ×1" in text
    assert "v1 promoted (PR-AUC 0.910)  ← drift_detected:2026-01-01" in text
    assert "champion history: v1; champion now: v1" in text
    assert "1 days scored, 9 rows" in text
