"""Training: a labelled dataset from the lake, time splits, the recipe search and refits in MLflow, the gate evidence.

Steps (one function each, the ``retrain`` DAG calls them in turn):

1. :func:`build_dataset` — the newest ``window_days`` matured days (days whose transactions carry
   confirmed labels), shared features (``features.features_for_days``), the label, split by time into
   train → validation → test (the newest days). A snapshot goes to ``training/datasets/<id>/`` in the
   lake with card tokens, never card numbers.
2. :func:`train_and_log` — the fits of ``training_lib.modeling.fitting`` in one MLflow run: the search (one nested run
   per XGBoost candidate, fitted on train, compared on validation), the *evaluation fit* (train + validation,
   scored on the unseen test days: the run's ``test_*`` metrics and the gate's evidence), the logistic
   baseline on the same days, and the *refit* on the whole window, which is what gets registered (a new
   version of the model, no alias: the gate decides). Every metric names the days it was computed on; none is
   computed on rows the scored model was fitted on.
3. :func:`evaluate_candidates` — the candidate's evaluation fit and the current champion scored on the same
   test days, restricted to the days neither was fitted on.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training_lib.config import Settings
from training_lib.lake.layout import LABELS, VALIDATED_TRANSACTIONS
from training_lib.lake.storage import Lake

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

DATASETS = "training/datasets"
TRAINED_NAME = "trained.json"  # next to a dataset: the version trained from it
MATURED_LABEL_SHARE = 0.95  # a day is matured when this share of its transactions has a confirmed label
VALIDATION_SHARE = 0.2
TEST_SHARE = 0.2
MIN_DAYS = 3
LABEL = "label"
SPLITS = ("train", "validation", "test")


class NotEnoughData(RuntimeError):
    """The lake does not hold enough matured, labelled days (or frauds) to train; the message says what."""


@dataclass
class DatasetInfo:
    dataset_id: str
    days: list[str]
    split_days: dict[str, list[str]]
    rows: dict[str, int]
    frauds: dict[str, int]
    labels_through: str  # last label partition read: the new_labels count restarts after it
    uri: str


# --------------------------------------------------------------------------- dataset


def load_labels(lake: Lake, through: date | None = None) -> pd.DataFrame:
    """All confirmed labels (trans_num, is_fraud) in the label store, up to ``through``."""
    import pandas as pd

    days = [d for d in lake.list_partitions(LABELS) if through is None or d <= through]
    if not days:
        return pd.DataFrame({"trans_num": pd.Series(dtype="string"), "is_fraud": pd.Series(dtype="Int8")})
    frame = lake.read_partitions(LABELS, days, columns=["trans_num", "is_fraud"]).to_pandas()
    return frame.drop_duplicates("trans_num", keep="last")


def matured_days(lake: Lake, labels: pd.DataFrame, end: date | None = None, limit: int | None = None) -> list[date]:
    """The newest ``limit`` validated days (up to ``end``; all when no limit), oldest first, where at
    least MATURED_LABEL_SHARE of the rows have a label. Reads newest first and stops at ``limit``."""
    known = set(labels["trans_num"])
    out: list[date] = []
    for day in reversed(lake.list_partitions(VALIDATED_TRANSACTIONS)):
        if end is not None and day > end:
            continue
        manifest = lake.partition_manifest(VALIDATED_TRANSACTIONS, day) or {}
        columns = ["trans_num", "is_fraud"] if "is_fraud" in manifest.get("columns", []) else ["trans_num"]
        table = lake.read_partition(VALIDATED_TRANSACTIONS, day, columns=columns)
        trans = table.column("trans_num").to_pylist()
        own = table.column("is_fraud").to_pylist() if "is_fraud" in columns else [None] * len(trans)
        labelled = sum(1 for t, o in zip(trans, own, strict=True) if o is not None or t in known)
        if trans and labelled / len(trans) >= MATURED_LABEL_SHARE:
            out.append(day)
            if limit is not None and len(out) == limit:
                break
    return sorted(out)


def split_days(days: list[date]) -> dict[str, list[date]]:
    """Out-of-time: the oldest days train, then validation, the newest days test."""
    if len(days) < MIN_DAYS:
        raise NotEnoughData(f"need at least {MIN_DAYS} matured labelled days, found {len(days)}: {days}")
    n = len(days)
    n_test = max(1, round(n * TEST_SHARE))
    n_validation = max(1, round(n * VALIDATION_SHARE))
    n_train = n - n_test - n_validation
    return {
        "train": days[:n_train],
        "validation": days[n_train : n_train + n_validation],
        "test": days[n_train + n_validation :],
    }


def build_dataset(
    settings: Settings,
    window_days: int | None = None,
    end: date | None = None,
    lake: Lake | None = None,
    *,
    run_key: str | None = None,
) -> tuple[DatasetInfo, dict[str, pd.DataFrame]]:
    """Labelled features of the newest matured days, split by time, snapshotted to the lake.

    ``end``: the dataset as of that day (validated days and labels up to it), so a retrain answering a given
    day of data sees the same data whenever it runs. ``run_key`` (e.g. the Airflow run id) makes the dataset
    id deterministic: a re-run of that run finds its snapshot and reuses it instead of writing another."""

    from training_lib.modeling.features import FEATURE_COLUMNS, features_for_days
    from training_lib.privacy import card_tokens, token_key

    lake = lake or Lake(settings)
    window = window_days or settings.training_window_days
    labels = load_labels(lake, through=end)
    days = matured_days(lake, labels, end, limit=window)
    if run_key:
        dataset_id = f"{days[-1].isoformat()}-{hashlib.sha256(run_key.encode()).hexdigest()[:8]}"
        if lake.exists(f"{DATASETS}/{dataset_id}/dataset.json"):
            log.info("dataset %s of run %s exists: reused", dataset_id, run_key)
            return load_dataset(settings, dataset_id, lake)
    else:
        dataset_id = f"{days[-1].isoformat()}-{uuid.uuid4().hex[:8]}"
    splits = split_days(days)
    transactions, features = features_for_days(lake, days)
    label_map = labels.set_index("trans_num")["is_fraud"]
    label = transactions["trans_num"].map(label_map)
    if "is_fraud" in transactions.columns:  # files that carried their labels (Kaggle layout)
        label = label.fillna(transactions["is_fraud"])
    keep = label.notna().to_numpy()
    frame = features[keep].copy()
    frame[LABEL] = label[keep].astype("int8").to_numpy()
    frame["trans_num"] = transactions.loc[keep, "trans_num"].astype(str).to_numpy()
    frame["card_token"] = card_tokens(transactions.loc[keep, "cc_num"].astype(str), token_key(settings))
    frame["day"] = transactions.loc[keep, "trans_date_trans_time"].dt.date.to_numpy()
    parts = {name: frame[frame["day"].isin(set(split))].reset_index(drop=True) for name, split in splits.items()}
    for name, part in parts.items():
        if part[LABEL].sum() == 0 or (part[LABEL] == 0).all():
            raise NotEnoughData(f"the {name} split ({[str(d) for d in splits[name]]}) needs frauds and legitimate rows")
    prefix = f"{DATASETS}/{dataset_id}"
    for name, part in parts.items():
        buffer = io.BytesIO()
        part.astype({"day": "string"}).to_parquet(buffer, index=False)
        lake.put_bytes(f"{prefix}/{name}.parquet", buffer.getvalue())
    label_days = [d for d in lake.list_partitions(LABELS) if end is None or d <= end]
    info = DatasetInfo(
        dataset_id=dataset_id,
        days=[d.isoformat() for d in days],
        split_days={name: [d.isoformat() for d in split] for name, split in splits.items()},
        rows={name: len(part) for name, part in parts.items()},
        frauds={name: int(part[LABEL].sum()) for name, part in parts.items()},
        labels_through=(label_days[-1] if label_days else days[-1]).isoformat(),
        uri=lake.uri(prefix + "/"),
    )
    lake.put_json(f"{prefix}/dataset.json", {**asdict(info), "features": list(FEATURE_COLUMNS)})
    log.info("dataset %s: %s rows, %s frauds, days %s..%s", dataset_id, info.rows, info.frauds, days[0], days[-1])
    assert set(FEATURE_COLUMNS) <= set(parts["train"].columns)
    return info, parts


def load_dataset(settings: Settings, dataset_id: str, lake: Lake | None = None) -> tuple[DatasetInfo, dict]:
    import pandas as pd

    lake = lake or Lake(settings)
    prefix = f"{DATASETS}/{dataset_id}"
    meta = lake.get_json(f"{prefix}/dataset.json")
    meta.pop("features", None)
    parts = {name: pd.read_parquet(io.BytesIO(lake.get_bytes(f"{prefix}/{name}.parquet"))) for name in SPLITS}
    return DatasetInfo(**meta), parts


# --------------------------------------------------------------------------- training and logging


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


def _days(days: list[str]) -> str:
    return f"{days[0]}..{days[-1]}" if days else ""


def _log_model(model: Any, *, signature: Any, registered_model_name: str | None = None, input_example: Any = None):
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
        days = {"fitted_on": _days(fitted_on), "evaluated_on": _days(evaluated_on)}
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


def train_and_log(
    settings: Settings,
    info: DatasetInfo,
    parts: dict[str, pd.DataFrame],
    *,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The fits of :func:`training_lib.modeling.fitting.fit_window` in one MLflow run; the refit is registered.

    Child runs: one per search candidate, the evaluation fit (its model logged, not registered), the baseline.
    Returns run ids, the registered version, the threshold, the recipe and the metrics of the evaluation fit and
    of the baseline on the test days (the only metrics the gate may use: both were fitted without those days).
    """
    import mlflow
    from mlflow.models import infer_signature

    from training_lib.modeling.features import FEATURE_COLUMNS

    fits = _fit(settings, parts)
    example = parts["test"][list(FEATURE_COLUMNS)].head(5)
    signature = infer_signature(example, fits.model.predict_proba(example))
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(settings.experiment_name)
    with mlflow.start_run(run_name=run_name or f"xgboost-{info.days[-1]}") as run:
        _log_run_header(settings, info, fits, tags or {})
        child_runs = _log_child_runs(info, fits, signature)
        _log_evidence(settings, info, fits, parts["test"], child_runs["evaluation_run_id"])
        registered = _log_model(
            fits.model, signature=signature, input_example=example, registered_model_name=settings.model_name
        )
    version = str(registered.registered_model_version)
    _tag_version(settings, info, fits, version, child_runs)
    trained = {
        "run_id": run.info.run_id,
        "version": version,
        "threshold": fits.threshold,
        "alert_rate_target": fits.alert_rate,
        "recipe": fits.recipe.describe(),
        "test_metrics": fits.test_metrics,
        "baseline_metrics": fits.baseline_metrics,
        **child_runs,
        "dataset_id": info.dataset_id,
        "fit_seconds": fits.seconds,
    }
    Lake(settings).put_json(f"{DATASETS}/{info.dataset_id}/{TRAINED_NAME}", trained)
    return trained


