"""retrain and rollback_model through the real scheduler, MLflow server and S3 (local stack).

Twelve simulated, labelled days are published to the lake; then, in order:
1. a forced manual retrain: the first model clears the floor and becomes champion (its refit saw all twelve);
2. three more days arrive; a deliberately worse challenger (3-day window: its evaluation fit learnt from two
   days) is compared with the champion on the newest day, which neither was fitted on, and rejected;
3. a drift_detected Asset event starts retrain on its own, which the cooldown skips;
4. rollback_model to an explicit version, then back to the previous champion (default target).
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from training_lib.lake.layout import AUDIT_REGISTRY
from training_lib.lake.storage import Lake
from training_lib.local.airflow_api import TERMINAL_RUN_STATES, poll
from training_lib.local.airflow_client import AirflowClient
from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulator import Simulator, publish_validated_days

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = date(2026, 3, 1)
DAYS = [START + timedelta(days=i) for i in range(12)]
LATER = [START + timedelta(days=i) for i in range(12, 15)]  # published after the first champion
STACK_SETTINGS = {
    "FRAUD_TRAINING_WINDOW_DAYS": "10",
    "FRAUD_RETRAIN_COOLDOWN_DAYS": "3",
    "FRAUD_MODEL_NAME": "fraud-detector-test",
}
SIMULATION = SimulationConfig(
    seed=3, start=START, n_customers=3000, transactions_per_day=6000, amount_inflation_day=8, label_delay_days=1
)


@pytest.fixture(scope="module")
def seeded(local_stack) -> Lake:
    """Validated transactions and their confirmed labels for twelve days, as the ingestion DAGs write them."""
    lake = Lake(local_stack.settings)
    publish_validated_days(lake, Simulator(SIMULATION), DAYS, labelled=DAYS)
    return lake


def _run(client: AirflowClient, dag_id: str, conf: dict, timeout: float = 900) -> dict:
    client.wait_for_dag(dag_id, timeout=180)
    client.set_paused(dag_id, False)
    run = client.trigger(dag_id, conf)
    return client.wait_for_run(dag_id, run["dag_run_id"], timeout=timeout)


def _registry(local_stack):
    from training_lib.modeling.registry import Registry

    return Registry(local_stack.settings)


def _aliases(local_stack) -> dict[str, str | None]:
    registry = _registry(local_stack)
    champion, challenger = registry.champion(), registry.challenger()
    return {
        "champion": champion.version if champion else None,
        "challenger": challenger.version if challenger else None,
    }


@pytest.fixture(scope="module")
def first_retrain(local_stack, seeded) -> dict:
    return _run(local_stack.airflow(), "retrain", {"force": True})


@pytest.fixture(scope="module")
def worse_retrain(local_stack, seeded, first_retrain) -> dict:
    publish_validated_days(seeded, Simulator(SIMULATION), LATER, labelled=LATER)
    return _run(local_stack.airflow(), "retrain", {"force": True, "window_days": 3})


def test_first_model_clears_the_floor_and_becomes_champion(local_stack, first_retrain) -> None:
    client = local_stack.airflow()
    assert first_retrain["state"] == "success", client.task_states("retrain", first_retrain["dag_run_id"])
    assert _aliases(local_stack) == {"champion": "1", "challenger": None}
    entry = _registry(local_stack).history()[-1]
    assert entry["kind"] == "promotion" and entry["candidate_version"] == "1"
    assert entry["challenger_pr_auc"] >= local_stack.settings.promotion_floor
    assert entry["champion_pr_auc"] is None


def test_the_version_carries_metrics_plots_threshold_and_reference(local_stack, first_retrain) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(local_stack.settings.mlflow_tracking_uri)
    version = client.get_model_version(local_stack.settings.model_name, "1")
    assert 0 < float(version.tags["threshold"]) < 1
    assert version.tags["labels_through"] == DAYS[-1].isoformat()
    run = client.get_run(version.run_id)
    for metric in ("test_pr_auc", "test_roc_auc", "test_recall_at_alert_budget", "test_card_precision_at_100",
                   "baseline_test_pr_auc", "threshold"):  # fmt: skip
        assert metric in run.data.metrics, metric
    assert run.data.metrics["test_pr_auc"] > run.data.metrics["baseline_test_pr_auc"] - 0.05
    artifacts = {a.path for a in client.list_artifacts(version.run_id)}
    assert {"plots", "drift_reference", "features.json", "dataset.json"} <= artifacts
    plots = {a.path for a in client.list_artifacts(version.run_id, "plots")}
    assert plots == {f"plots/{n}.png" for n in ("pr_curve", "roc_curve", "confusion_matrix", "feature_importance")}
    # both fits recorded: the registered refit saw the whole window, the evaluation fit was scored on the test days
    assert "fits.json" in artifacts and run.data.tags["registered_fit"] == "refit"
    assert version.tags["training_window"] == f"{DAYS[2]}..{DAYS[-1]}" == run.data.tags["fit.refit.fitted_on"]
    evaluation = client.get_run(version.tags["evaluation_run_id"])
    assert evaluation.data.tags["fit"] == "evaluation" and evaluation.info.status == "FINISHED"
    assert evaluation.data.tags["evaluated_on"] == version.tags["test_window"]
    assert evaluation.data.tags["fitted_on"].split("..")[1] < version.tags["test_window"].split("..")[0]
    assert evaluation.data.metrics["test_pr_auc"] == run.data.metrics["test_pr_auc"]
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    fits = [child.data.tags["fit"] for child in children]
    assert sorted(set(fits)) == ["baseline", "evaluation", "search"] and fits.count("search") >= 3


def test_a_worse_challenger_is_rejected(local_stack, worse_retrain) -> None:
    client = local_stack.airflow()
    assert worse_retrain["state"] == "success", client.task_states("retrain", worse_retrain["dag_run_id"])
    assert _aliases(local_stack) == {"champion": "1", "challenger": "2"}
    entry = _registry(local_stack).history()[-1]
    assert entry["kind"] == "rejection" and entry["candidate_version"] == "2"
    assert entry["challenger_pr_auc"] < entry["champion_pr_auc"] + entry["margin"]
    assert entry["evaluation"]["champion_version"] == "1"
    # compared on the newest day: after the champion's window, and never seen by the challenger's evaluation fit
    assert entry["evaluation"]["days"] == [LATER[-1].isoformat()]
    assert entry["evaluation"]["champion_fitted_through"] == DAYS[-1].isoformat()
    assert entry["evaluation"]["candidate_fitted_through"] == LATER[-2].isoformat()


def test_an_asset_event_inside_the_cooldown_starts_retrain_which_skips(local_stack, worse_retrain) -> None:
    client = local_stack.airflow()
    before = {run["dag_run_id"] for run in client.list_runs("retrain")}
    client.create_asset_event("drift_detected", {"dt": "2026-03-12"})

    def asset_run() -> dict | None:
        runs = [r for r in client.list_runs("retrain") if r["dag_run_id"] not in before]
        return runs[0] if runs and runs[0]["state"] in TERMINAL_RUN_STATES else None

    run = poll(asset_run, 300, "the asset-triggered retrain run")
    assert run["run_type"] == "asset_triggered"
    states = client.task_states("retrain", run["dag_run_id"])
    assert states["check_cooldown"] == "success"
    assert states["build_dataset"] == "skipped"
    assert _aliases(local_stack) == {"champion": "1", "challenger": "2"}


def test_rollback_to_a_version_then_back_to_the_previous_champion(local_stack, worse_retrain) -> None:
    client = local_stack.airflow()
    run = _run(client, "rollback_model", {"version": 2, "reason": "test: try the challenger"}, timeout=300)
    assert run["state"] == "success", client.task_states("rollback_model", run["dag_run_id"])
    assert _aliases(local_stack)["champion"] == "2"
    run = _run(client, "rollback_model", {"reason": "test: back to the previous champion"}, timeout=300)
    assert run["state"] == "success", client.task_states("rollback_model", run["dag_run_id"])
    assert _aliases(local_stack)["champion"] == "1"
    kinds = [entry["kind"] for entry in _registry(local_stack).history()]
    assert kinds == ["promotion", "rejection", "rollback", "rollback"]
    promoted = client.asset_events(asset_name="model_promoted")
    assert [event["extra"]["version"] for event in promoted] == ["1", "2", "1"]


def test_audit_log_objects_are_in_s3(local_stack, seeded, worse_retrain) -> None:
    keys = seeded.list_keys(f"{AUDIT_REGISTRY}/{local_stack.settings.model_name}/")
    assert len(keys) >= 2 and all(key.endswith(".json") for key in keys)
    reports = seeded.list_keys("reports/retrain/")
    assert len(reports) == 2
