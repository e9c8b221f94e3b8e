"""The scoring path's matrix gives the pipeline's own scores, bit for bit; other models score as they are."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from training_lib.modeling.features import FEATURE_COLUMNS, NUMERIC_FEATURES, build_features
from training_lib.modeling.fitting import Recipe, make_baseline
from training_lib.scoring.predict import _one_hot_blocks, fraud_scorer
from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulator import Simulator

START = date(2026, 3, 1)


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Features of four simulated days (labels) and of a fifth with unknown, missing and odd values."""
    simulator = Simulator(SimulationConfig(seed=5, start=START, n_customers=800, transactions_per_day=2500))
    days = [simulator.transactions(START + timedelta(days=i)) for i in range(5)]
    train = pd.concat(days[:4], ignore_index=True)
    features = build_features(train)[list(FEATURE_COLUMNS)]
    target = build_features(days[4], train)[list(FEATURE_COLUMNS)].copy()
    target.loc[target.index[:5], "category"] = "not_a_category"  # unknown: a row of zeros, as the encoder does
    target.loc[target.index[5:10], "gender"] = None
    target.loc[target.index[10:15], NUMERIC_FEATURES[0]] = np.nan  # missing stays missing for XGBoost
    return features, train["is_fraud"].to_numpy(), target


def test_the_xgboost_pipeline_scores_bit_for_bit_as_its_own_predict_proba(frames) -> None:
    features, labels, target = frames
    params = {"n_estimators": 40, "max_depth": 4, "learning_rate": 0.3, "tree_method": "hist", "n_jobs": 2}
    model = Recipe("test", params, "balanced", 40).fit(features, labels)
    assert _one_hot_blocks(model) is not None  # the NumPy matrix path is the one taken
    expected = model.predict_proba(target)[:, 1]
    scores = fraud_scorer(model)(target)
    assert scores.dtype == np.float64 and scores.shape == expected.shape
    assert np.array_equal(scores, expected)
    assert len(np.unique(scores)) > 100  # a real spread of scores, not a constant


def test_any_other_model_is_scored_by_its_own_predict_proba(frames) -> None:
    features, labels, target = frames
    baseline = make_baseline().fit(features, labels)  # imputed and scaled numerics: not the one-hot layout
    assert _one_hot_blocks(baseline) is None
    assert np.array_equal(fraud_scorer(baseline)(target), baseline.predict_proba(target)[:, 1])
