"""The fits of one retrain window, without services: search, evaluation fit, refit, thresholds and metrics."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from training_lib.config import PROJECT_ROOT
from training_lib.modeling.features import build_features
from training_lib.modeling.fitting import (
    SearchSpace,
    alert_rate,
    choose_threshold,
    evaluate,
    fit_window,
    load_search_space,
    predict,
    search,
    threshold_at_rate,
)
from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulator import Simulator

START = date(2026, 2, 1)
CHANGE = 9  # the fraud ring starts on the 10th day: inside the test days of a 12-day window
SIMULATION = SimulationConfig(
    seed=21, start=START, n_customers=3_000, transactions_per_day=6_000, fraud_shift_day=CHANGE, fraud_shift_share=0.006
)


def small_space(tmp_path: Path) -> SearchSpace:
    spec = {
        "base": {"n_estimators": 80, "subsample": 0.8, "tree_method": "hist", "n_jobs": 2},
        "early_stopping_rounds": 10,
        "candidates": [
            {"name": "shallow", "max_depth": 2, "learning_rate": 0.3, "class_weight": "none"},
            {"name": "deeper", "max_depth": 5, "learning_rate": 0.2, "class_weight": "balanced"},
        ],
    }
    path = tmp_path / "space.json"
    path.write_text(json.dumps(spec))
    return SearchSpace.load(path)


def simulated_days(config: SimulationConfig) -> dict[int, pd.DataFrame]:
    """Feature frames of 15 simulated days (offset -> frame with FEATURE_COLUMNS, label, card_token)."""
    simulator = Simulator(config)
    transactions = pd.concat([simulator.transactions(START + timedelta(days=i)) for i in range(15)], ignore_index=True)
    frame = build_features(transactions)
    frame["label"] = transactions["is_fraud"].astype("int8").to_numpy()
    frame["card_token"] = transactions["cc_num"].astype(str).to_numpy()  # a stand-in: no key needed here
    offset = (transactions["trans_date_trans_time"].dt.normalize() - pd.Timestamp(START)).dt.days
    return {int(k): part.reset_index(drop=True) for k, part in frame.groupby(offset.to_numpy())}


@pytest.fixture(scope="module")
def days() -> dict[int, pd.DataFrame]:
    return simulated_days(SIMULATION)


@pytest.fixture(scope="module")
def steady_days() -> dict[int, pd.DataFrame]:
    """The same world without the fraud ring."""
    return simulated_days(replace(SIMULATION, fraud_shift_day=None))


def span(days: dict[int, pd.DataFrame], first: int, last: int) -> pd.DataFrame:
    return pd.concat([days[i] for i in range(first, last + 1)], ignore_index=True)


def test_the_shipped_search_space_loads() -> None:
    space = load_search_space(PROJECT_ROOT / "include")
    assert len(space.candidates) >= 3 and space.early_stopping_rounds >= 1
    assert {c.class_weight for c in space.candidates} == {"balanced", "none"}


def test_a_broken_search_space_names_its_file(tmp_path: Path) -> None:
    path = tmp_path / "space.json"
    path.write_text('{"candidates": [{"name": "a", "class_weight": "sometimes"}]}')
    with pytest.raises(ValueError, match=r"space\.json.*class_weight"):
        SearchSpace.load(path)
    path.write_text("{}")
    with pytest.raises(ValueError, match=r"space\.json"):
        SearchSpace.load(path)


def test_search_ranks_candidates_by_validation_pr_auc(days, tmp_path: Path) -> None:
    train, validation = span(days, 0, 5), span(days, 6, 7)
    trials = search(small_space(tmp_path), train, train["label"].to_numpy(), validation, validation["label"].to_numpy())
    assert [t.validation_pr_auc for t in trials] == sorted((t.validation_pr_auc for t in trials), reverse=True)
    for trial in trials:
        assert 1 <= trial.n_trees <= 80
        scores = predict(trial.model, validation)  # the early-stopped trees only
        assert average_precision_score(validation["label"], scores) == pytest.approx(trial.validation_pr_auc)


def test_the_refit_learns_the_newest_days_the_evaluation_fit_never_saw(days, tmp_path: Path) -> None:
    """Days 9-11 carry a new fraud pattern; only the refit saw them. On the days after the window the refit
    catches the pattern, the evaluation fit (the same recipe without the test days) does not."""
    parts = {"train": span(days, 0, 6), "validation": span(days, 7, 8), "test": span(days, 9, 11)}
    fits = fit_window(parts, small_space(tmp_path), strategy="alert_budget", alert_budget=0.005)
    later = span(days, 12, 14)
    y = later["label"].to_numpy()
    refit, evaluation = predict(fits.model, later), predict(fits.evaluation_model, later)
    assert average_precision_score(y, refit) > average_precision_score(y, evaluation) + 0.05
    # the evidence is the evaluation fit's, on the test days
    test_scores = predict(fits.evaluation_model, parts["test"])
    np.testing.assert_allclose(test_scores, fits.test_scores)
    assert fits.test_metrics["pr_auc"] == pytest.approx(average_precision_score(parts["test"]["label"], test_scores))
    assert fits.recipe.name == fits.trials[0].candidate.name
    assert fits.baseline_metrics["rows"] == len(parts["test"])


def test_the_threshold_survives_the_refit_as_an_alert_rate(steady_days) -> None:
    """The shipped search space: the refit, with the evaluation fit's threshold, alerts about the budget on
    days no fit saw (a threshold taken from the refit's own rows would alert far less)."""
    days = steady_days
    parts = {"train": span(days, 0, 5), "validation": span(days, 6, 7), "test": span(days, 8, 9)}
    budget = 0.005
    fits = fit_window(parts, load_search_space(PROJECT_ROOT / "include"), strategy="alert_budget", alert_budget=budget)
    assert fits.alert_rate == budget
    assert (fits.test_scores >= fits.threshold).mean() == pytest.approx(budget, abs=0.001)
    later = span(days, 10, 14)
    rate = (predict(fits.model, later) >= fits.threshold).mean()
    assert 0.4 * budget < rate < 2.5 * budget, rate
    in_sample = threshold_at_rate(predict(fits.model, parts["test"]), budget)
    assert (predict(fits.model, later) >= in_sample).mean() < rate


def test_alert_budget_threshold_flags_about_the_budget() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(100_000)
    threshold = choose_threshold(np.zeros(len(scores)), scores, "alert_budget", 0.005)
    assert (scores >= threshold).mean() == pytest.approx(0.005, abs=0.0005)
    assert threshold_at_rate(scores, 0.005) == threshold


def test_best_f1_threshold_separates_a_clean_split() -> None:
    y = np.array([0] * 90 + [1] * 10)
    scores = np.concatenate([np.linspace(0.0, 0.4, 90), np.linspace(0.6, 1.0, 10)])
    threshold = choose_threshold(y, scores, "best_f1", 0.005)
    assert 0.4 < threshold <= 0.6
    assert evaluate(y, scores, threshold, 0.1)["f1_at_threshold"] == 1.0
    assert alert_rate(y, scores, "best_f1", 0.005) == pytest.approx(0.1)  # the rate its threshold flags
    assert alert_rate(y, scores, "alert_budget", 0.005) == 0.005


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
