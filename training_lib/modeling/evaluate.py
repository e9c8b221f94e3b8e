"""The gate's evidence: the candidate's evaluation fit and the champion scored on the same unseen days."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from training_lib.config import Settings
from training_lib.modeling.dataset import LABEL, day_range, load_dataset

log = logging.getLogger(__name__)


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
        "window": day_range(days),
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
