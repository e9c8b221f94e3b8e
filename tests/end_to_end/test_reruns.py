"""Re-runs and backfills change nothing: the same logical date gives the same outputs, on the real stack.

In order, against one stack:
1. 16 simulated days land; ``transactions_daily`` and ``labels_daily`` are backfilled over them;
2. a second, identical backfill of both over four of those days, the quarantine day among them
   (re-processing the completed runs), leaves the lake unchanged: every object outside ``reports/``
   byte-identical (same keys, same ETags: partitions keep their version), the reports rewritten with the
   same content (timestamps aside);
3. a manual ``retrain`` promotes a first champion; clearing that run (the UI's "Clear") runs it again:
   same version reused, no second alias move, no second audit entry or ``model_promoted`` event;
4. ``batch_score`` backfilled over three days, then again: the predictions are byte-identical.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import pytest

from training_lib.lake.layout import (
    LANDING_LABELS,
    LANDING_TRANSACTIONS,
    PREDICTIONS,
    QUARANTINE_TRANSACTIONS,
    VALIDATED_TRANSACTIONS,
    partition_prefix,
)
from training_lib.lake.objects import s3_client
from training_lib.lake.storage import Lake
from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulator import Simulator

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

START = date(2026, 4, 1)
DAYS = [(START + timedelta(days=i)).isoformat() for i in range(16)]  # 15 matured: the 14-day window
REPROCESSED = DAYS[8:12]  # the quality incident's day (offset 10) and its neighbours
SCORED = DAYS[-3:]
STACK_SETTINGS = {
    "FRAUD_LABEL_DELAY_DAYS": "1",
    "FRAUD_MIN_NEW_LABELS": "1000000000",  # no Asset-triggered retrain: this module triggers it itself
    "FRAUD_DRIFT_THRESHOLD": "1.0",
    "FRAUD_TRAINING_WINDOW_DAYS": "14",
    "FRAUD_MODEL_NAME": "fraud-detector-reruns",
}
SIMULATION = SimulationConfig(
    seed=30,
    start=START,
    n_customers=1500,
    transactions_per_day=1500,
    label_delay_days=1,
    quality_incident_day=10,  # quarantine partitions too
    quality_incident_share=0.01,
)
INGESTION = ("transactions_daily", "labels_daily")
GX_RUN_TIME = re.compile(r"/\d{8}T\d{6}\.\d{6}Z/")


def _objects(lake: Lake) -> dict[str, str]:
    """Every key of the bucket with its ETag (the MD5 of its bytes for a single PUT)."""
    client = s3_client(lake.settings)
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=lake.bucket):
        found.update({item["Key"]: item["ETag"] for item in page.get("Contents", [])})
    return found


def _without_timestamps(value):
    """A JSON value without the keys that say when it was written (``…_at``)."""
    if isinstance(value, dict):
        return {k: _without_timestamps(v) for k, v in value.items() if not k.endswith("_at")}
    if isinstance(value, list):
        return [_without_timestamps(v) for v in value]
    return value


def _json_reports(lake: Lake, keys: list[str]) -> dict[str, object]:
    return {key: _without_timestamps(json.loads(lake.get_bytes(key))) for key in keys if key.endswith(".json")}


def _backfill(client, dag_id: str, days: list[str], *, at: str = "00:00:00", again: bool = False) -> list[dict]:
    previous = client.backfill_runs(dag_id, days) if again else None
    client.create_backfill(dag_id, days[0], days[-1], max_active_runs=2, at=at)
    runs = client.wait_for_backfill(dag_id, days, timeout=900, rerun_of=previous)
    assert {run["state"] for run in runs} == {"success"}, [(r["logical_date"], r["state"]) for r in runs]
    return runs


@pytest.fixture(scope="module")
def lake(local_stack) -> Lake:
    lake = Lake(local_stack.settings)
    simulator = Simulator(SIMULATION)
    for iso in DAYS:
        day = date.fromisoformat(iso)
        lake.put_bytes(f"{partition_prefix(LANDING_TRANSACTIONS, day)}/transactions.csv", simulator.day_csv_bytes(day))
        lake.put_bytes(f"{partition_prefix(LANDING_LABELS, day)}/labels.csv", simulator.labels_csv_bytes(day))
    return lake


@pytest.fixture(scope="module")
def client(local_stack):
    client = local_stack.airflow()
    for dag_id in (*INGESTION, "retrain", "batch_score"):
        client.wait_for_dag(dag_id, timeout=180)
    return client


@pytest.fixture(scope="module")
def first_backfill(lake: Lake, client) -> dict[str, str]:
    for dag_id in INGESTION:
        client.set_paused(dag_id, False)
        _backfill(client, dag_id, DAYS)
    return _objects(lake)


@pytest.fixture(scope="module")
def second_backfill(lake: Lake, client, first_backfill: dict[str, str]) -> tuple[dict[str, str], dict, dict]:
    reports_before = _json_reports(lake, [k for k in first_backfill if k.startswith("reports/")])
    for dag_id in INGESTION:
        _backfill(client, dag_id, REPROCESSED, again=True)
    after = _objects(lake)
    return after, reports_before, _json_reports(lake, [k for k in after if k.startswith("reports/")])


def test_the_first_backfill_ingested_every_day(lake: Lake, first_backfill: dict[str, str]) -> None:
    assert [d.isoformat() for d in lake.list_partitions(VALIDATED_TRANSACTIONS)] == DAYS
    assert any(key.startswith("quarantine/transactions/") for key in first_backfill)


def test_a_second_identical_backfill_leaves_the_data_byte_identical(first_backfill, second_backfill) -> None:
    after, _, _ = second_backfill
    data_before = {k: v for k, v in first_backfill.items() if not k.startswith("reports/")}
    data_after = {k: v for k, v in after.items() if not k.startswith("reports/")}
    assert data_after.keys() == data_before.keys(), {
        "added": sorted(data_after.keys() - data_before.keys())[:5],
        "removed": sorted(data_before.keys() - data_after.keys())[:5],
    }
    changed = sorted(k for k in data_before if data_before[k] != data_after[k])
    assert changed == [], changed[:10]
    # the re-processed days include one with quarantined rows
    quarantined = [partition_prefix(QUARANTINE_TRANSACTIONS, date.fromisoformat(day)) for day in REPROCESSED]
    assert any(key.startswith(prefix) for prefix in quarantined for key in data_after)


def _report_keys(objects: dict[str, str]) -> list[str]:
    """Report keys, with the run time GX puts in a Data Docs validation page's path replaced by ``<run>``."""
    return sorted(GX_RUN_TIME.sub("/<run>/", k) for k in objects if k.startswith("reports/"))


