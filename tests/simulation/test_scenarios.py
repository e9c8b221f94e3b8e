"""The simulator's scenarios against the platform's own fits: harmful changes hurt a champion, a retrain on
data that holds them recovers, the benign one does not hurt. Counterfactual: the same champion on the same
days of the world with and without the change (``benchmarks/bench_model_quality.py`` measures the same at
full volume, for several seeds)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from training_lib.config import PROJECT_ROOT
from training_lib.modeling.dataset import split_days
from training_lib.modeling.features import build_features
from training_lib.modeling.fitting import fit_window, load_search_space, predict
from training_lib.modeling.gate import decide
from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulator import Simulator

pytestmark = pytest.mark.slow

BASE = SimulationConfig(seed=4, start=date(2026, 3, 1), n_customers=4_000, transactions_per_day=8_000)
WINDOW = 21  # days before the change: the champion's window
CHANGE = WINDOW  # offset of the first changed day
AFTER = 10  # changed days the champion is judged on; then a retrain on a window holding them


def world(config: SimulationConfig) -> pd.DataFrame:
    simulator = Simulator(config)
    days = [config.start + timedelta(days=i) for i in range(CHANGE + 2 * AFTER)]
    transactions = pd.concat([simulator.transactions(day) for day in days], ignore_index=True)
    frame = build_features(transactions)
    frame["label"] = transactions["is_fraud"].astype("int8").to_numpy()
    frame["card_token"] = transactions["cc_num"].astype(str).to_numpy()
    frame["offset"] = (transactions["trans_date_trans_time"].dt.normalize() - pd.Timestamp(config.start)).dt.days
    return frame


def fits(frame: pd.DataFrame, first: int, last: int):
    splits = split_days(list(range(first, last + 1)))
    parts = {name: frame[frame["offset"].isin(days)].reset_index(drop=True) for name, days in splits.items()}
    return fit_window(parts, load_search_space(PROJECT_ROOT / "include"), strategy="alert_budget", alert_budget=0.005)


def pr_auc(model, frame: pd.DataFrame, first: int, last: int) -> float:
    rows = frame[(frame["offset"] >= first) & (frame["offset"] <= last)]
    return float(average_precision_score(rows["label"], predict(model, rows)))


@pytest.fixture(scope="module")
def baseline() -> tuple[pd.DataFrame, object]:
    frame = world(BASE)
    return frame, fits(frame, 0, WINDOW - 1).model


@pytest.mark.parametrize(
    "scenario",
    [{"new_fraud_pattern_day": CHANGE}, {"fraud_shift_day": CHANGE}],
    ids=["card-testing", "fraud-ring"],
)
def test_a_harmful_change_hurts_the_champion_and_a_retrain_recovers(baseline, scenario: dict) -> None:
    frame, champion = baseline
    changed = world(replace(BASE, **scenario))
    before = pr_auc(champion, frame, CHANGE, CHANGE + AFTER - 1)  # the same days without the change
    after = pr_auc(champion, changed, CHANGE, CHANGE + AFTER - 1)
    assert after < before - 0.08, (before, after)
    retrained = fits(changed, CHANGE + AFTER - WINDOW, CHANGE + AFTER - 1).model  # holds the changed days
    later = CHANGE + AFTER, CHANGE + 2 * AFTER - 1
    assert pr_auc(retrained, changed, *later) > pr_auc(champion, changed, *later) + 0.05


def test_amount_inflation_is_benign_and_no_worse_model_is_promoted_on_it(baseline) -> None:
    """Drift reports flag the inflation (``test_drift_scenarios``); the champion does not suffer, and the gate,
    comparing a retrain's evaluation fit with the champion on the same unseen days, promotes nothing that is
    worse on the days after."""
    frame, champion = baseline
    inflated = world(replace(BASE, amount_inflation_day=CHANGE, amount_inflation_factor=1.5))
    before = pr_auc(champion, frame, CHANGE, CHANGE + AFTER - 1)
    after = pr_auc(champion, inflated, CHANGE, CHANGE + AFTER - 1)
    assert after > before - 0.03, (before, after)  # prices rose for everyone: nothing the model relied on
    first, last = CHANGE + AFTER - WINDOW, CHANGE + AFTER - 1
    retrain = fits(inflated, first, last)
    test = split_days(list(range(first, last + 1)))["test"]
    evidence = (
        pr_auc(retrain.evaluation_model, inflated, test[0], test[-1]),
        pr_auc(champion, inflated, test[0], test[-1]),
    )
    decision = decide(*evidence, floor=0.5, margin=0.01)
    later = CHANGE + AFTER, CHANGE + 2 * AFTER - 1
    assert not decision.promote or pr_auc(retrain.model, inflated, *later) >= pr_auc(champion, inflated, *later) - 0.02
