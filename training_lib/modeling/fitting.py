"""Model fitting, pure: the estimators, the time-aware search, the refits, thresholds and metrics.

No MLflow and no lake here (``training_lib.modeling.train`` logs and registers); everything works on feature frames
(``features.FEATURE_COLUMNS``) and label arrays. A retrain fits one *recipe* three times, on growing spans of
its window's days (oldest first: train → validation → test):

1. **search** — every candidate of ``include/training/xgboost_search.json`` is fitted on the train days with
   early stopping on the validation days; the best validation PR-AUC gives the recipe (settings and number of
   trees). Validation metrics are *selection* metrics: the validation days also chose the number of trees.
2. **evaluation fit** — the recipe fitted on train + validation. The test days are unseen by it: its metrics
   there are the retrain's evidence, and the gate compares it with the champion on those days.
3. **refit** — the recipe fitted on the whole window, test days included, so that the registered model has
   learned the newest matured days (the very days whose change triggered the retrain). It is never scored on
   its own rows; its evidence is the evaluation fit's.

The decision threshold is carried over as an **alert rate**: the rate the selection fit alerts on the validation
days (the alert budget itself, or the rate of its best-F1 threshold), turned into a score by the evaluation fit's
scores on the unseen test days (a quantile of scores: no label is used). Refit and evaluation fit share settings,
number of trees and class weighting, so their score scales match; ``bench_model_quality.py`` measures the alert
rate the refit reaches on the days after its window.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training_lib.modeling.features import CATEGORICAL_FEATURES, FEATURE_COLUMNS, NUMERIC_FEATURES

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SEARCH_SPACE_FILE = Path("training") / "xgboost_search.json"
CLASS_WEIGHTS = ("balanced", "none")


# --------------------------------------------------------------------------- estimators


def preprocessor(scale: bool):
    """One-hot categories (fixed category lists) and numerics as they are, or imputed and scaled."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from training_lib.ingestion.schema import CATEGORIES

    categories = [list(CATEGORIES) if c == "category" else ["F", "M"] for c in CATEGORICAL_FEATURES]
    onehot = OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False)
    numeric = (
        Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
        if scale
        else "passthrough"
    )
    return ColumnTransformer(
        [("categorical", onehot, list(CATEGORICAL_FEATURES)), ("numeric", numeric, list(NUMERIC_FEATURES))],
        verbose_feature_names_out=False,
    )


def make_baseline():
    """Logistic regression with balanced class weights on imputed, scaled numerics."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    model = LogisticRegression(class_weight="balanced", max_iter=2000)
    return Pipeline([("features", preprocessor(scale=True)), ("model", model)])


def scale_pos_weight(y: np.ndarray, class_weight: str) -> float:
    """XGBoost's positive-class weight: legit / fraud rows for ``balanced``, 1 for ``none``."""
    if class_weight not in CLASS_WEIGHTS:
        raise ValueError(f"class_weight must be one of {CLASS_WEIGHTS}, got {class_weight!r}")
    if class_weight == "none":
        return 1.0
    positives = max(1, int(y.sum()))
    return (len(y) - positives) / positives


# --------------------------------------------------------------------------- the recipe and its search


@dataclass(frozen=True)
class Candidate:
    """One XGBoost setting of the search space."""

    name: str
    params: dict[str, Any]  # XGBClassifier keyword arguments (base settings included)
    class_weight: str = "balanced"


@dataclass(frozen=True)
class SearchSpace:
    candidates: tuple[Candidate, ...]
    early_stopping_rounds: int

    @classmethod
    def load(cls, path: Path) -> SearchSpace:
        """Read a search space file; a clear error names the file and the problem."""
        try:
            spec = json.loads(path.read_text())
            base = dict(spec.get("base", {}))
            candidates = []
            for entry in spec["candidates"]:
                entry = dict(entry)
                name, weight = str(entry.pop("name")), str(entry.pop("class_weight", "balanced"))
                if weight not in CLASS_WEIGHTS:
                    raise ValueError(f"candidate {name!r}: class_weight must be one of {CLASS_WEIGHTS}")
                candidates.append(Candidate(name, {**base, **entry}, weight))
            rounds = int(spec.get("early_stopping_rounds", 30))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a valid XGBoost search space: {exc}") from exc
        if not candidates or len({c.name for c in candidates}) != len(candidates) or rounds < 1:
            raise ValueError(f"{path}: needs candidates with distinct names and early_stopping_rounds >= 1")
        return cls(tuple(candidates), rounds)


def load_search_space(include_folder: Path) -> SearchSpace:
    return SearchSpace.load(include_folder / SEARCH_SPACE_FILE)


