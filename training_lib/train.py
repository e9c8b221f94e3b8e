"""Training: a labelled dataset from the lake, out-of-time splits, XGBoost + a logistic baseline in MLflow.

Steps (one function each, the ``retrain`` DAG calls them in turn):

1. :func:`build_dataset` — the newest ``window_days`` matured days (days whose transactions carry
   confirmed labels), shared features (``features.features_for_days``), the label, split by time into
   train → validation → test (the newest days). A snapshot goes to ``training/datasets/<id>/`` in the
   lake with card tokens, never card numbers.
2. :func:`train_and_log` — XGBoost (class imbalance via ``scale_pos_weight``) and a logistic-regression
   baseline; threshold chosen on validation (alert budget or best F1); metrics on test; curves,
   confusion matrix, feature importance, feature list and a drift reference sample as artifacts; the
   XGBoost pipeline registered as a new version of the model (no alias: the gate decides).
3. :func:`evaluate_candidates` — champion and candidate scored on the same test window.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import tempfile
import uuid
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training_lib.config import Settings
from training_lib.storage import LABELS, VALIDATED_TRANSACTIONS, Lake

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
XGBOOST_PARAMS = {
    "n_estimators": 300,
    "max_depth": 6,
    "learning_rate": 0.08,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 2,
    "tree_method": "hist",
    "n_jobs": 2,
}


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

    from training_lib.features import FEATURE_COLUMNS, features_for_days
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


# --------------------------------------------------------------------------- models and metrics


def _preprocessor(scale: bool):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from training_lib.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES
    from training_lib.schema import CATEGORIES

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


def make_xgboost(scale_pos_weight: float):
    """XGBoost on one-hot categories and raw numerics (missing values handled natively)."""
    from sklearn.pipeline import Pipeline
    from xgboost import XGBClassifier

    model = XGBClassifier(**XGBOOST_PARAMS, scale_pos_weight=scale_pos_weight, eval_metric="aucpr")
    return Pipeline([("features", _preprocessor(scale=False)), ("model", model)])


def make_baseline():
    """Logistic regression with balanced class weights on imputed, scaled numerics."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    model = LogisticRegression(class_weight="balanced", max_iter=2000)
    return Pipeline([("features", _preprocessor(scale=True)), ("model", model)])


