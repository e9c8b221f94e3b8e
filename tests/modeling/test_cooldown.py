"""When a retrain may run: cooldowns counted in days of data, the shorter one of a realized-quality trigger."""

from __future__ import annotations

from datetime import date, timedelta

from training_lib.config import load_settings
from training_lib.modeling.cooldown import PERFORMANCE, cooldown_days, cooldown_remaining


def test_cooldown_counts_days_of_data() -> None:
    day = date(2026, 3, 10)
    assert cooldown_remaining(None, day, 3) == 0  # never retrained
    assert cooldown_remaining(day, None, 3) == 0  # no data day: nothing to compare
    assert cooldown_remaining(day, day, 3) == 3  # same day of data (drift and new labels of one night)
    assert cooldown_remaining(day, day + timedelta(days=1), 3) == 2
    assert cooldown_remaining(day, day + timedelta(days=3), 3) == 0
    assert cooldown_remaining(day, day + timedelta(days=9), 3) == 0
    assert cooldown_remaining(day, day - timedelta(days=5), 3) == 8  # an older day replayed: still inside
    assert cooldown_remaining(day, day, 0) == 0  # 0 switches the cooldown off


def test_a_realized_quality_trigger_is_not_held_back_by_the_drift_cooldown() -> None:
    settings = load_settings({"FRAUD_RETRAIN_COOLDOWN_DAYS": "7", "FRAUD_PERFORMANCE_COOLDOWN_DAYS": "1"})
    assert cooldown_days(settings, set()) == ("FRAUD_RETRAIN_COOLDOWN_DAYS", 7)  # drift, new labels, manual
    assert cooldown_days(settings, {"drift"}) == ("FRAUD_RETRAIN_COOLDOWN_DAYS", 7)
    assert cooldown_days(settings, {PERFORMANCE}) == ("FRAUD_PERFORMANCE_COOLDOWN_DAYS", 1)
    assert cooldown_days(settings, {PERFORMANCE, "drift"}) == ("FRAUD_PERFORMANCE_COOLDOWN_DAYS", 1)
    # a drift retrain on day 10 rejected a challenger that could not know the change yet; realized quality
    # fell on the changed days' matured labels by day 12: that retrain runs, and one per day of data after it
    drift_decision = date(2026, 3, 10)
    _, days = cooldown_days(settings, {PERFORMANCE})
    assert cooldown_remaining(drift_decision, date(2026, 3, 12), days) == 0
    assert cooldown_remaining(date(2026, 3, 12), date(2026, 3, 12), days) == 1  # the same day twice: skipped
    assert cooldown_remaining(date(2026, 3, 12), date(2026, 3, 13), days) == 0
    _, drift_days = cooldown_days(settings, set())
    assert cooldown_remaining(drift_decision, date(2026, 3, 12), drift_days) == 5
