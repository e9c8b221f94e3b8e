"""Training logic that needs no service: splits, threshold choice, metrics, cooldown."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from training_lib.train import NotEnoughData, choose_threshold, cooldown_remaining, evaluate, split_days


def days(n: int) -> list[date]:
    return [date(2026, 1, 1) + timedelta(days=i) for i in range(n)]


@pytest.mark.parametrize(("n", "sizes"), [(3, (1, 1, 1)), (10, (6, 2, 2)), (30, (18, 6, 6)), (7, (5, 1, 1))])
def test_out_of_time_splits_keep_order_and_give_test_the_newest_days(n: int, sizes: tuple[int, int, int]) -> None:
    splits = split_days(days(n))
    assert tuple(len(splits[s]) for s in ("train", "validation", "test")) == sizes
    assert splits["train"] + splits["validation"] + splits["test"] == days(n)
    assert max(splits["train"]) < min(splits["validation"]) <= max(splits["validation"]) < min(splits["test"])


def test_too_few_days_is_a_clear_error() -> None:
    with pytest.raises(NotEnoughData, match="at least 3"):
        split_days(days(2))


def test_alert_budget_threshold_flags_about_the_budget() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(100_000)
    threshold = choose_threshold(np.zeros(len(scores)), scores, "alert_budget", 0.005)
    assert (scores >= threshold).mean() == pytest.approx(0.005, abs=0.0005)


def test_best_f1_threshold_separates_a_clean_split() -> None:
    y = np.array([0] * 90 + [1] * 10)
    scores = np.concatenate([np.linspace(0.0, 0.4, 90), np.linspace(0.6, 1.0, 10)])
    threshold = choose_threshold(y, scores, "best_f1", 0.005)
    assert 0.4 < threshold <= 0.6
    assert evaluate(y, scores, threshold, 0.1)["f1_at_threshold"] == 1.0


def test_metrics_hand_computed() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.2, 0.1, 0.1, 0.05, 0.01])
    cards = np.array(["a", "b", "a", "c", "c", "d", "d", "e", "e", "f"])
    metrics = evaluate(y, scores, threshold=0.75, alert_budget=0.2, cards=cards)
    assert metrics["precision_at_threshold"] == 0.5  # flagged: 0.9 (fraud), 0.8 (legit)
    assert metrics["recall_at_threshold"] == pytest.approx(1 / 3)
    assert metrics["recall_at_alert_budget"] == pytest.approx(1 / 3)  # top 2 rows hold one of three frauds
    assert metrics["alert_rate"] == 0.2
    assert metrics["card_precision_at_100"] == pytest.approx(2 / 6)  # cards a and f had fraud
    # PR-AUC (average precision) by hand: frauds at ranks 1, 3, 10 -> (1/1 + 2/3 + 3/10) / 3
    assert metrics["pr_auc"] == pytest.approx((1 + 2 / 3 + 3 / 10) / 3)


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
