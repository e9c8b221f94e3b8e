"""Bad input through the real ingestion DAGs: each kind is handled, nothing is lost, counts reconcile.

The cases are data (``bad_inputs_cases.py``: one builder per kind of landing file and what must become of its
rows); this module lands them, backfills ``transactions_daily`` over three days and ``labels_daily`` over two on
one stack, and checks every case the same way: the file's data rows (counted from the bytes) = its rows in the
validated partition (found by trans_num) + its rows in quarantine (found by ``_source_file``), every
quarantined row has its line number and the expected reason, the quality report counts the file the same way,
and a whole-file reject names the file in its error and in the task log.
"""

from __future__ import annotations

import json
import re
from datetime import date
from functools import cache

import pandas as pd
import pytest
from bad_inputs_cases import (
    D1,
    D2,
    GATE_FILE,
    GOOD_FEED,
    GOOD_LABELS,
    LABEL_DAYS,
    LABEL_KINDS,
    TRANSACTION_KINDS,
    TX_DAYS,
    Case,
    D,
    gate_file,
    labels_csv,
    plan,
)

from training_lib.ingestion.quarantine import REASON, SOURCE_FILE, SOURCE_LINE
from training_lib.lake.layout import (
    LABELS,
    LANDING_LABELS,
    LANDING_TRANSACTIONS,
    QUARANTINE_LABELS,
    QUARANTINE_TRANSACTIONS,
    REPORTS_QUALITY,
    VALIDATED_TRANSACTIONS,
    partition_prefix,
)
from training_lib.lake.storage import Lake, PartitionNotFound

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STACK_SETTINGS = {"FRAUD_MIN_NEW_LABELS": "1000000"}  # no retrain signal: this module is about ingestion
VALIDATE, INGEST_LABELS = "quality.validate", "ingest"


@pytest.fixture(scope="module")
def lake(local_stack) -> Lake:
    """Every landing file of the module, in S3."""
    the_plan = plan()
    lake = Lake(local_stack.settings)
    for day in (D, D1, D2):
        lake.put_bytes(
            f"{partition_prefix(LANDING_TRANSACTIONS, day)}/{GOOD_FEED}", the_plan.simulator.day_csv_bytes(day)
        )
    lake.put_bytes(f"{partition_prefix(LANDING_TRANSACTIONS, D2)}/{GATE_FILE}", gate_file(the_plan.gate_rows))
    for day, frame in the_plan.good_labels.items():
        lake.put_bytes(f"{partition_prefix(LANDING_LABELS, day)}/{GOOD_LABELS}", labels_csv(frame, day))
    for case in [*the_plan.transactions.values(), *the_plan.labels.values()]:
        lake.put_bytes(case.key, case.data)
    return lake


def backfill(local_stack, dag_id: str, days: list[str]) -> dict[str, dict]:
    """Backfill ``dag_id`` over ``days`` (the DAG still paused), then unpause it; the runs by day.

    Backfill first, then unpause: an unpause with the backfill created in the same instant once crashed the
    scheduler on SQLite (StaleDataError on dag_run while it created the first scheduled run)."""
    client = local_stack.airflow()
    client.wait_for_dag(dag_id, timeout=180)
    client.create_backfill(dag_id, days[0], days[-1])
    client.set_paused(dag_id, False)
    runs = client.wait_for_backfill(dag_id, days, timeout=840)
    return {run["logical_date"][:10]: run for run in runs}


@pytest.fixture(scope="module")
def tx_runs(local_stack, lake: Lake) -> dict[str, dict]:
    return backfill(local_stack, "transactions_daily", TX_DAYS)


@pytest.fixture(scope="module")
def label_runs(local_stack, tx_runs: dict[str, dict]) -> dict[str, dict]:
    return backfill(local_stack, "labels_daily", LABEL_DAYS)


def task_states(local_stack, dag_id: str, run: dict) -> dict[str, dict]:
    return {ti["task_id"]: ti for ti in local_stack.airflow().task_instances(dag_id, run["dag_run_id"])}