def _fit(settings: Settings, parts: dict[str, pd.DataFrame]) -> Any:
    """Every fit of the window (search, evaluation fit, baseline, refit), progress in the log."""
    from training_lib.modeling.fitting import fit_window, load_search_space

    def progress(i: int, n: int, trial: Any) -> None:
        log.info(
            "search %d/%d: %s, %d trees, validation PR-AUC %.4f (%.1fs)",
            *(i, n, trial.candidate.name, trial.n_trees, trial.validation_pr_auc, trial.seconds),
        )

    return fit_window(
        parts,
        load_search_space(settings.include_folder),
        strategy=settings.threshold_strategy,
        alert_budget=settings.alert_budget,
        label=LABEL,
        progress=progress,
    )


def _log_run_header(settings: Settings, info: DatasetInfo, fits: Any, tags: dict[str, str]) -> None:
    """The parent run's tags (which fit is registered, on which days each was fitted) and parameters."""
    import mlflow

    days, recipe = info.split_days, fits.recipe
    mlflow.set_tags(
        {
            "dataset_id": info.dataset_id,
            "model_family": "xgboost",
            "registered_fit": "refit",
            "fit.refit.fitted_on": _days(info.days),
            "fit.evaluation.fitted_on": _days(days["train"] + days["validation"]),
            "fit.evaluation.evaluated_on": _days(days["test"]),
            **tags,
        }
    )
    mlflow.log_params(
        {
            "window_first_day": info.days[0],
            "window_last_day": info.days[-1],
            **{f"{name}_days": _days(split) for name, split in days.items()},
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


def _log_child_runs(info: DatasetInfo, fits: Any, signature: Any) -> dict[str, str]:
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
        _log_model(fits.evaluation_model, signature=signature)
    with _nested_run("baseline-logistic-regression", info, "baseline", seen_days, days["test"],
                     model_family="logistic_regression") as baseline_run:  # fmt: skip
        mlflow.log_metrics({f"test_{k}": v for k, v in fits.baseline_metrics.items()})
        _log_model(fits.baseline_model, signature=signature)
    return {"evaluation_run_id": evaluation_run.info.run_id, "baseline_run_id": baseline_run.info.run_id}


def _log_evidence(settings: Settings, info: DatasetInfo, fits: Any, test: pd.DataFrame, evaluation_run_id: str) -> None:
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


def _tag_version(settings: Settings, info: DatasetInfo, fits: Any, version: str, child_runs: dict[str, str]) -> None:
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
        TRAINING_WINDOW_TAG: _days(info.days),  # the registered refit saw all of it
        "test_window": _days(days["test"]),
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
        *(settings.model_name, version, _days(info.days), recipe.name, recipe.n_trees),
        *(fits.test_metrics["pr_auc"], _days(days["test"]), fits.baseline_metrics["pr_auc"]),
    )


def trained_for_dataset(settings: Settings, dataset_id: str) -> dict[str, Any] | None:
    """What :func:`train_and_log` returned for this dataset, if it finished and its version still exists.

    A re-run of a retrain run (same dataset id) thereby reuses its registered version instead of training
    another one."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    trained = Lake(settings).get_json(f"{DATASETS}/{dataset_id}/{TRAINED_NAME}", missing_ok=True)
    if not trained:
        return None
    try:
        MlflowClient(settings.mlflow_tracking_uri).get_model_version(settings.model_name, str(trained["version"]))
    except MlflowException:
        return None
    log.info("dataset %s was already trained into version %s: reused", dataset_id, trained["version"])
    return trained


def _reference_rows(settings: Settings, info: DatasetInfo) -> pd.DataFrame:
    """Validated rows of the window's days (what the registered refit learned from), for its drift reference."""
    from training_lib.modeling.features import ROW_FEATURE_INPUTS

    days = [date.fromisoformat(d) for d in info.days]
    return Lake(settings).read_partitions(VALIDATED_TRANSACTIONS, days, columns=list(ROW_FEATURE_INPUTS)).to_pandas()


def evaluate_candidates(settings: Settings, candidate_version: str, dataset_id: str) -> dict[str, Any]:
    """The gate's evidence: the candidate's evaluation fit and the champion on the same unseen days.

    The days are the dataset's test days after the last day the champion was fitted on (all test days when
    there is no champion); the evaluation fit never saw any test day. With a champion but no such day,
    ``champion_pr_auc`` is None and ``comparable`` False: there is no evidence, and the gate keeps the
    champion (``registry.gate_decision``).
    """
    import mlflow.sklearn
    from mlflow import MlflowClient
    from sklearn.metrics import average_precision_score

    from training_lib.modeling.aliases import EVALUATION_RUN_TAG, fitted_through
    from training_lib.modeling.fitting import predict
    from training_lib.modeling.registry import Registry

    info, parts = load_dataset(settings, dataset_id)
    test = parts["test"]
    client = MlflowClient(settings.mlflow_tracking_uri)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    candidate = client.get_model_version(settings.model_name, candidate_version)
    evaluation_run = (candidate.tags or {}).get(EVALUATION_RUN_TAG)
    if not evaluation_run:
        raise ValueError(f"version {candidate_version} has no {EVALUATION_RUN_TAG!r} tag: no evaluation fit to gate on")
    champion = Registry(settings).champion()
    champion_end = fitted_through(champion) if champion else None
    days = [d for d in info.split_days["test"] if champion_end is None or date.fromisoformat(d) > champion_end]
    rows = test[test["day"].isin(days)]
    y = rows[LABEL].to_numpy()

    def pr_auc(uri: str) -> float | None:
        if not len(rows) or y.min() == y.max():
            return None
        return float(average_precision_score(y, predict(mlflow.sklearn.load_model(uri), rows)))

    candidate_pr_auc = pr_auc(f"runs:/{evaluation_run}/model")
    champion_pr_auc = pr_auc(f"models:/{settings.model_name}/{champion.version}") if champion else None
    result = {
        "window": _days(days),
        "days": days,
        "rows": len(rows),
        "frauds": int(y.sum()),
        "dataset_id": dataset_id,
        "candidate_version": candidate_version,
        "candidate_run_id": candidate.run_id,
        "candidate_evaluation_run_id": evaluation_run,
        "candidate_fitted_through": info.split_days["validation"][-1],
        "candidate_pr_auc": candidate_pr_auc,
        "champion_version": champion.version if champion else None,
        "champion_run_id": champion.run_id if champion else None,
        "champion_fitted_through": champion_end.isoformat() if champion_end else None,
        "champion_pr_auc": champion_pr_auc,
        "comparable": candidate_pr_auc is not None and (champion is None or champion_pr_auc is not None),
    }
    log.info(
        "evaluation on %s (%d rows, %d frauds): candidate v%s %s, champion %s %s",
        result["window"] or "no day", len(rows), result["frauds"], candidate_version, candidate_pr_auc,
        result["champion_version"], champion_pr_auc,
    )  # fmt: skip
    return result


def cooldown_remaining(last_data_day: date | None, data_day: date | None, days: int) -> int:
    """Days of data a retrain must still wait (0 when it may run).

    The cooldown counts in data time, not wall-clock time: a backfill replaying a month in minutes retrains
    as often as the same month did live, and a drift that persists day after day retrains once per ``days``.
    """
    if last_data_day is None or data_day is None:
        return 0
    return max(0, (last_data_day - data_day).days + days)


PERFORMANCE = "performance"  # the reason of a drift_detected event that realized quality emitted


def cooldown_days(settings: Settings, reasons: set[str]) -> tuple[str, int]:
    """(setting, days) of the cooldown that applies to a retrain triggered for ``reasons``.

    A retrain that realized quality triggered (reason ``performance``: the champion got measurably worse on
    matured labels) waits only ``FRAUD_PERFORMANCE_COOLDOWN_DAYS`` (default 1: once per day of data): a drift
    that started the same change days earlier, before its labels matured, retrained on data that could not
    show the change, and its cooldown must not hold back the retrain that can. Every other trigger (drift,
    new labels, manual) waits ``FRAUD_RETRAIN_COOLDOWN_DAYS``. Both count days of data since the last decision.
    """
    if PERFORMANCE in reasons:
        return "FRAUD_PERFORMANCE_COOLDOWN_DAYS", settings.performance_cooldown_days
    return "FRAUD_RETRAIN_COOLDOWN_DAYS", settings.retrain_cooldown_days


def retrain_data_day(settings: Settings, triggering_days: list[str]) -> date | None:
    """The day of data a retrain answers: the newest day its triggering Asset events carry, else (a manual
    run) the newest validated day in the lake; None when there is no data yet."""
    if triggering_days:
        return max(date.fromisoformat(day) for day in triggering_days)
    validated = Lake(settings).list_partitions(VALIDATED_TRANSACTIONS)
    return max(validated) if validated else None


def seed_champion(settings: Settings, window_days: int, actor: str) -> dict[str, Any]:
    """Train on the lake's last ``window_days`` labelled days and promote the version with the gate at 0.

    For tests, benchmarks and seeded environments that need *a* champion; the retrain DAG uses the real gate.
    Returns what :func:`train_and_log` returned (``version``, ``test_metrics``, …)."""
    from training_lib.modeling.gate import gate_decision
    from training_lib.modeling.registry import Registry

    info, parts = build_dataset(settings, window_days)
    trained = train_and_log(settings, info, parts)
    evaluation = evaluate_candidates(settings, trained["version"], info.dataset_id)
    decision = gate_decision(evaluation, floor=0.0, margin=0.0)
    Registry(settings).record_decision(trained["version"], decision, evaluation=evaluation, actor=actor)
    return trained
