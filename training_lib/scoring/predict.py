"""Fraud probabilities from a loaded model version, for feature frames (``features.FEATURE_COLUMNS``).

The platform's XGBoost pipeline (``fitting.Recipe.estimator``: a ``ColumnTransformer`` of one-hot categories
and pass-through numerics, then ``XGBClassifier``) is scored on the same matrix built with NumPy: one
category lookup per column instead of scikit-learn's per-column checks and copies (on 1.1 M rows, 2 cores:
0.79 s with the prediction instead of the pipeline's 2.42 s, ``bench_scoring.py``). The scores are the
pipeline's own, bit for bit (``tests/scoring/test_predict.py``). Any other model (the logistic baseline, a
version logged by another layout) is scored by its own ``predict_proba``, so every registered version stays
scoreable for rollback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Scorer = Callable[["pd.DataFrame"], "np.ndarray"]


def fraud_scorer(model: Any) -> Scorer:
    """A function frame -> fraud probability per row (float64), equal to ``model.predict_proba(frame)[:, 1]``."""
    blocks = _one_hot_blocks(model)
    if blocks is None:
        return lambda frame: model.predict_proba(frame)[:, 1]
    classifier = model.steps[-1][1]

    def score(frame: pd.DataFrame) -> np.ndarray:
        return classifier.predict_proba(_matrix(frame, blocks))[:, 1].astype("float64")

    return score


def _one_hot_blocks(model: Any) -> list[tuple[str, list[str], list[Any] | None]] | None:
    """The column blocks of a fitted one-hot + pass-through + XGBoost pipeline, in output order:
    ``("onehot", [column], categories)`` or ``("passthrough", columns, None)``; None for any other model."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
    from xgboost import XGBClassifier

    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        return None
    features, classifier = model.steps[0][1], model.steps[1][1]
    if not isinstance(features, ColumnTransformer) or not isinstance(classifier, XGBClassifier):
        return None
    blocks: list[tuple[str, list[str], list[Any] | None]] = []
    for name, transformer, columns in features.transformers_:  # fitted: "passthrough" is an identity function
        columns = list(columns)
        if transformer == "drop" or not columns:
            continue
        if name == "remainder":  # columns not named by the pipeline (given by position): let it score them
            return None
        if transformer == "passthrough" or (isinstance(transformer, FunctionTransformer) and transformer.func is None):
            blocks.append(("passthrough", columns, None))
        elif (
            isinstance(transformer, OneHotEncoder)
            and transformer.drop is None
            and transformer.handle_unknown == "ignore"
            and not transformer.sparse_output
            and getattr(transformer, "max_categories", None) is None
            and getattr(transformer, "min_frequency", None) is None
        ):
            categories = transformer.categories_
            blocks.extend(("onehot", [column], list(cats)) for column, cats in zip(columns, categories, strict=True))
        else:
            return None  # scaled, imputed or otherwise transformed columns: the pipeline scores them
    return blocks


def _matrix(frame: pd.DataFrame, blocks: list[tuple[str, list[str], list[Any] | None]]) -> np.ndarray:
    """The ColumnTransformer's output, as float32 (XGBoost's input type): an unknown or missing category is a
    row of zeros (``handle_unknown="ignore"``), numerics as they are (NaN stays missing)."""
    import numpy as np
    import pandas as pd

    width = sum(len(categories) if kind == "onehot" else len(columns) for kind, columns, categories in blocks)
    out = np.zeros((len(frame), width), dtype=np.float32)
    at = 0
    for kind, columns, categories in blocks:
        if kind == "passthrough":
            out[:, at : at + len(columns)] = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)
            at += len(columns)
            continue
        codes = pd.Categorical(frame[columns[0]], categories=categories).codes
        known = np.flatnonzero(codes >= 0)
        out[known, at + codes[known]] = 1.0
        at += len(categories)
    return out