def task_log(local_stack, dag_id: str, run: dict, task_id: str) -> str:
    """The task's log of its latest try, through the REST API (what the UI shows), as text."""
    tries = task_states(local_stack, dag_id, run)[task_id]["try_number"]
    content = local_stack.airflow().task_log(dag_id, run["dag_run_id"], task_id, tries)
    return "\n".join(json.dumps(entry) if not isinstance(entry, str) else entry for entry in content)


@cache
def _partition(lake: Lake, dataset: str, day: date) -> pd.DataFrame:
    return lake.read_partition(dataset, day).to_pandas()


def quality_summary(lake: Lake, day: date) -> dict:
    return lake.get_json(lake.report_key(REPORTS_QUALITY, day, "summary.json"))


def check_case(case: Case, validated: pd.DataFrame, quarantine: pd.DataFrame) -> None:
    """The rows of one file (all of the same day): validated ones by trans_num, quarantined ones by source file
    and line."""
    assert case.rows == len(case.validated) + len(case.quarantined), "the test's own plan must add up"
    mine = quarantine[quarantine[SOURCE_FILE] == case.key]
    assert mine[SOURCE_LINE].is_unique
    assert set(mine[SOURCE_LINE]) == set(case.quarantined), mine[[SOURCE_LINE, REASON]].to_string()
    for line, reason in zip(mine[SOURCE_LINE], mine[REASON], strict=True):
        assert case.quarantined[line] in reason, (line, reason)
    assert mine[REASON].str.len().gt(0).all()
    kept = validated[validated["trans_num"].isin(set(case.validated))]
    assert sorted(kept["trans_num"]) == sorted(case.validated)  # each exactly once
    assert case.rows == len(kept) + len(mine)  # nothing lost, nothing counted twice
    assert not case.absent & set(validated["trans_num"].dropna())


def test_every_kind_has_a_case() -> None:
    the_plan = plan()
    assert sorted(the_plan.transactions) == sorted(TRANSACTION_KINDS)
    assert sorted(the_plan.labels) == sorted(LABEL_KINDS)


def test_the_good_days_run_through_and_the_gate_day_fails(local_stack, tx_runs: dict[str, dict]) -> None:
    for day in (D, D1):
        states = task_states(local_stack, "transactions_daily", tx_runs[day.isoformat()])
        assert tx_runs[day.isoformat()]["state"] == "success", {t: s["state"] for t, s in states.items()}
        assert {s["state"] for s in states.values()} <= {"success", "skipped"}
    assert tx_runs[D2.isoformat()]["state"] == "failed"


@pytest.mark.parametrize("kind", TRANSACTION_KINDS)
def test_bad_transactions_file(kind: str, lake: Lake, tx_runs) -> None:
    case = plan().transactions[kind]
    validated = _partition(lake, VALIDATED_TRANSACTIONS, case.day)
    quarantine = _partition(lake, QUARANTINE_TRANSACTIONS, case.day)
    check_case(case, validated, quarantine)
    kept = validated.set_index("trans_num")
    for trans_num, row in case.validated.items():  # the values of the copy that was kept, column by column
        got = kept.loc[trans_num]
        assert got["cc_num"] == row["cc_num"] and got["merchant"] == row["merchant"]
        assert got["category"] == row["category"] and got["amt"] == float(row["amt"])
        assert got["trans_date_trans_time"] == pd.Timestamp(row["trans_date_trans_time"])
    quarantined_text = quarantine[quarantine[SOURCE_FILE] == case.key]
    if case.ext == "csv" and case.file_error is None:  # rows kept as the text that arrived
        for line, raw in zip(quarantined_text[SOURCE_LINE], quarantined_text["_raw_line"], strict=True):
            assert pd.isna(raw) or raw, line
    [report] = [f for f in quality_summary(lake, case.day)["files"] if f["name"] == case.key]
    assert (report["rows"], report["validated"], report["quarantined"]) == (
        case.rows,
        len(case.validated),
        len(case.quarantined),
    )
    for name, value in case.report.items():
        assert report[name] == value
    if case.file_error is None:
        assert report["error"] is None
    else:
        assert case.key in report["error"] and case.file_error in report["error"]