def choose_threshold(y: np.ndarray, scores: np.ndarray, strategy: str, alert_budget: float) -> float:
    """Decision threshold on validation: flag ``alert_budget`` of rows, or maximise F1."""
    import numpy as np
    from sklearn.metrics import precision_recall_curve

    if strategy == "alert_budget":
        return float(np.quantile(scores, 1.0 - alert_budget, method="higher"))
    precision, recall, thresholds = precision_recall_curve(y, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


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
        axis.set_title(name.removesuffix(".png").replace("_", " ") + " (test window)")
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


def train_and_log(
    settings: Settings,
    info: DatasetInfo,
    parts: dict[str, pd.DataFrame],
    *,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Fit XGBoost and the baseline, log everything to MLflow, register the XGBoost pipeline.

    Returns run id, registered version, threshold and the test metrics of both models.
    """
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from training_lib.drift import build_reference
    from training_lib.features import FEATURE_COLUMNS

    columns = list(FEATURE_COLUMNS)
    train, validation, test = (parts[name] for name in SPLITS)
    y_train, y_val, y_test = (p[LABEL].to_numpy() for p in (train, validation, test))
    positives = max(1, int(y_train.sum()))
    scale_pos_weight = (len(y_train) - positives) / positives

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment(settings.experiment_name)
    with mlflow.start_run(run_name=run_name or f"xgboost-{info.days[-1]}") as run:
        mlflow.set_tags({"dataset_id": info.dataset_id, "model_family": "xgboost", **(tags or {})})
        mlflow.log_params(
            {
                "window_first_day": info.days[0],
                "window_last_day": info.days[-1],
                **{f"{name}_days": f"{days[0]}..{days[-1]}" for name, days in info.split_days.items()},
                **{f"{name}_rows": rows for name, rows in info.rows.items()},
                **{f"{name}_frauds": frauds for name, frauds in info.frauds.items()},
                "scale_pos_weight": round(scale_pos_weight, 3),
                "threshold_strategy": settings.threshold_strategy,
                "alert_budget": settings.alert_budget,
                **{f"xgb_{k}": v for k, v in XGBOOST_PARAMS.items()},
            }
        )
        model = make_xgboost(scale_pos_weight).fit(train[columns], y_train)
        threshold = choose_threshold(
            y_val, model.predict_proba(validation[columns])[:, 1], settings.threshold_strategy, settings.alert_budget
        )
        test_scores = model.predict_proba(test[columns])[:, 1]
        test_metrics = evaluate(y_test, test_scores, threshold, settings.alert_budget, test["card_token"].to_numpy())
        val_metrics = evaluate(y_val, model.predict_proba(validation[columns])[:, 1], threshold, settings.alert_budget)
        mlflow.log_metric("threshold", threshold)
        mlflow.log_metrics({f"test_{k}": v for k, v in test_metrics.items()})
        mlflow.log_metrics({f"validation_{k}": v for k, v in val_metrics.items()})

        names = list(model.named_steps["features"].get_feature_names_out())
        importance = pd.Series(model.named_steps["model"].feature_importances_, index=names)
        with tempfile.TemporaryDirectory() as folder:
            for path in _figures(y_test, test_scores, threshold, importance, Path(folder)):
                mlflow.log_artifact(str(path), artifact_path="plots")
            (Path(folder) / "features.json").write_text(json.dumps({"features": columns, "encoded": names}, indent=2))
            mlflow.log_artifact(str(Path(folder) / "features.json"))
            (Path(folder) / "dataset.json").write_text(json.dumps(asdict(info), indent=2))
            mlflow.log_artifact(str(Path(folder) / "dataset.json"))
            reference = build_reference(_reference_rows(settings, info))
            reference.to_parquet(Path(folder) / "reference.parquet", index=False)
            mlflow.log_artifact(str(Path(folder) / "reference.parquet"), artifact_path="drift_reference")

        example = test[columns].head(5)
        signature = infer_signature(example, model.predict_proba(example))
        model_info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=settings.model_name,
            serialization_format="cloudpickle",
            pyfunc_predict_fn="predict_proba",
            pip_requirements=_pip_requirements(),
        )
        version = str(model_info.registered_model_version)

        baseline = make_baseline().fit(train[columns], y_train)
        baseline_threshold = choose_threshold(
            y_val, baseline.predict_proba(validation[columns])[:, 1], settings.threshold_strategy, settings.alert_budget
        )
        baseline_metrics = evaluate(
            y_test, baseline.predict_proba(test[columns])[:, 1], baseline_threshold, settings.alert_budget,
            test["card_token"].to_numpy(),
        )  # fmt: skip
        mlflow.log_metrics({f"baseline_test_{k}": v for k, v in baseline_metrics.items()})
        with mlflow.start_run(run_name="baseline-logistic-regression", nested=True) as child:
            mlflow.set_tags({"dataset_id": info.dataset_id, "model_family": "logistic_regression"})
            mlflow.log_metric("threshold", baseline_threshold)
            mlflow.log_metrics({f"test_{k}": v for k, v in baseline_metrics.items()})
            mlflow.sklearn.log_model(
                baseline, name="model", signature=signature, serialization_format="cloudpickle",
                pip_requirements=_pip_requirements(),
            )  # fmt: skip

    from training_lib.ingest import LABELS_THROUGH_TAG
    from training_lib.registry import THRESHOLD_TAG

    client = MlflowClient(settings.mlflow_tracking_uri)
    version_tags = {
        THRESHOLD_TAG: repr(threshold),
        LABELS_THROUGH_TAG: info.labels_through,
        "dataset_id": info.dataset_id,
        "training_window": f"{info.days[0]}..{info.days[-1]}",
        "test_window": f"{info.split_days['test'][0]}..{info.split_days['test'][-1]}",
        "test_pr_auc": f"{test_metrics['pr_auc']:.4f}",
        "baseline_run_id": child.info.run_id,
    }
    for key, value in version_tags.items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    log.info(
        "registered %s v%s: test PR-AUC %.4f (baseline %.4f), threshold %.4f",
        settings.model_name, version, test_metrics["pr_auc"], baseline_metrics["pr_auc"], threshold,
    )  # fmt: skip
    trained = {
        "run_id": run.info.run_id,
        "version": version,
        "threshold": threshold,
        "test_metrics": test_metrics,
        "baseline_metrics": baseline_metrics,
        "baseline_run_id": child.info.run_id,
        "dataset_id": info.dataset_id,
    }
    Lake(settings).put_json(f"{DATASETS}/{info.dataset_id}/{TRAINED_NAME}", trained)
    return trained


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
    """Validated rows of the training days, for the drift reference stored with the model."""
    import pandas as pd

    lake = Lake(settings)
    days = [date.fromisoformat(d) for d in info.split_days["train"]]
    frames = [lake.read_partition(VALIDATED_TRANSACTIONS, d).to_pandas() for d in days]
    return pd.concat(frames, ignore_index=True)


def evaluate_candidates(settings: Settings, candidate_version: str, dataset_id: str) -> dict[str, Any]:
    """Score the candidate and the current champion on the same newest labelled window (the test split)."""
    import mlflow.sklearn
    from mlflow import MlflowClient
    from sklearn.metrics import average_precision_score

    from training_lib.features import FEATURE_COLUMNS
    from training_lib.registry import Registry

    info, parts = load_dataset(settings, dataset_id)
    test = parts["test"]
    y = test[LABEL].to_numpy()
    client = MlflowClient(settings.mlflow_tracking_uri)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)

    def pr_auc(version: str) -> float:
        model = mlflow.sklearn.load_model(f"models:/{settings.model_name}/{version}")
        return float(average_precision_score(y, model.predict_proba(test[list(FEATURE_COLUMNS)])[:, 1]))

    champion = Registry(settings).champion()
    candidate = client.get_model_version(settings.model_name, candidate_version)
    result = {
        "window": f"{info.split_days['test'][0]}..{info.split_days['test'][-1]}",
        "rows": len(test),
        "frauds": int(y.sum()),
        "dataset_id": dataset_id,
        "candidate_version": candidate_version,
        "candidate_run_id": candidate.run_id,
        "candidate_pr_auc": pr_auc(candidate_version),
        "champion_version": champion.version if champion else None,
        "champion_run_id": champion.run_id if champion else None,
        "champion_pr_auc": pr_auc(champion.version) if champion else None,
    }
    log.info(
        "evaluation on %s: candidate v%s %.4f, champion %s %s",
        result["window"],
        candidate_version,
        result["candidate_pr_auc"],
        result["champion_version"],
        result["champion_pr_auc"],
    )
    return result


def cooldown_remaining(last_data_day: date | None, data_day: date | None, days: int) -> int:
    """Days of data a retrain must still wait (0 when it may run).

    The cooldown counts in data time, not wall-clock time: a backfill replaying a month in minutes retrains
    as often as the same month did live, and a drift that persists day after day retrains once per ``days``.
    """
    if last_data_day is None or data_day is None:
        return 0
    return max(0, (last_data_day - data_day).days + days)


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
    from training_lib.registry import Registry, decide

    info, parts = build_dataset(settings, window_days)
    trained = train_and_log(settings, info, parts)
    evaluation = evaluate_candidates(settings, trained["version"], info.dataset_id)
    decision = decide(evaluation["candidate_pr_auc"], evaluation["champion_pr_auc"], floor=0.0, margin=0.0)
    Registry(settings).record_decision(trained["version"], decision, evaluation=evaluation, actor=actor)
    return trained
