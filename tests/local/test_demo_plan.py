"""The demo's scenarios and summary text, without services (tests/end_to_end/test_demo.py runs the short demo)."""

from __future__ import annotations

from datetime import date

import pytest

from training_lib.config import load_settings
from training_lib.local.demo_plan import FAST, FULL, DemoPlan, demo_settings
from training_lib.local.demo_summary import format_summary, recovery


@pytest.mark.parametrize("plan", [FULL, FAST], ids=["full", "fast"])
def test_the_scenario_fits_in_its_days(plan: DemoPlan) -> None:
    assert 1 < plan.incident_day < plan.change_day < plan.days
    settings = demo_settings(plan, {}).platform
    simulation = plan.simulation(settings.label_delay_days)
    assert simulation.resolve(simulation.new_fraud_pattern_day) == plan.day(plan.change_day)
    assert simulation.resolve(simulation.quality_incident_day) == plan.day(plan.incident_day)
    if plan.drift_day is None:
        assert simulation.amount_inflation_day is None
    else:
        assert plan.change_day < plan.drift_day <= plan.days
        assert simulation.resolve(simulation.amount_inflation_day) == plan.day(plan.drift_day)
    # the first champion is trained on labels that matured before the change, and the change has time to
    # mature, be learnt and be measured again: a window of days after it
    days_of_labels = settings.min_new_labels / plan.transactions_per_day
    assert settings.label_delay_days + days_of_labels + 1 < plan.change_day
    assert plan.days - plan.change_day >= 2 * settings.performance_window_days + settings.label_delay_days
    assert settings.training_window_days >= 5  # train, validation and test days of their own
    assert plan.incident_share <= settings.quarantine_share_limit  # the incident quarantines, never holds back
    assert settings.sensor_poke_s <= 5  # a replayed night does not wait half a minute for a sensor


def test_the_profile_wins_over_the_environment() -> None:
    settings = demo_settings(FULL, {"FRAUD_MIN_NEW_LABELS": "5", "FRAUD_BUCKET": "my-bucket"}).platform
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
        "realized_pr_auc": 0.4321,
        "realized_frauds": 3,
    }
    promotion = {
        "kind": "promotion",
        "at": "2026-11-22T01:00:00+00:00",
        "candidate_version": "1",
        "previous_champion_version": None,
        "champion_version": "1",
        "challenger_pr_auc": 0.91,
        "champion_pr_auc": None,
        "evaluation": {
            "trigger": "drift_detected:2026-01-01",
            "window": "2025-12-30..2025-12-31",
            "data_day": "2026-01-01",
        },
    }
    rejection = {
        "kind": "rejection",
        "at": "2026-11-22T02:00:00+00:00",
        "candidate_version": "2",
        "previous_champion_version": "1",
        "champion_version": "1",
        "challenger_pr_auc": 0.8,
        "champion_pr_auc": "nan",  # no day unseen by both models: stored as a string in JSON
        "reason": "no matured day after version 1's training window",
        "evaluation": {"trigger": "new_labels:2026-01-02", "window": ""},
    }
    summary = {
        "plan": {"start": date(2026, 1, 1).isoformat()},
        "seconds": 90.0,
        "days": [day],
        "retrain_runs": [{"run_id": "r", "run_type": "asset_triggered", "state": "success"}],
        "registry": [promotion, rejection],
        "champion": "1",
        "recovery": recovery([day], [promotion], date(2025, 12, 1)),
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
    assert "v1 promoted (PR-AUC 0.910 on 2025-12-30..2025-12-31)  ← drift_detected:2026-01-01" in text
    assert "v2 rejected (PR-AUC 0.800; no matured day after version 1's training window)" in text
    assert "champion history: v1; champion now: v1" in text
    assert "1 days scored, 9 rows" in text
    assert "0.43" in text.splitlines()[4]  # the day's realized PR-AUC in its row
    assert any("after v1 was promoted" in line and line.endswith(": 0.432 (1 days)") for line in text.splitlines())


def test_recovery_splits_the_days_at_the_healing_promotion() -> None:
    def day(n: int, version: str | None, pr_auc: float | None) -> dict:
        return {"day": f"2026-01-{n:02d}", "scored_by_version": version, "realized_pr_auc": pr_auc}

    def promoted(version: str, previous: str | None, data_day: str) -> dict:
        return {"kind": "promotion", "champion_version": version, "previous_champion_version": previous,
                "evaluation": {"data_day": data_day, "trigger": "t"}}  # fmt: skip

    days = [day(1, None, None), day(2, "1", 0.8), day(3, "1", 0.4), day(4, "1", 0.3), day(5, "2", 0.7),
            day(6, "3", 0.9), day(7, "3", None)]  # fmt: skip
    registry = [promoted("1", None, "2026-01-01"), promoted("2", "1", "2026-01-04"), promoted("3", "2", "2026-01-05")]
    result = recovery(days, registry, date(2026, 1, 3))
    assert result["promotion"]["version"] == "2" and result["promotion"]["data_day"] == "2026-01-04"
    assert result["before"]["days"] == ["2026-01-02"]
    assert result["broken"] == {"days": ["2026-01-03", "2026-01-04"], "mean_pr_auc": pytest.approx(0.35)}
    assert result["healed"] == {"days": ["2026-01-05", "2026-01-06"], "mean_pr_auc": pytest.approx(0.8)}
    assert recovery(days, registry[:1], date(2026, 1, 3))["promotion"] is None