def test_card_numbers_in_scientific_notation_never_become_another_card(lake: Lake, tx_runs) -> None:
    case = plan().transactions["cc_num_scientific"]
    quarantine = _partition(lake, QUARANTINE_TRANSACTIONS, D)
    mine = quarantine[quarantine[SOURCE_FILE] == case.key]
    texts = set(mine["cc_num"])
    assert {"2.70319E+15", "4.00012E+15", "2,70319E+15", "2703186189652095.0"} <= texts  # kept as they arrived
    expanded = {f"{float(t.replace(',', '.')):.0f}" for t in texts}
    validated = pd.concat([_partition(lake, VALIDATED_TRANSACTIONS, d) for d in (D, D1)])
    assert not expanded & set(validated["cc_num"])
    assert validated["cc_num"].str.fullmatch(r"\d{12,19}").all()


def test_day_totals_reconcile(lake: Lake, tx_runs) -> None:
    for day in (D, D1):
        summary = quality_summary(lake, day)
        validated = lake.partition_manifest(VALIDATED_TRANSACTIONS, day)["rows"]
        quarantined = lake.partition_manifest(QUARANTINE_TRANSACTIONS, day)["rows"]
        assert (summary["validated"], summary["quarantined"]) == (validated, quarantined)
        assert summary["rows_in"] == validated + quarantined == sum(f["rows"] for f in summary["files"])
        assert summary["held_back"] is False
        assert summary["quarantine_share"] <= summary["quarantine_share_limit"]
        keys = {f["name"] for f in summary["files"]}
        assert keys == set(lake.landing_files(LANDING_TRANSACTIONS, day))  # every landed file is accounted for
    good = plan().simulator.transactions(D)
    assert set(good["trans_num"]) <= set(_partition(lake, VALIDATED_TRANSACTIONS, D)["trans_num"])


def test_whole_file_rejects_are_named_in_the_task_log(local_stack, tx_runs) -> None:
    log = task_log(local_stack, "transactions_daily", tx_runs[D.isoformat()], VALIDATE)
    rejects = [c for c in plan().transactions.values() if c.day == D and c.file_error is not None]
    assert len(rejects) >= 5
    for case in rejects:
        lines = [line for line in log.splitlines() if "quarantining the whole file" in line and case.key in line]
        assert lines, case.key
        assert case.file_error in lines[0]
    for case in plan().transactions.values():  # one line per file with its counts
        if case.day == D:
            assert re.search(re.escape(case.key) + rf": {case.rows} row\(s\), {len(case.validated)} validated", log)
    cards = plan().cards
    assert not [card for card in cards if card in log]


def test_quarantine_gate_fails_clearly_and_publishes_the_quarantine(local_stack, lake: Lake, tx_runs) -> None:
    run = tx_runs[D2.isoformat()]
    states = task_states(local_stack, "transactions_daily", run)
    validate = states[VALIDATE]
    assert validate["state"] == "failed"
    assert validate["try_number"] == 1  # the same files would fail again: no retries
    assert states["quality.publish"]["state"] == "upstream_failed"
    log = task_log(local_stack, "transactions_daily", run, VALIDATE)
    limit = local_stack.settings.quarantine_share_limit
    rows = plan().gate_rows
    assert "QualityGateError" in log or "AirflowFailException" in log
    assert f"{rows} of " in log and f"above the limit of {limit:.1%}" in log and "held back" in log
    assert f"{QUARANTINE_TRANSACTIONS}/dt={D2}/" in log and GATE_FILE in log
    summary = quality_summary(lake, D2)
    assert summary["held_back"] is True and summary["quarantine_share"] > limit
    assert summary["quarantined"] == rows and summary["rows_in"] == rows + len(plan().simulator.transactions(D2))
    quarantine = lake.read_partition(QUARANTINE_TRANSACTIONS, D2).to_pandas()
    assert len(quarantine) == rows and (quarantine[SOURCE_FILE].str.endswith(GATE_FILE)).all()
    assert quarantine[REASON].eq("amt not in (0, 100000]").all()
    assert sorted(quarantine[SOURCE_LINE]) == list(range(2, rows + 2))
    assert lake.partition_manifest(QUARANTINE_TRANSACTIONS, D2)["metadata"]["held_back"] is True
    with pytest.raises(PartitionNotFound):
        lake.read_partition(VALIDATED_TRANSACTIONS, D2)  # nothing validated is published
    assert len(lake.landing_files(LANDING_TRANSACTIONS, D2)) == 2  # nothing deleted


