"""transactions_daily and labels_daily through the real scheduler (backfills) on the real local stack.

Two simulated days land in S3; day 2 has amount inflation (drift) and a data-quality incident. The
tests in this module run in order against one stack.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from training_lib.lake.layout import (
    LABELS,
    LANDING_LABELS,
    LANDING_TRANSACTIONS,
    QUARANTINE_TRANSACTIONS,
    REPORTS_DRIFT,
    REPORTS_QUALITY,
    VALIDATED_TRANSACTIONS,
    partition_prefix,
)
from training_lib.lake.storage import Lake
from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulator import Simulator

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAY1, DAY2 = date(2026, 2, 2), date(2026, 2, 3)
DAYS = [DAY1.isoformat(), DAY2.isoformat()]
STACK_SETTINGS = {
    "FRAUD_DRIFT_REFERENCE_DAYS": "1",  # day 1 is the reference of day 2
    "FRAUD_MIN_NEW_LABELS": "100",
    "FRAUD_LABEL_DELAY_DAYS": "1",
}
SIMULATION = SimulationConfig(
    seed=11,
    start=DAY1,
    n_customers=600,
    transactions_per_day=3000,
    label_delay_days=1,
    amount_inflation_day=DAY2,
    amount_inflation_factor=1.8,
    quality_incident_day=DAY2,
    quality_incident_share=0.02,
)


@pytest.fixture(scope="module")
def simulator() -> Simulator:
    return Simulator(SIMULATION)


@pytest.fixture(scope="module")
def landed(local_stack, simulator: Simulator) -> Lake:
    lake = Lake(local_stack.settings)
    for day in (DAY1, DAY2):
        lake.put_bytes(f"{partition_prefix(LANDING_TRANSACTIONS, day)}/transactions.csv", simulator.day_csv_bytes(day))
        lake.put_bytes(f"{partition_prefix(LANDING_LABELS, day)}/labels.csv", simulator.labels_csv_bytes(day))
    return lake


@pytest.fixture(scope="module")
def transactions_runs(local_stack, landed: Lake) -> list[dict]:
    client = local_stack.airflow()
    client.wait_for_dag("transactions_daily", timeout=180)
    client.set_paused("transactions_daily", False)
    client.create_backfill("transactions_daily", DAYS[0], DAYS[1])
    return client.wait_for_backfill("transactions_daily", DAYS, timeout=900)


@pytest.fixture(scope="module")
def labels_runs(local_stack, transactions_runs: list[dict]) -> list[dict]:
    client = local_stack.airflow()
    client.wait_for_dag("labels_daily", timeout=180)
    client.set_paused("labels_daily", False)
    client.create_backfill("labels_daily", DAYS[0], DAYS[1])
    return client.wait_for_backfill("labels_daily", DAYS, timeout=600)


def test_both_days_run_successfully(local_stack, transactions_runs: list[dict]) -> None:
    for run in transactions_runs:
        assert run["state"] == "success", local_stack.airflow().task_states("transactions_daily", run["dag_run_id"])


def test_day_one_is_validated_whole(landed: Lake, simulator: Simulator, transactions_runs) -> None:
    expected = simulator.transactions(DAY1)
    validated = landed.read_partition(VALIDATED_TRANSACTIONS, DAY1).to_pandas()
    assert len(validated) == len(expected)
    assert set(validated["trans_num"]) == set(expected["trans_num"])
    assert landed.read_partition(QUARANTINE_TRANSACTIONS, DAY1).num_rows == 0


def test_day_two_quarantines_exactly_the_malformed_rows(landed: Lake, simulator: Simulator, transactions_runs) -> None:
    text, kinds = simulator.transactions_text(DAY2)
    malformed_lines = {index + 2 for index in kinds[kinds.notna()].index}  # header is line 1
    assert malformed_lines, "the scenario must inject malformed rows"
    quarantine = landed.read_partition(QUARANTINE_TRANSACTIONS, DAY2).to_pandas()
    validated = landed.read_partition(VALIDATED_TRANSACTIONS, DAY2).to_pandas()
    assert len(quarantine) + len(validated) == len(text)
    assert set(quarantine["_source_line"]) == malformed_lines
    assert quarantine["_reason"].str.len().gt(0).all()
    assert quarantine["_source_file"].str.endswith("transactions.csv").all()
    good = text[kinds.isna()]
    assert set(validated["trans_num"]) == set(good["trans_num"])


def test_quality_reports_are_published(landed: Lake, transactions_runs) -> None:
    for day in (DAY1, DAY2):
        summary = landed.get_json(landed.report_key(REPORTS_QUALITY, day, "summary.json"))
        assert summary["rows_in"] == summary["validated"] + summary["quarantined"]
        assert landed.exists(landed.report_key(REPORTS_QUALITY, day, "data_docs/index.html"))
    assert landed.get_json(landed.report_key(REPORTS_QUALITY, DAY2, "summary.json"))["reasons"]


def test_drift_is_reported_on_the_inflated_day(landed: Lake, transactions_runs) -> None:
    first = landed.get_json(landed.report_key(REPORTS_DRIFT, DAY1, "summary.json"))
    assert first["status"] == "no_reference" and first["drift_detected"] is False
    second = landed.get_json(landed.report_key(REPORTS_DRIFT, DAY2, "summary.json"))
    assert second["status"] == "computed"
    assert second["drift_detected"] is True
    assert "amt" in second["drifted_columns"]
    html = landed.get_bytes(landed.report_key(REPORTS_DRIFT, DAY2, "report.html"))
    assert b"<html" in html[:2000].lower()


def test_asset_events_carry_the_day(local_stack, transactions_runs) -> None:
    client = local_stack.airflow()
    validated = client.asset_events(source_dag_id="transactions_daily", asset_name="validated_transactions")
    assert sorted(event["extra"]["dt"] for event in validated) == DAYS
    drift = client.asset_events(source_dag_id="transactions_daily", asset_name="drift_detected")
    assert [event["extra"]["dt"] for event in drift] == [DAYS[1]]
    assert "amt" in drift[0]["extra"]["columns"] and drift[0]["extra"]["share"] > 0


def test_labels_are_stored_and_signal_new_labels(local_stack, landed: Lake, simulator, labels_runs) -> None:
    for run in labels_runs:
        assert run["state"] == "success", local_stack.airflow().task_states("labels_daily", run["dag_run_id"])
    assert landed.read_partition(LABELS, DAY1).num_rows == 0  # nothing confirmed yet on day 1
    stored = landed.read_partition(LABELS, DAY2).to_pandas()
    expected = simulator.labels(DAY2)
    assert len(stored) == len(expected) == len(simulator.transactions(DAY1))
    merged = stored.merge(expected, on="trans_num", suffixes=("", "_truth"))
    assert (merged["is_fraud"].astype(int) == merged["is_fraud_truth"].astype(int)).all()
    events = local_stack.airflow().asset_events(source_dag_id="labels_daily", asset_name="new_labels")
    assert [event["extra"]["dt"] for event in events] == [DAYS[1]]
    assert events[0]["extra"]["count"] == len(stored)


def test_rerunning_a_day_leaves_its_partitions_unchanged(local_stack, landed: Lake, labels_runs) -> None:
    before = landed.partition_manifest(VALIDATED_TRANSACTIONS, DAY2)
    rows_before = landed.read_partition(VALIDATED_TRANSACTIONS, DAY2).to_pandas()
    client = local_stack.airflow()
    previous = client.backfill_runs("transactions_daily", [DAYS[1]])
    client.create_backfill("transactions_daily", DAYS[1], DAYS[1], reprocess="completed")
    [run] = client.wait_for_backfill("transactions_daily", [DAYS[1]], timeout=600, rerun_of=previous)
    assert run["state"] == "success"
    after = landed.partition_manifest(VALIDATED_TRANSACTIONS, DAY2)
    rows_after = landed.read_partition(VALIDATED_TRANSACTIONS, DAY2).to_pandas()
    assert after == before  # identical content: the version is kept, nothing rewritten
    pd.testing.assert_frame_equal(
        rows_after.sort_values("trans_num").reset_index(drop=True),
        rows_before.sort_values("trans_num").reset_index(drop=True),
    )
    parts = [k for k in landed.list_keys(partition_prefix(VALIDATED_TRANSACTIONS, DAY2) + "/") if "part-" in k]
    assert sorted(parts) == sorted(after["files"])  # the re-run staged parts and discarded them
