"""Training: the recipe search and the refits of a dataset in one MLflow run, the new version registered.

The ``retrain`` DAG calls one function per step, each in the module of its concern:

1. :func:`~training_lib.modeling.dataset.build_dataset` — the newest matured labelled days, split by time
   into train → validation → test (the newest days), snapshotted to ``training/datasets/<id>/``.
2. :func:`train_and_log` — the fits of ``training_lib.modeling.fitting`` in one MLflow run (logged by
   ``modeling.tracking``): the search (one nested run per XGBoost candidate, fitted on train, compared on
   validation), the *evaluation fit* (train + validation, scored on the unseen test days: the run's ``test_*``
   metrics and the gate's evidence), the logistic baseline on the same days, and the *refit* on the whole
   window, which is what gets registered (a new version of the model, no alias: the gate decides). Every
   metric names the days it was computed on; none is computed on rows the scored model was fitted on.
3. :func:`~training_lib.modeling.evaluate.evaluate_candidates` — the candidate's evaluation fit and the
   current champion scored on the same test days, restricted to the days neither was fitted on.

Whether a retrain may run at all is ``modeling.cooldown``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from training_lib.config import Settings
from training_lib.lake.storage import Lake
from training_lib.modeling.dataset import DATASETS, LABEL, DatasetInfo, build_dataset
from training_lib.modeling.evaluate import evaluate_candidates
from training_lib.modeling.tracking import log_child_runs, log_evidence, log_model, log_run_header, tag_version

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

TRAINED_NAME = "trained.json"  # next to a dataset: the version trained from it


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
        log_run_header(settings, info, fits, tags or {})
        child_runs = log_child_runs(info, fits, signature)
        log_evidence(settings, info, fits, parts["test"], child_runs["evaluation_run_id"])
        registered = log_model(
            fits.model, signature=signature, input_example=example, registered_model_name=settings.model_name
        )
    version = str(registered.registered_model_version)
    tag_version(settings, info, fits, version, child_runs)
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