def test_a_second_identical_backfill_rewrites_the_same_reports(first_backfill, second_backfill) -> None:
    after, reports_before, reports_after = second_backfill
    # the same reports, and one Data Docs site per day (the re-run's pages replaced the first run's)
    assert _report_keys(after) == _report_keys(first_backfill)
    assert reports_before, "no JSON report to compare"
    different = sorted(k for k in reports_before if reports_before[k] != reports_after[k])
    assert different == [], different[:10]


@pytest.fixture(scope="module")
def promoted(local_stack, client, second_backfill) -> dict:
    from training_lib.modeling.registry import Registry

    client.set_paused("retrain", False)
    run = client.trigger("retrain", {})
    final = client.wait_for_run("retrain", run["dag_run_id"], timeout=1200)
    assert final["state"] == "success"
    registry = Registry(local_stack.settings)
    return {"run": final, "history": registry.history(), "aliases": registry.aliases()}


def test_rerunning_the_retrain_run_moves_no_alias_again(local_stack, lake: Lake, client, promoted) -> None:
    from mlflow import MlflowClient

    from training_lib.modeling.registry import Registry

    settings = local_stack.settings
    registry = Registry(settings)
    [entry] = promoted["history"]
    assert entry["kind"] == "promotion"
    versions = MlflowClient(settings.mlflow_tracking_uri).search_model_versions(f"name='{settings.model_name}'")
    datasets = lake.list_keys("training/datasets/")
    events = client.asset_events(source_dag_id="retrain", asset_name="model_promoted")

    run_id = promoted["run"]["dag_run_id"]
    rerun = client.rerun("retrain", run_id, timeout=1200)
    states = {ti["task_id"]: ti["state"] for ti in client.task_instances("retrain", run_id)}
    assert rerun["state"] == "success", states
    assert states["signal_promotion"] == "skipped"  # its promotion was signalled by the first try
    assert registry.history() == promoted["history"]  # no second audit entry
    assert registry.aliases() == promoted["aliases"]
    again = MlflowClient(settings.mlflow_tracking_uri).search_model_versions(f"name='{settings.model_name}'")
    assert len(again) == len(versions)  # the version trained by the first try was reused
    assert lake.list_keys("training/datasets/") == datasets  # and its dataset snapshot
    assert client.asset_events(source_dag_id="retrain", asset_name="model_promoted") == events


def test_rescoring_days_leaves_the_predictions_byte_identical(lake: Lake, client, promoted) -> None:
    client.set_paused("batch_score", False)
    _backfill(client, "batch_score", SCORED, at="02:00:00")
    before = {k: v for k, v in _objects(lake).items() if k.startswith(f"{PREDICTIONS}/")}
    for iso in SCORED:
        manifest = lake.partition_manifest(PREDICTIONS, date.fromisoformat(iso))
        table = lake.read_partition(PREDICTIONS, date.fromisoformat(iso))
        assert table.num_rows == lake.partition_manifest(VALIDATED_TRANSACTIONS, date.fromisoformat(iso))["rows"]
        assert len(set(table.column("trans_num").to_pylist())) == table.num_rows  # no duplicates
        assert manifest["metadata"]["model_version"] == promoted["aliases"]["champion"]
    _backfill(client, "batch_score", SCORED, at="02:00:00", again=True)
    after = {k: v for k, v in _objects(lake).items() if k.startswith(f"{PREDICTIONS}/")}
    assert after == before
