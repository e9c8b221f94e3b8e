"""What one training leaves in MLflow: the run's parameters and tags, a nested run per fit, the gate's evidence
(metrics, figures, the fits record, the drift reference) and the registered version's tags.

Every metric names the days it was computed on; none is computed on rows the scored model was fitted on.
"""

from __future__ import annotations

import json
import logging
import tempfile
from contextlib import contextmanager
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training_lib.config import Settings
from training_lib.lake.layout import VALIDATED_TRANSACTIONS
from training_lib.lake.storage import Lake
from training_lib.modeling.dataset import LABEL, DatasetInfo, day_range

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)


def _figures(y: np.ndarray, scores: np.ndarray, threshold: float, importance: pd.Series, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    paths = []
    for name, draw in (
        ("pr_curve.png", lambda ax: PrecisionRecallDisplay.from_predictions(y, scores, ax=ax, name="XGBoost")),
        ("roc_curve.png", lambda ax: RocCurveDisplay.from_predictions(y, scores, ax=ax, name="XGBoost")),
        (
            "confusion_matrix.png",
            lambda ax: ConfusionMatrixDisplay.from_predictions(
                y, (scores >= threshold).astype(int), ax=ax, display_labels=["legit", "fraud"], colorbar=False
            ),
        ),
        ("feature_importance.png", lambda ax: importance.sort_values().plot.barh(ax=ax, color="#4c72b0")),
    ):
        figure, axis = plt.subplots(figsize=(7, 5 if name != "feature_importance.png" else 7))
        draw(axis)
        what = "registered refit" if name == "feature_importance.png" else "evaluation fit on the test days"
        axis.set_title(f"{name.removesuffix('.png').replace('_', ' ')} ({what})")
        figure.tight_layout()
        path = folder / name
        figure.savefig(path, dpi=90)
        plt.close(figure)
        paths.append(path)
    return paths


def _pip_requirements() -> list[str]:
    import numpy
    import pandas
    import sklearn
    import xgboost

    return [
        f"xgboost-cpu=={xgboost.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"pandas=={pandas.__version__}",
        f"numpy=={numpy.__version__}",
    ]


def log_model(model: Any, *, signature: Any, registered_model_name: str | None = None, input_example: Any = None):
    import mlflow.sklearn

    return mlflow.sklearn.log_model(
        model,
        name="model",
        signature=signature,
        input_example=input_example,
        registered_model_name=registered_model_name,
        serialization_format="cloudpickle",
        pyfunc_predict_fn="predict_proba",
        pip_requirements=_pip_requirements(),
    )


@contextmanager
def _nested_run(name: str, info: DatasetInfo, fit: str, fitted_on: list[str], evaluated_on: list[str], **tags: str):
    """A child run of the training run, tagged with the days its model was fitted and evaluated on."""
    import mlflow

    with mlflow.start_run(run_name=name, nested=True) as child:
        days = {"fitted_on": day_range(fitted_on), "evaluated_on": day_range(evaluated_on)}
        mlflow.set_tags({"dataset_id": info.dataset_id, "fit": fit, **days, **tags})
        yield child


def _fits_record(info: DatasetInfo, fits: Any, strategy: str, evaluation_run_id: str) -> dict[str, Any]:
    """``fits.json``: which fit saw which days, which one is registered, and where each was evaluated."""
    days = info.split_days
    return {
        "registered": "refit",
        "note": "test_* metrics: the evaluation fit (the recipe without the test days) on the test days; "
        "selection_validation_*: the best search fit on the validation days, which also chose its number of "
        "trees; the registered refit saw every day of the window and is scored on none of them",
        "search": {
            "fitted_on": days["train"],
            "evaluated_on": days["validation"],
            "trials": [
                {"name": t.candidate.name, "n_trees": t.n_trees, "validation_pr_auc": t.validation_pr_auc}
                for t in fits.trials
            ],
        },
        "evaluation": {
            "fitted_on": days["train"] + days["validation"],
            "evaluated_on": days["test"],
            "run_id": evaluation_run_id,
        },
        "refit": {"fitted_on": info.days, "evaluated_on": []},
        "recipe": fits.recipe.describe(),
        "threshold": {
            "alert_rate": fits.alert_rate,
            "value": fits.threshold,
            "strategy": strategy,
            "rule": "the rate the selection fit alerts on the validation days, as a quantile of the evaluation "
            "fit's scores on the test days (no label used)",
        },
    }


def log_run_header(settings: Settings, info: DatasetInfo, fits: Any, tags: dict[str, str]) -> None:
    """The parent run's tags (which fit is registered, on which days each was fitted) and parameters."""
    import mlflow

    days, recipe = info.split_days, fits.recipe
    mlflow.set_tags(
        {
            "dataset_id": info.dataset_id,
            "model_family": "xgboost",
            "registered_fit": "refit",
            "fit.refit.fitted_on": day_range(info.days),
            "fit.evaluation.fitted_on": day_range(days["train"] + days["validation"]),
            "fit.evaluation.evaluated_on": day_range(days["test"]),
            **tags,
        }
    )
    mlflow.log_params(
        {
            "window_first_day": info.days[0],
            "window_last_day": info.days[-1],
            **{f"{name}_days": day_range(split) for name, split in days.items()},
            **{f"{name}_rows": rows for name, rows in info.rows.items()},
            **{f"{name}_frauds": frauds for name, frauds in info.frauds.items()},
            "threshold_strategy": settings.threshold_strategy,
            "alert_budget": settings.alert_budget,
            "recipe": recipe.name,
            "n_trees": recipe.n_trees,
            "class_weight": recipe.class_weight,
            **{f"xgb_{k}": v for k, v in recipe.params.items()},
        }
    )


def log_child_runs(info: DatasetInfo, fits: Any, signature: Any) -> dict[str, str]:
    """Nested runs: each search candidate, the evaluation fit and the baseline (their models logged).

    Returns ``evaluation_run_id`` and ``baseline_run_id``."""
    import mlflow

    days, recipe = info.split_days, fits.recipe
    seen_days = days["train"] + days["validation"]
    note = "the validation days also chose the number of trees: a selection metric"
    for rank, trial in enumerate(fits.trials, start=1):
        with _nested_run(f"search-{trial.candidate.name}", info, "search", days["train"], days["validation"],
                         rank=str(rank), metrics_note=note):  # fmt: skip
            mlflow.log_params({f"xgb_{k}": v for k, v in trial.candidate.params.items()})
            mlflow.log_param("class_weight", trial.candidate.class_weight)
            metrics = {"validation_pr_auc": trial.validation_pr_auc, "n_trees": trial.n_trees}
            mlflow.log_metrics({**metrics, "fit_seconds": trial.seconds})
    with _nested_run("evaluation-fit", info, "evaluation", seen_days, days["test"]) as evaluation_run:
        mlflow.log_params({"recipe": recipe.name, "n_trees": recipe.n_trees})
        mlflow.log_metrics({"threshold": fits.threshold, **{f"test_{k}": v for k, v in fits.test_metrics.items()}})
        log_model(fits.evaluation_model, signature=signature)
    with _nested_run("baseline-logistic-regression", info, "baseline", seen_days, days["test"],
                     model_family="logistic_regression") as baseline_run:  # fmt: skip
        mlflow.log_metrics({f"test_{k}": v for k, v in fits.baseline_metrics.items()})
        log_model(fits.baseline_model, signature=signature)
    return {"evaluation_run_id": evaluation_run.info.run_id, "baseline_run_id": baseline_run.info.run_id}


def log_evidence(settings: Settings, info: DatasetInfo, fits: Any, test: pd.DataFrame, evaluation_run_id: str) -> None:
    """The parent run's metrics, plots, ``features.json``, ``dataset.json``, ``fits.json`` and drift reference."""
    import mlflow
    import pandas as pd

    from training_lib.modeling.features import FEATURE_COLUMNS
    from training_lib.modeling.reference import CHAMPION_REFERENCE_ARTIFACT, build_reference

    mlflow.log_metrics({"threshold": fits.threshold, "alert_rate_target": fits.alert_rate})
    mlflow.log_metrics({f"test_{k}": v for k, v in fits.test_metrics.items()})
    mlflow.log_metrics({f"selection_validation_{k}": v for k, v in fits.selection_metrics.items()})
    mlflow.log_metrics({f"baseline_test_{k}": v for k, v in fits.baseline_metrics.items()})
    names = list(fits.model.named_steps["features"].get_feature_names_out())
    importance = pd.Series(fits.model.named_steps["model"].feature_importances_, index=names)
    record = _fits_record(info, fits, settings.threshold_strategy, evaluation_run_id)
    with tempfile.TemporaryDirectory() as folder:
        y_test = test[LABEL].to_numpy()
        for path in _figures(y_test, fits.test_scores, fits.threshold, importance, Path(folder)):
            mlflow.log_artifact(str(path), artifact_path="plots")
        for name, body in (
            ("features.json", {"features": list(FEATURE_COLUMNS), "encoded": names}),
            ("dataset.json", asdict(info)),
            ("fits.json", record),
        ):
            (Path(folder) / name).write_text(json.dumps(body, indent=2, default=str))
            mlflow.log_artifact(str(Path(folder) / name))
        reference_folder, reference_name = CHAMPION_REFERENCE_ARTIFACT.rsplit("/", 1)
        build_reference(_reference_rows(settings, info)).to_parquet(Path(folder) / reference_name, index=False)
        mlflow.log_artifact(str(Path(folder) / reference_name), artifact_path=reference_folder)


def _reference_rows(settings: Settings, info: DatasetInfo) -> pd.DataFrame:
    """Validated rows of the window's days (what the registered refit learned from), for its drift reference."""
    from training_lib.modeling.features import ROW_FEATURE_INPUTS

    days = [date.fromisoformat(d) for d in info.days]
    return Lake(settings).read_partitions(VALIDATED_TRANSACTIONS, days, columns=list(ROW_FEATURE_INPUTS)).to_pandas()


def tag_version(settings: Settings, info: DatasetInfo, fits: Any, version: str, child_runs: dict[str, str]) -> None:
    """The registered version's tags: threshold, label cut-off, windows, evidence and the runs behind it."""
    from mlflow import MlflowClient

    from training_lib.modeling.aliases import (
        EVALUATION_RUN_TAG,
        LABELS_THROUGH_TAG,
        THRESHOLD_TAG,
        TRAINING_WINDOW_TAG,
    )

    days, recipe = info.split_days, fits.recipe
    version_tags = {
        THRESHOLD_TAG: repr(fits.threshold),
        LABELS_THROUGH_TAG: info.labels_through,
        "dataset_id": info.dataset_id,
        TRAINING_WINDOW_TAG: day_range(info.days),  # the registered refit saw all of it
        "test_window": day_range(days["test"]),
        "test_pr_auc": f"{fits.test_metrics['pr_auc']:.4f}",
        "alert_rate_target": repr(fits.alert_rate),
        "recipe": f"{recipe.name}, {recipe.n_trees} trees",
        EVALUATION_RUN_TAG: child_runs["evaluation_run_id"],
        "baseline_run_id": child_runs["baseline_run_id"],
    }
    client = MlflowClient(settings.mlflow_tracking_uri)
    for key, value in version_tags.items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    log.info(
        "registered %s v%s (refit on %s, recipe %s, %d trees): evaluation fit PR-AUC %.4f on %s (baseline %.4f)",
        *(settings.model_name, version, day_range(info.days), recipe.name, recipe.n_trees),
        *(fits.test_metrics["pr_auc"], day_range(days["test"]), fits.baseline_metrics["pr_auc"]),
    )