@dataclass(frozen=True)
class Recipe:
    """What the refits repeat: a candidate's settings and the number of trees early stopping chose."""

    name: str
    params: dict[str, Any]
    class_weight: str
    n_trees: int

    def estimator(self, y: np.ndarray):
        """An unfitted pipeline (one-hot + XGBoost) for labels ``y`` (class weight from them)."""
        from sklearn.pipeline import Pipeline
        from xgboost import XGBClassifier

        params = {**self.params, "n_estimators": self.n_trees}
        model = XGBClassifier(**params, scale_pos_weight=scale_pos_weight(y, self.class_weight), eval_metric="aucpr")
        return Pipeline([("features", preprocessor(scale=False)), ("model", model)])

    def fit(self, frame: pd.DataFrame, y: np.ndarray):
        """The recipe fitted on ``frame`` (its FEATURE_COLUMNS) and ``y``."""
        return self.estimator(y).fit(frame[list(FEATURE_COLUMNS)], y)

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Trial:
    """One candidate of the search: fitted on the train days, early-stopped and scored on the validation days."""

    candidate: Candidate
    n_trees: int
    validation_pr_auc: float
    seconds: float
    model: Any = field(repr=False, default=None)  # the fitted pipeline

    @property
    def recipe(self) -> Recipe:
        return Recipe(self.candidate.name, self.candidate.params, self.candidate.class_weight, self.n_trees)


def search(
    space: SearchSpace,
    train: pd.DataFrame,
    y_train: np.ndarray,
    validation: pd.DataFrame,
    y_validation: np.ndarray,
    progress: Any = None,
) -> list[Trial]:
    """Fit every candidate on ``train`` with early stopping on ``validation``; trials best first.

    The one-hot encoding is fitted once on ``train`` and shared. ``progress(i, n, trial)`` is called after each.
    """
    from sklearn.metrics import average_precision_score
    from sklearn.pipeline import Pipeline
    from xgboost import XGBClassifier

    columns = list(FEATURE_COLUMNS)
    encoder = preprocessor(scale=False).fit(train[columns])
    x_train, x_validation = encoder.transform(train[columns]), encoder.transform(validation[columns])
    trials = []
    for i, candidate in enumerate(space.candidates, start=1):
        started = time.perf_counter()
        model = XGBClassifier(
            **candidate.params,
            scale_pos_weight=scale_pos_weight(y_train, candidate.class_weight),
            eval_metric="aucpr",
            early_stopping_rounds=space.early_stopping_rounds,
        )
        model.fit(x_train, y_train, eval_set=[(x_validation, y_validation)], verbose=False)
        n_trees = int(model.best_iteration) + 1
        scores = model.predict_proba(x_validation)[:, 1]  # XGBoost predicts with the best iteration's trees
        trial = Trial(
            candidate,
            n_trees,
            float(average_precision_score(y_validation, scores)),
            time.perf_counter() - started,
            Pipeline([("features", encoder), ("model", model)]),
        )
        trials.append(trial)
        if progress is not None:
            progress(i, len(space.candidates), trial)
    return sorted(trials, key=lambda t: (-t.validation_pr_auc, t.candidate.name))


def predict(model: Any, frame: pd.DataFrame) -> np.ndarray:
    """Fraud scores of a fitted pipeline (an early-stopped one predicts with its best iteration's trees)."""
    return model.predict_proba(frame[list(FEATURE_COLUMNS)])[:, 1]


# --------------------------------------------------------------------------- thresholds and metrics