def test_reports_hold_no_card_numbers_or_names(lake: Lake, tx_runs) -> None:
    the_plan = plan()
    keys = [k for day in (D, D1, D2) for k in lake.list_keys(partition_prefix(REPORTS_QUALITY, day) + "/")]
    assert any(k.endswith("summary.json") for k in keys) and any("/validations/" in k for k in keys)
    names = re.compile(r"\b(" + "|".join(sorted(map(re.escape, the_plan.names), key=len, reverse=True)) + r")\b")
    digits = re.compile(rb"\d{12,19}")
    for key in keys:
        data = lake.get_bytes(key)
        leaked = {m.decode() for m in digits.findall(data)} & the_plan.cards
        assert not leaked, key
        if "/static/" not in key:
            found = names.findall(data.decode("utf-8", "replace"))
            assert not found, (key, found[:5])


def test_label_days_run_through(local_stack, label_runs: dict[str, dict]) -> None:
    for day in LABEL_DAYS:
        states = task_states(local_stack, "labels_daily", label_runs[day])
        assert label_runs[day]["state"] == "success", {t: s["state"] for t, s in states.items()}


@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_bad_labels_file(kind: str, lake: Lake, label_runs) -> None:
    case = plan().labels[kind]
    stored = _partition(lake, LABELS, D1)
    quarantine = _partition(lake, QUARANTINE_LABELS, D1)
    check_case(case, stored, quarantine)
    kept = stored.set_index("trans_num")["is_fraud"]
    for trans_num, row in case.validated.items():
        assert kept[trans_num] == int(row["is_fraud"])


def test_conflicting_labels_leave_the_stored_label_alone(lake: Lake, label_runs) -> None:
    stored = plan().good_labels[D]
    day_d = _partition(lake, LABELS, D).set_index("trans_num")["is_fraud"]
    assert len(day_d) == len(stored)
    for trans_num, label in zip(stored["trans_num"], stored["is_fraud"], strict=True):
        assert day_d[trans_num] == label
    all_days = pd.concat([_partition(lake, LABELS, d) for d in (D, D1)])
    assert all_days["trans_num"].is_unique  # one label per transaction in the store


def test_label_totals_and_whole_file_rejects_are_logged(local_stack, lake: Lake, label_runs) -> None:
    landed = lake.landing_files(LANDING_LABELS, D1)
    stored, quarantined = (lake.partition_manifest(ds, D1)["rows"] for ds in (LABELS, QUARANTINE_LABELS))
    expected = len(plan().good_labels[D1]) + sum(c.rows for c in plan().labels.values())
    assert stored + quarantined == expected
    assert set(_partition(lake, QUARANTINE_LABELS, D1)[SOURCE_FILE]) <= set(landed)
    log = task_log(local_stack, "labels_daily", label_runs[D1.isoformat()], INGEST_LABELS)
    case = plan().labels["label_missing_column"]
    assert [line for line in log.splitlines() if "quarantining the whole file" in line and case.key in line]
    for case in plan().labels.values():
        assert re.search(re.escape(case.key) + rf": {case.rows} row\(s\), {len(case.validated)} validated", log)
