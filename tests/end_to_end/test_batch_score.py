"""Batch scoring against the real local stack: scoring.score_day directly, then the batch_score DAG."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest

from training_lib.lake.layout import PREDICTIONS, REPORTS_PERFORMANCE, REPORTS_SCORING, VALIDATED_TRANSACTIONS
from training_lib.lake.storage import Lake
from training_lib.modeling.train import seed_champion
from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulator import Simulator, publish_validated_days

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = date(2026, 5, 1)
DAYS = [START + timedelta(days=i) for i in range(9)]
SCORED = DAYS[-1]
STACK_SETTINGS = {
    "FRAUD_CARD_TOKEN_KEY": "test-token-key-0123456789",
    "FRAUD_LABEL_DELAY_DAYS": "1",
    "FRAUD_MODEL_NAME": "fraud-detector-scoring",
    "FRAUD_SCORING_BUCKET_ROWS": "1500",  # several buckets even on a small day
    "FRAUD_SCORING_SHARD_ROWS": "2000",  # and 2+ shards: the DAG maps score_shard over them
}
SIMULATION = SimulationConfig(seed=8, start=START, n_customers=2000, transactions_per_day=4000, label_delay_days=1)


@pytest.fixture(scope="module")
def simulator() -> Simulator:
    return Simulator(SIMULATION)


@pytest.fixture(scope="module")
def lake(local_stack, simulator: Simulator) -> Lake:
    lake = Lake(local_stack.settings)
    # the scored day's labels have not matured; DAYS[-2]'s mature later, after the champion was trained
    publish_validated_days(lake, simulator, DAYS, labelled=DAYS[:-2])
    return lake


def _train(settings, window: int) -> str:
    return seed_champion(settings, window, actor="user:test")["version"]


@pytest.fixture(scope="module")
def champion_version(local_stack, lake) -> str:
    return _train(local_stack.settings, window=7)


@pytest.fixture(scope="module")
def scored(local_stack, lake, champion_version) -> dict:
    from training_lib.scoring.batch import score_day

    return score_day(local_stack.settings, SCORED, run_id="test-run-1")


def _predictions(lake: Lake):
    return lake.read_partition(PREDICTIONS, SCORED).to_pandas()


def test_one_row_per_validated_transaction_all_with_the_champion(lake, simulator, champion_version, scored) -> None:
    predictions = _predictions(lake)
    validated = lake.read_partition(VALIDATED_TRANSACTIONS, SCORED).to_pandas()
    assert len(predictions) == len(validated) == scored["rows"]
    assert predictions["trans_num"].is_unique
    assert set(predictions["trans_num"]) == set(validated["trans_num"])
    assert set(predictions["model_version"]) == {champion_version}
    assert lake.partition_manifest(PREDICTIONS, SCORED)["metadata"]["scoring_run_id"] == "test-run-1"
    assert lake.exists(f"predictions/dt={SCORED.isoformat()}/_SUCCESS")
    assert scored["buckets"] >= 2 and scored["shards"] >= 2


def test_decisions_follow_the_stored_threshold(local_stack, lake, scored) -> None:
    from training_lib.modeling.registry import Registry

    registry = Registry(local_stack.settings)
    threshold = registry.threshold(registry.champion())
    predictions = _predictions(lake)
    assert ((predictions["score"] >= threshold).astype(int) == predictions["decision"]).all()
    assert scored["alerts"] == int(predictions["decision"].sum()) and scored["threshold"] == threshold
    summary = lake.get_json(lake.report_key(REPORTS_SCORING, SCORED, "summary.json"))
    assert sum(summary["score_histogram"]["counts"]) == len(predictions)


def test_scores_catch_the_simulated_fraud(lake, simulator, scored) -> None:
    from sklearn.metrics import average_precision_score

    truth = simulator.transactions(SCORED)[["trans_num", "is_fraud"]]
    merged = _predictions(lake).merge(truth, on="trans_num")
    assert average_precision_score(merged["is_fraud"].astype(int), merged["score"]) > 0.5


def test_card_tokens_are_stable_and_hold_no_card_number(lake, simulator, scored) -> None:
    from training_lib.privacy import card_tokens

    predictions = _predictions(lake)
    truth = simulator.transactions(SCORED)[["trans_num", "cc_num", "first", "last"]]
    merged = predictions.merge(truth, on="trans_num")
    expected = card_tokens(merged["cc_num"].astype(str), STACK_SETTINGS["FRAUD_CARD_TOKEN_KEY"].encode())
    assert merged["card_token"].tolist() == expected
    text = predictions.astype(str).to_csv()
    assert merged["card_token"].str.fullmatch(r"[0-9a-f]{24}").all()
    assert not any(card in token for card, token in zip(merged["cc_num"], merged["card_token"], strict=True))
    for value in set(truth["cc_num"]) | set(truth["last"]):
        assert value not in text


def test_rerunning_a_day_leaves_the_partition_unchanged(local_stack, lake, scored) -> None:
    from training_lib.scoring.batch import score_day

    manifest = lake.partition_manifest(PREDICTIONS, SCORED)
    before = {key: lake.get_bytes(key) for key in manifest["files"]}
    summary = score_day(local_stack.settings, SCORED, run_id="test-run-2")
    assert summary["partition_unchanged"] and summary["partition_version"] == manifest["version"]
    assert lake.partition_manifest(PREDICTIONS, SCORED) == manifest  # same version, same provenance
    parts = [k for k in lake.list_keys(f"predictions/dt={SCORED.isoformat()}/") if "/part-" in k]
    assert sorted(parts) == sorted(manifest["files"])  # the re-run's staged parts were discarded
    assert {key: lake.get_bytes(key) for key in parts} == before


def test_a_failed_run_leaves_no_visible_partial_output(local_stack, lake, scored) -> None:
    from training_lib.scoring.batch import score_day
    from training_lib.scoring.champion import load_champion

    champion = load_champion(local_stack.settings)
    real = champion.model
    calls = {"n": 0}

    class FailsOnThirdBucket:
        def predict_proba(self, frame):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("injected: scoring worker died")
            return real.predict_proba(frame)

    champion.model = FailsOnThirdBucket()
    before = lake.partition_manifest(PREDICTIONS, SCORED)
    with pytest.raises(RuntimeError, match="injected"):
        score_day(local_stack.settings, SCORED, run_id="test-run-broken", champion=champion)
    assert lake.partition_manifest(PREDICTIONS, SCORED) == before
    parts = [k for k in lake.list_keys(f"predictions/dt={SCORED.isoformat()}/") if "/part-" in k]
    assert sorted(parts) == sorted(before["files"])
    assert lake.partition_manifest(PREDICTIONS, SCORED)["metadata"]["scoring_run_id"] != "test-run-broken"


def test_shards_give_the_predictions_of_one_shard_row_for_row(local_stack, lake, scored) -> None:
    import pandas as pd

    from training_lib.scoring.batch import score_day
    from training_lib.scoring.commit import commit_scoring
    from training_lib.scoring.plan import IncompleteScoring, plan_scoring
    from training_lib.scoring.shard import score_shard

    settings = local_stack.settings
    one = score_day(dataclasses.replace(settings, scoring_shard_rows=10**7), SCORED, run_id="test-one-shard")
    assert one["shards"] == 1
    expected = _predictions(lake).sort_values("trans_num").reset_index(drop=True)
    sharded = dataclasses.replace(settings, scoring_shard_rows=1000)
    specs = plan_scoring(sharded, SCORED, run_id="test-shards")
    assert len(specs) >= 3 and {spec["model_version"] for spec in specs} == set(expected["model_version"])
    results = [score_shard(sharded, spec) for spec in specs]  # each loads models:/<name>/<planned version>
    before = lake.partition_manifest(PREDICTIONS, SCORED)
    with pytest.raises(IncompleteScoring, match=rf"shard\(s\) \[{len(specs) - 1}\] of {len(specs)} missing"):
        commit_scoring(sharded, specs, results[:-1])
    assert lake.partition_manifest(PREDICTIONS, SCORED) == before  # nothing published
    summary = commit_scoring(sharded, specs, results)
    assert summary["shards"] == len(specs) and summary["rows"] == one["rows"] and summary["alerts"] == one["alerts"]
    assert summary["score_histogram"] == one["score_histogram"]
    manifest = lake.partition_manifest(PREDICTIONS, SCORED)
    assert manifest["version"] != before["version"] and manifest["metadata"]["scoring_run_id"] == "test-shards"
    actual = _predictions(lake).sort_values("trans_num").reset_index(drop=True)
    pd.testing.assert_frame_equal(actual, expected)


def test_moving_the_alias_between_runs_changes_the_model_version(local_stack, lake, champion_version, scored) -> None:
    from mlflow import MlflowClient

    from training_lib.scoring.batch import score_day
    from training_lib.scoring.commit import commit_scoring
    from training_lib.scoring.plan import plan_scoring
    from training_lib.scoring.shard import score_shard

    settings = local_stack.settings
    second = _train(settings, window=4)
    client = MlflowClient(settings.mlflow_tracking_uri)
    current = client.get_model_version_by_alias(settings.model_name, "champion").version
    target = champion_version if current == second else second  # whichever version is not champion now
    specs = plan_scoring(settings, SCORED, run_id="test-run-moved-mid-run")
    client.set_registered_model_alias(settings.model_name, "champion", target)  # what the MLflow UI does
    summary = commit_scoring(settings, specs, [score_shard(settings, spec) for spec in specs])
    assert summary["shards"] >= 2 and summary["model_version"] == current  # the run sticks to its plan
    assert set(_predictions(lake)["model_version"]) == {current}
    score_day(settings, SCORED, run_id="test-run-3")
    assert set(_predictions(lake)["model_version"]) == {target}


def test_batch_score_dag_scores_a_day_end_to_end(local_stack, lake, simulator, scored) -> None:
    from sklearn.metrics import average_precision_score

    from training_lib.modeling.registry import Registry
    from training_lib.scoring.batch import score_day

    labelled_day = DAYS[-2]  # after every champion's window, scored, then labelled: the DAG's monitoring evaluates it
    publish_validated_days(lake, simulator, [labelled_day], labelled=[labelled_day])
    score_day(local_stack.settings, labelled_day, run_id="test-run-labelled")
    client = local_stack.airflow()
    client.wait_for_dag("batch_score", timeout=180)
    client.set_paused("batch_score", False)
    run = client.trigger("batch_score", {"day": SCORED.isoformat()})
    final = client.wait_for_run("batch_score", run["dag_run_id"], timeout=600)
    instances = client.task_instances("batch_score", run["dag_run_id"])
    states = {ti["task_id"]: ti["state"] for ti in instances if ti["task_id"] != "scoring.score_shard"}
    shards = sorted(
        (ti["map_index"], ti["state"], ti.get("rendered_map_index"))
        for ti in instances
        if ti["task_id"] == "scoring.score_shard"
    )
    assert final["state"] == "success", (states, shards)
    summary = lake.get_json(lake.report_key(REPORTS_SCORING, SCORED, "summary.json"))
    n = summary["shards"]
    assert n >= 2 and shards == [(i, "success", f"shard {i + 1}/{n}") for i in range(n)]
    assert states["scoring.plan"] == states["scoring.commit"] == states["alert_rate_check"] == "success"
    predictions = _predictions(lake)
    champion = Registry(local_stack.settings).champion().version
    assert set(predictions["model_version"]) == {champion}
    manifest = lake.partition_manifest(PREDICTIONS, SCORED)
    # a new champion since the earlier runs: a new version; else the same content was kept
    assert summary["scoring_run_id"] == run["dag_run_id"]
    assert manifest["metadata"]["model_version"] == champion
    assert len(predictions) == lake.partition_manifest(VALIDATED_TRANSACTIONS, SCORED)["rows"]
    assert states["monitoring.realized_quality"] == "success"
    performance = lake.get_json(lake.report_key(REPORTS_PERFORMANCE, labelled_day, "summary.json"))
    assert performance["status"] == "computed" and performance["rows"] == lake.partition_manifest(
        PREDICTIONS, labelled_day)["rows"]  # fmt: skip
    # out-of-time for the champion (fitted through DAYS[-3]): the report's PR-AUC is the one on the truth
    scored_day = lake.read_partition(PREDICTIONS, labelled_day).to_pandas()
    truth = scored_day.merge(simulator.transactions(labelled_day)[["trans_num", "is_fraud"]], on="trans_num")
    expected = average_precision_score(truth["is_fraud"].astype(int), truth["score"])
    assert performance["pr_auc"] == pytest.approx(expected, abs=1e-9)
    assert performance["below_floor"] is (expected < performance["promotion_floor"])
    assert states["monitoring.signal_retrain"] == "skipped"  # one matured day: fewer than the judging window