def choose_threshold(y: np.ndarray, scores: np.ndarray, strategy: str, alert_budget: float) -> float:
    """Decision threshold on validation: flag ``alert_budget`` of rows, or maximise F1."""
    import numpy as np
    from sklearn.metrics import precision_recall_curve

    if strategy == "alert_budget":
        return threshold_at_rate(scores, alert_budget)
    precision, recall, thresholds = precision_recall_curve(y, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def alert_rate(y: np.ndarray, scores: np.ndarray, strategy: str, alert_budget: float) -> float:
    """The share of rows the threshold of ``strategy`` flags on these (validation) rows."""
    if strategy == "alert_budget":
        return alert_budget
    return float((scores >= choose_threshold(y, scores, strategy, alert_budget)).mean())


def threshold_at_rate(scores: np.ndarray, rate: float) -> float:
    """The score at which ``rate`` of ``scores`` is flagged (a quantile: no label involved)."""
    import numpy as np

    return float(np.quantile(scores, 1.0 - rate, method="higher"))


def evaluate(
    y: np.ndarray, scores: np.ndarray, threshold: float, alert_budget: float, cards: np.ndarray | None = None
) -> dict[str, float]:
    """PR-AUC (primary), ROC-AUC, precision/recall/F1 at the threshold, recall at the alert budget,
    alert rate, and card precision@100 (of the 100 cards with the highest score, the share with fraud)."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

    flagged = scores >= threshold
    top = np.argsort(-scores, kind="stable")[: max(1, math.ceil(alert_budget * len(scores)))]
    metrics = {
        "pr_auc": float(average_precision_score(y, scores)),
        "roc_auc": float(roc_auc_score(y, scores)),
        "precision_at_threshold": float(precision_score(y, flagged, zero_division=0)),
        "recall_at_threshold": float(recall_score(y, flagged, zero_division=0)),
        "f1_at_threshold": float(f1_score(y, flagged, zero_division=0)),
        "recall_at_alert_budget": float(y[top].sum() / max(1, y.sum())),
        "alert_rate": float(flagged.mean()),
        "rows": float(len(y)),
        "frauds": float(y.sum()),
    }
    if cards is not None:
        per_card = pd.DataFrame({"card": cards, "score": scores, "fraud": y}).groupby("card").max()
        top_cards = per_card.nlargest(100, "score")
        metrics["card_precision_at_100"] = float(top_cards["fraud"].mean())
    return metrics


# --------------------------------------------------------------------------- one window, every fit


@dataclass
class WindowFits:
    """Every fit of one retrain window and what was measured, each on days its model was not fitted on."""

    trials: list[Trial]  # best first
    recipe: Recipe
    alert_rate: float  # the alert rate carried over (chosen on the validation days)
    threshold: float  # its score under the evaluation fit (quantile of its test-day scores)
    selection_metrics: dict[str, float]  # best search fit on the validation days (which chose its trees)
    evaluation_model: Any  # fitted on train + validation
    test_scores: Any  # the evaluation fit's scores on the test days
    test_metrics: dict[str, float]  # ... and its metrics there: the retrain's evidence
    baseline_model: Any  # logistic regression, fitted on train + validation
    baseline_metrics: dict[str, float]  # on the test days
    model: Any  # the refit on the whole window: what gets registered
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each phase


def fit_window(
    parts: dict[str, pd.DataFrame],
    space: SearchSpace,
    *,
    strategy: str,
    alert_budget: float,
    label: str = "label",
    progress: Any = None,
) -> WindowFits:
    """Search on train/validation, evaluation fit and baseline on train + validation scored on test, refit on all.

    ``parts``: the ``train``, ``validation`` and ``test`` feature frames (FEATURE_COLUMNS, ``label``, and
    ``card_token`` on test for card precision), oldest days first."""
    import pandas as pd

    train, validation, test = parts["train"], parts["validation"], parts["test"]
    seen = pd.concat([train, validation], ignore_index=True)
    window = pd.concat([seen, test], ignore_index=True)
    y_train, y_val, y_test, y_seen, y_window = (p[label].to_numpy() for p in (train, validation, test, seen, window))
    cards = test["card_token"].to_numpy() if "card_token" in test else None

    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[phase] = now - clock
        clock = now

    trials = search(space, train, y_train, validation, y_val, progress)
    best = trials[0]
    val_scores = predict(best.model, validation)
    rate = alert_rate(y_val, val_scores, strategy, alert_budget)
    selection = evaluate(y_val, val_scores, choose_threshold(y_val, val_scores, strategy, alert_budget), alert_budget)
    lap("search")

    evaluation_model = best.recipe.fit(seen, y_seen)
    test_scores = predict(evaluation_model, test)
    threshold = threshold_at_rate(test_scores, rate)  # from the test days' scores, never their labels
    test_metrics = evaluate(y_test, test_scores, threshold, alert_budget, cards)
    lap("evaluation fit")

    baseline = make_baseline().fit(seen[list(FEATURE_COLUMNS)], y_seen)
    baseline_scores = predict(baseline, test)
    baseline_metrics = evaluate(y_test, baseline_scores, threshold_at_rate(baseline_scores, rate), alert_budget, cards)
    lap("baseline")
    model = best.recipe.fit(window, y_window)
    lap("refit")

    return WindowFits(
        trials=trials,
        recipe=best.recipe,
        alert_rate=rate,
        threshold=threshold,
        selection_metrics=selection,
        evaluation_model=evaluation_model,
        test_scores=test_scores,
        test_metrics=test_metrics,
        baseline_model=baseline,
        baseline_metrics=baseline_metrics,
        model=model,
        seconds=seconds,
    )
