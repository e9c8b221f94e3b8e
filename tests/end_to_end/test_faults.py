"""Injected faults with real processes on the real local stack (issue #8).

In order, against one stack:
1. the S3 server (moto) frozen with SIGSTOP for ~30 s while ``transactions_daily``'s validate task runs: the
   attempt times out (short ``FRAUD_S3_*`` timeouts), Airflow's retry succeeds after SIGCONT, and no partial
   partition is ever visible;
2. two ``retrain`` triggers at the same moment: ``max_active_runs=1`` serializes them, one decision per run,
   one champion move per promotion;
3. the MLflow server stopped (by its recorded PID) before a ``retrain``: the run fails naming the tracking URI,
   aliases and the audit log are unchanged; after ``stack up`` restarts it, clearing the run succeeds;
4. the scoring shard task (``scoring.score_shard``) SIGKILLed as soon as its first part file appears: no
   partial predictions partition is visible, the retry publishes a complete one and the killed attempt's
   files are gone.

Figures (freeze length, tries, recovery times) are printed (``pytest -s``) and kept in ``FIGURES``.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
import time
from datetime import date, datetime, timedelta

import psutil
import pytest

from training_lib.lake.layout import (
    AUDIT_REGISTRY,
    LANDING_TRANSACTIONS,
    MANIFEST_NAME,
    PREDICTIONS,
    QUARANTINE_TRANSACTIONS,
    VALIDATED_TRANSACTIONS,
    partition_prefix,
)
from training_lib.lake.storage import Lake
from training_lib.local.airflow_api import TERMINAL_RUN_STATES, poll
from training_lib.local.airflow_client import AirflowClient
from training_lib.local.environment import StackPaths
from training_lib.local.processes import http_ok, process_alive, recorded_pid, stop_processes
from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulator import Simulator, publish_validated_days

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STACK_SETTINGS = {
    # Short S3 timeouts: a frozen server fails an attempt in ~2 x 10 s, well inside a 30 s freeze.
    "FRAUD_S3_CONNECT_TIMEOUT_S": "3",
    "FRAUD_S3_READ_TIMEOUT_S": "10",
    "FRAUD_S3_MAX_ATTEMPTS": "2",
    "FRAUD_MODEL_NAME": "fraud-detector-faults",
    "FRAUD_TRAINING_WINDOW_DAYS": "8",
    "FRAUD_PROMOTION_MARGIN": "0",  # a retrain on the same data may be promoted: alias moves to count
    "FRAUD_SCORING_BUCKET_ROWS": "1000",  # tens of part files for the big scored day
}
FREEZE_S = 30.0  # how long the S3 server stays frozen at least
FREEZE_CAP_S = 240.0  # ... and at most, waiting for the frozen attempt to give up

FREEZE_DAY = date(2026, 5, 20)  # goes through transactions_daily (before the seeded days: no drift reference)
FREEZE_SIMULATION = SimulationConfig(
    seed=21,
    start=FREEZE_DAY,
    n_customers=800,
    transactions_per_day=3000,
    quality_incident_day=FREEZE_DAY,
    quality_incident_share=0.01,
)
START = date(2026, 6, 1)
LABELLED = [START + timedelta(days=i) for i in range(10)]
SIMULATION = SimulationConfig(seed=5, start=START, n_customers=3000, transactions_per_day=5000, label_delay_days=1)
BIG_DAY = LABELLED[-1] + timedelta(days=1)  # scored with 7 seeded days of card history
BIG_SIMULATION = SimulationConfig(seed=6, start=BIG_DAY, n_customers=3000, transactions_per_day=40_000)

CONTROL_FILES = (MANIFEST_NAME, "_SUCCESS")
FIGURES: dict[str, object] = {}


def _figure(name: str, value: object) -> None:
    FIGURES[name] = value
    print(f"[faults] {name}: {value}")


# --------------------------------------------------------------------------- helpers


def _ti(client: AirflowClient, dag_id: str, run_id: str, task_id: str) -> dict | None:
    return next((ti for ti in client.task_instances(dag_id, run_id) if ti["task_id"] == task_id), None)


def _states(client: AirflowClient, dag_id: str, run_id: str) -> dict[str, str]:
    return {ti["task_id"]: f"{ti['state']} (try {ti['try_number']})" for ti in client.task_instances(dag_id, run_id)}


def _task_log(client: AirflowClient, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
    """The task's log of one try, as text (the API's structured events, JSON-encoded)."""
    return json.dumps(client.task_log(dag_id, run_id, task_id, try_number))


def _when(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def _data_keys(lake: Lake, dataset: str, day: date) -> set[str]:
    """Every object under the partition folder except its control files (manifest, _SUCCESS)."""
    prefix = partition_prefix(dataset, day) + "/"
    return {key for key in lake.list_keys(prefix) if key[len(prefix) :] not in CONTROL_FILES}


def _visible(lake: Lake, dataset: str, day: date) -> dict:
    """What a reader sees: no manifest, or a manifest whose every file exists and holds its rows."""
    manifest = lake.partition_manifest(dataset, day)
    if manifest is None:
        return {"state": "absent"}
    missing = [key for key in manifest["files"] if not lake.exists(key)]
    if missing:
        return {"state": "partial", "version": manifest["version"], "missing": missing}
    rows = lake.read_partition(dataset, day).num_rows
    state = "complete" if rows == manifest["rows"] else "partial"
    return {"state": state, "version": manifest["version"], "rows": rows, "manifest_rows": manifest["rows"]}


def _wait_observing(client: AirflowClient, dag_id: str, run_id: str, observe, timeout: float) -> tuple[dict, list]:
    """Wait for the run to finish, calling ``observe()`` at every poll; returns (run, observations)."""
    seen: list = []

    def finished() -> dict | None:
        seen.append(observe())
        run = client.get_run(dag_id, run_id)
        return run if run["state"] in TERMINAL_RUN_STATES else None

    return poll(finished, timeout, f"{dag_id} run {run_id} to finish", interval=2.0), seen


def _assert_no_orphans(lake: Lake, dataset: str, day: date) -> dict:
    manifest = lake.partition_manifest(dataset, day)
    assert manifest is not None, f"{dataset} {day} not published"
    assert all(lake.exists(key) for key in manifest["files"])
    assert _data_keys(lake, dataset, day) == set(manifest["files"]), "files outside the manifest remain"
    return manifest


def _audit_snapshot(lake: Lake, model: str) -> dict[str, bytes]:
    return {key: lake.get_bytes(key) for key in lake.list_keys(f"{AUDIT_REGISTRY}/{model}/")}


def _registry(settings):
    from training_lib.modeling.registry import Registry

    return Registry(settings)


def _unpaused(client: AirflowClient, dag_id: str) -> AirflowClient:
    client.wait_for_dag(dag_id, timeout=180)
    client.set_paused(dag_id, False)
    return client


@pytest.fixture(scope="module")
def seeded(local_stack) -> Lake:
    """Ten validated, labelled days, as the ingestion DAGs write them."""
    lake = Lake(local_stack.settings)
    publish_validated_days(lake, Simulator(SIMULATION), LABELLED, labelled=LABELLED)
    return lake


# --------------------------------------------------------------------------- 1. S3 frozen mid-task


def test_s3_server_frozen_during_validate_then_the_retry_publishes_whole_partitions(local_stack) -> None:
    settings = local_stack.settings
    lake = Lake(settings)
    simulator = Simulator(FREEZE_SIMULATION)
    landed_rows = len(simulator.transactions_text(FREEZE_DAY)[0])
    landing_key = f"{partition_prefix(LANDING_TRANSACTIONS, FREEZE_DAY)}/transactions.csv"
    lake.put_bytes(landing_key, simulator.day_csv_bytes(FREEZE_DAY))
    s3_pid = recorded_pid(StackPaths(local_stack.stack).pid_file("s3"))
    assert s3_pid is not None, "the stack's S3 server has no live recorded PID"

    client = _unpaused(local_stack.airflow(), "transactions_daily")
    day = FREEZE_DAY.isoformat()
    client.create_backfill("transactions_daily", day, day)
    run_id = poll(lambda: (client.backfill_runs("transactions_daily", [day]) or [{}])[0].get("dag_run_id"), 180,
                   "the backfill run")  # fmt: skip

    def validate_running() -> dict | None:
        ti = _ti(client, "transactions_daily", run_id, "quality.validate")
        return ti if ti and ti["state"] == "running" else None

    poll(validate_running, 600, "quality.validate to start", interval=0.2)
    os.kill(s3_pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:

        def first_try_gave_up() -> dict | None:
            ti = _ti(client, "transactions_daily", run_id, "quality.validate")
            gave_up = ti["try_number"] > 1 or ti["state"] in {"up_for_retry", "failed"}
            return ti if gave_up and time.monotonic() - frozen_at >= FREEZE_S else None

        at_resume_ti = poll(first_try_gave_up, FREEZE_CAP_S, "the validate attempt to give up on the frozen S3")
    finally:
        os.kill(s3_pid, signal.SIGCONT)
    resumed_at = datetime.now().astimezone()
    _figure("s3_freeze_s", round(time.monotonic() - frozen_at, 1))
    # Right after SIGCONT, before the retry publishes anything: nothing half-published is visible.
    at_resume = {ds: _visible(lake, ds, FREEZE_DAY) for ds in (QUARANTINE_TRANSACTIONS, VALIDATED_TRANSACTIONS)}
    _figure("s3_state_at_resume", {"task": at_resume_ti["state"], **{k: v["state"] for k, v in at_resume.items()}})

    datasets = (QUARANTINE_TRANSACTIONS, VALIDATED_TRANSACTIONS)

    def states() -> dict[str, str]:
        return {ds: _visible(lake, ds, FREEZE_DAY)["state"] for ds in datasets}

    final, seen = _wait_observing(client, "transactions_daily", run_id, states, 900)
    assert final["state"] == "success", _states(client, "transactions_daily", run_id)
    validate = _ti(client, "transactions_daily", run_id, "quality.validate")
    assert validate["state"] == "success" and validate["try_number"] > 1
    _figure("s3_validate_tries", validate["try_number"])
    _figure("s3_recovered_after_resume_s", round((_when(validate["end_date"]) - resumed_at).total_seconds(), 1))

    for state in at_resume.values():
        assert state["state"] in {"absent", "complete"}, at_resume
    if at_resume[VALIDATED_TRANSACTIONS]["state"] == "complete":  # quarantine is committed first
        assert at_resume[QUARANTINE_TRANSACTIONS]["state"] == "complete", at_resume
    for observation in seen:
        assert set(observation.values()) <= {"absent", "complete"}, seen

    validated = _assert_no_orphans(lake, VALIDATED_TRANSACTIONS, FREEZE_DAY)
    quarantined = _assert_no_orphans(lake, QUARANTINE_TRANSACTIONS, FREEZE_DAY)
    assert validated["rows"] + quarantined["rows"] == landed_rows
    assert quarantined["rows"] > 0  # the incident's malformed rows: the sum above is not all one side
    table = lake.read_partition(VALIDATED_TRANSACTIONS, FREEZE_DAY, columns=["trans_num"])
    assert table.num_rows == validated["rows"] and len(set(table.column("trans_num").to_pylist())) == table.num_rows

    log = _task_log(client, "transactions_daily", run_id, "quality.validate", 1)
    assert settings.s3_endpoint_url in log, log[-3000:]
    assert "timeout" in log.lower(), log[-3000:]


# --------------------------------------------------------------------------- 2. two retrain triggers at once


def test_two_retrain_triggers_at_once_run_one_after_the_other(local_stack, seeded) -> None:
    settings = local_stack.settings
    clients = [_unpaused(local_stack.airflow(), "retrain"), local_stack.airflow()]
    for client in clients:
        client.token()
    barrier = threading.Barrier(len(clients))
    triggered: list[dict] = []

    def trigger(client: AirflowClient) -> None:
        barrier.wait()
        triggered.append(client.trigger("retrain", {"force": True}, busy_retries=5))

    threads = [threading.Thread(target=trigger, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(triggered) == 2
    client = clients[0]
    runs = [client.wait_for_run("retrain", run["dag_run_id"], timeout=1500) for run in triggered]
    for run in runs:
        assert run["state"] == "success", _states(client, "retrain", run["dag_run_id"])
    first, second = sorted(runs, key=lambda run: run["start_date"])
    assert _when(first["end_date"]) <= _when(second["start_date"]), (first, second)
    gap = _when(second["start_date"]) - _when(first["end_date"])
    _figure("retrain_serialized_gap_s", round(gap.total_seconds(), 1))

    registry = _registry(settings)
    history = registry.history()
    actors = [f"airflow:retrain/{run['dag_run_id']}" for run in (first, second)]
    decisions = [[entry for entry in history if entry.get("actor") == actor] for actor in actors]
    assert [len(found) for found in decisions] == [1, 1], decisions
    promotions = [entry for entry in history if entry["kind"] == "promotion"]
    assert promotions, "no promotion: the first model must clear the floor"
    for before, after in itertools.pairwise(promotions):
        assert after["previous_champion_version"] == before["candidate_version"], promotions
    assert registry.aliases().get("champion") == promotions[-1]["candidate_version"]
    assert registry.alias_moves_outside_platform() == []
    signalled = client.asset_events(source_dag_id="retrain", asset_name="model_promoted")
    assert [event["extra"]["version"] for event in signalled] == [entry["candidate_version"] for entry in promotions]
    _figure("retrain_decisions", [entry["kind"] for entry in history])


# --------------------------------------------------------------------------- 3. MLflow down during retrain


def test_mlflow_down_fails_retrain_clearly_and_a_rerun_succeeds_once_it_is_back(local_stack, seeded) -> None:
    settings = local_stack.settings
    lake = Lake(settings)
    paths = StackPaths(local_stack.stack)
    aliases_before = _registry(settings).aliases()
    audit_before = _audit_snapshot(lake, settings.model_name)
    datasets_before = lake.list_keys("training/datasets/")
    old_pid = recorded_pid(paths.pid_file("mlflow"))
    assert old_pid is not None
    stopped = stop_processes(["mlflow"], paths)
    assert not process_alive(old_pid) and not http_ok(f"{settings.mlflow_tracking_uri}/health"), stopped

    client = _unpaused(local_stack.airflow(), "retrain")
    down_at = time.monotonic()
    run_id = client.trigger("retrain", {"force": True})["dag_run_id"]
    final = client.wait_for_run("retrain", run_id, timeout=900)
    _figure("mlflow_down_run_failed_after_s", round(time.monotonic() - down_at, 1))
    assert final["state"] == "failed", _states(client, "retrain", run_id)
    failed = [ti for ti in client.task_instances("retrain", run_id) if ti["state"] == "failed"]
    assert failed, _states(client, "retrain", run_id)
    log = _task_log(client, "retrain", run_id, failed[0]["task_id"], failed[0]["try_number"])
    assert f"MLFLOW_TRACKING_URI={settings.mlflow_tracking_uri}" in log, log[-3000:]
    assert "not reachable" in log, log[-3000:]
    assert _audit_snapshot(lake, settings.model_name) == audit_before
    assert lake.list_keys("training/datasets/") == datasets_before  # failed before any work

    result = local_stack.cli("up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert recorded_pid(paths.pid_file("mlflow")) not in {None, old_pid}
    assert _registry(settings).aliases() == aliases_before

    restarted_at = time.monotonic()
    client.clear_run("retrain", run_id, only_failed=True, busy_retries=5)
    poll(lambda: client.get_run("retrain", run_id)["state"] != "failed", 120, "the cleared run to restart")
    final = client.wait_for_run("retrain", run_id, timeout=1200)
    assert final["state"] == "success", _states(client, "retrain", run_id)
    _figure("mlflow_rerun_succeeded_after_s", round(time.monotonic() - restarted_at, 1))

    registry = _registry(settings)
    decisions = [entry for entry in registry.history() if entry.get("actor") == f"airflow:retrain/{run_id}"]
    assert len(decisions) == 1, decisions
    aliases = registry.aliases()
    if decisions[0]["kind"] == "promotion":
        assert aliases.get("champion") == decisions[0]["candidate_version"]
    else:
        assert aliases.get("champion") == aliases_before.get("champion")
        assert aliases.get("challenger") == decisions[0]["candidate_version"]
    assert registry.alias_moves_outside_platform() == []


# --------------------------------------------------------------------------- 4. scoring killed mid-write


def _task_process(ti: dict) -> int:
    """The PID of the live task process of ``ti`` (its title names the task instance id); checked, not guessed."""
    pid = ti.get("pid")
    if pid:
        try:
            if ti["id"] in " ".join(psutil.Process(int(pid)).cmdline()):
                return int(pid)
        except psutil.Error:  # gone, or not ours to inspect
            pass
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if cmdline.startswith("airflow worker -- ") and ti["id"] in cmdline:
            return process.pid
    raise AssertionError(f"no live process for task instance {ti['id']} (API pid {pid})")


def test_scoring_killed_mid_write_leaves_nothing_partial_and_the_retry_publishes(local_stack, seeded) -> None:
    settings = local_stack.settings
    lake = seeded
    publish_validated_days(lake, Simulator(BIG_SIMULATION), [BIG_DAY])
    validated = lake.read_partition(VALIDATED_TRANSACTIONS, BIG_DAY, columns=["trans_num"])
    assert validated.num_rows >= 20 * settings.scoring_bucket_rows  # several part files
    assert lake.partition_manifest(PREDICTIONS, BIG_DAY) is None

    client = _unpaused(local_stack.airflow(), "batch_score")
    run_id = client.trigger("batch_score", {"day": BIG_DAY.isoformat()})["dag_run_id"]
    staged = poll(lambda: _data_keys(lake, PREDICTIONS, BIG_DAY), 900, "the first staged part file", interval=0.1)
    ti = _ti(client, "batch_score", run_id, "scoring.score_shard")  # the day is one shard: map index 0
    assert ti["state"] == "running" and ti["try_number"] == 1 and ti["map_index"] == 0, ti
    os.kill(_task_process(ti), signal.SIGKILL)
    killed_at = time.monotonic()
    killed_files = _data_keys(lake, PREDICTIONS, BIG_DAY)
    _figure("scoring_parts_staged_when_killed", len(killed_files))
    after_kill = _visible(lake, PREDICTIONS, BIG_DAY)
    assert after_kill["state"] == "absent", after_kill
    assert staged <= killed_files

    final, seen = _wait_observing(
        client, "batch_score", run_id, lambda: _visible(lake, PREDICTIONS, BIG_DAY)["state"], 1200
    )
    assert final["state"] == "success", _states(client, "batch_score", run_id)
    score = _ti(client, "batch_score", run_id, "scoring.score_shard")
    assert score["state"] == "success" and score["try_number"] == 2, score
    commit = _ti(client, "batch_score", run_id, "scoring.commit")
    assert commit["state"] == "success" and commit["try_number"] == 1, commit  # it ran once, after the retry
    _figure("scoring_republished_after_kill_s", round(time.monotonic() - killed_at, 1))
    assert set(seen) <= {"absent", "complete"}, seen

    manifest = _assert_no_orphans(lake, PREDICTIONS, BIG_DAY)
    assert not killed_files & set(manifest["files"]) and not killed_files & _data_keys(lake, PREDICTIONS, BIG_DAY)
    assert len(manifest["files"]) > 1
    predictions = lake.read_partition(PREDICTIONS, BIG_DAY, columns=["trans_num"]).column("trans_num").to_pylist()
    assert len(predictions) == validated.num_rows == manifest["rows"]
    assert set(predictions) == set(validated.column("trans_num").to_pylist())
    assert lake.exists(f"{partition_prefix(PREDICTIONS, BIG_DAY)}/_SUCCESS")
    _figure("scoring_rows", len(predictions))
