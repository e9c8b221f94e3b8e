"""The scale-out topology for real: PostgreSQL, Redis, Airflow's CeleryExecutor with two workers.

``make up-distributed`` on this machine (training_lib/local/stack.py with ``FRAUD_CELERY_WORKERS``), on free
ports. A simulated day goes through ``transactions_daily`` and the sharded ``batch_score`` on the Celery
workers, and the same day through the same DAGs on a LocalExecutor Airflow (the `make up` topology) that
shares the S3 server and the MLflow registry (so both score with the very same champion) but writes its
lake into another bucket. Every published part file must be byte-identical between the two.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from conftest import StackHandle, free_port, private_state_dir, stack_environment, start_stack, stop_stack

from training_lib.config import DUMMY_S3_KEY
from training_lib.lake.layout import (
    LANDING_TRANSACTIONS,
    PREDICTIONS,
    QUARANTINE_TRANSACTIONS,
    VALIDATED_TRANSACTIONS,
    partition_prefix,
)
from training_lib.lake.objects import ensure_bucket
from training_lib.lake.storage import Lake
from training_lib.local.environment import StackPaths
from training_lib.modeling.train import seed_champion
from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulator import Simulator, publish_validated_days

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = date(2026, 7, 1)
HISTORY = [START + timedelta(days=i) for i in range(8)]
DAY = HISTORY[-1] + timedelta(days=1)  # lands raw and goes through ingestion, then scoring
SIMULATION = SimulationConfig(
    seed=21, start=START, n_customers=1500, transactions_per_day=4000, label_delay_days=1, quality_incident_day=DAY
)
SHARED_SETTINGS = {
    "FRAUD_CARD_TOKEN_KEY": "distributed-test-token-key-0123456789",
    "FRAUD_LABEL_DELAY_DAYS": "1",
    "FRAUD_MODEL_NAME": "fraud-detector-distributed",
    "FRAUD_SCORING_SHARD_ROWS": "1000",  # a 4 000-row day: 4 shards, mapped over the workers
    "FRAUD_SCORING_BUCKET_ROWS": "600",
}
WORKERS = 2
DAGS = ("transactions_daily", "batch_score")


@pytest.fixture(scope="module")
def distributed() -> Iterator[StackHandle]:
    state_dir = private_state_dir("fraud-distributed-")
    env = stack_environment(state_dir)
    env.update(SHARED_SETTINGS)
    env.update(
        {
            "FRAUD_BUCKET": "fraud-distributed",
            "FRAUD_CELERY_WORKERS": str(WORKERS),
            "FRAUD_CELERY_WORKER_CONCURRENCY": "1",  # one task per worker: the shards must spread over both
            "FRAUD_REDIS_PORT": str(free_port()),
        }
    )
    handle = start_stack(env, state_dir)
    try:
        yield handle
    finally:
        stop_stack(handle, state_dir)


@pytest.fixture(scope="module")
def reference(distributed: StackHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    """The `make up` Airflow (LocalExecutor, SQLite) on the distributed stack's S3 and MLflow, own bucket."""
    state_dir = tmp_path_factory.mktemp("reference")
    env = stack_environment(state_dir)
    env.update(SHARED_SETTINGS)
    env.update(
        {
            "FRAUD_BUCKET": "fraud-local-reference",
            "FRAUD_EMBEDDED_SERVICES": "airflow",
            "FRAUD_AIRFLOW_DATABASE": "sqlite",  # `make up`'s default
            "FRAUD_S3_ENDPOINT_URL": distributed.settings.s3_endpoint_url or "",
            "MLFLOW_TRACKING_URI": distributed.settings.mlflow_tracking_uri,
            "AWS_ACCESS_KEY_ID": DUMMY_S3_KEY,  # what the S3 server accepts
            "AWS_SECRET_ACCESS_KEY": DUMMY_S3_KEY,
        }
    )
    handle = start_stack(env, state_dir)
    ensure_bucket(handle.settings)
    try:
        yield handle
    finally:
        handle.cli("down")


@pytest.fixture(scope="module")
def runs(distributed: StackHandle, reference: StackHandle) -> dict[str, dict[str, dict]]:
    """Seed both lakes alike, one champion for both, then run the day through both Airflows side by side."""
    simulator = Simulator(SIMULATION)
    raw_day = simulator.day_csv_bytes(DAY)
    for stack in (distributed, reference):
        lake = Lake(stack.settings)
        publish_validated_days(lake, simulator, HISTORY, labelled=HISTORY)
        lake.put_bytes(f"{partition_prefix(LANDING_TRANSACTIONS, DAY)}/transactions.csv", raw_day)
    seed_champion(distributed.settings, len(HISTORY), actor="user:test")  # one registry: the same version scores both

    results: dict[str, dict[str, dict]] = {"distributed": {}, "reference": {}}
    errors: list[BaseException] = []

    def run_dags(name: str, stack: StackHandle) -> None:
        try:
            client = stack.airflow()
            for dag_id in DAGS:
                client.wait_for_dag(dag_id, timeout=240)
                client.set_paused(dag_id, False)
                run = client.trigger(dag_id, {"day": DAY.isoformat()})
                final = client.wait_for_run(dag_id, run["dag_run_id"], timeout=900)
                final["task_instances"] = client.task_instances(dag_id, run["dag_run_id"])
                results[name][dag_id] = final
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [
        threading.Thread(target=run_dags, args=("distributed", distributed)),
        threading.Thread(target=run_dags, args=("reference", reference)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _states(run: dict) -> dict[str, str]:
    return {f"{ti['task_id']}[{ti['map_index']}]": ti["state"] for ti in run["task_instances"]}


@pytest.mark.parametrize("side", ["distributed", "reference"])
def test_the_day_runs_through_ingestion_and_sharded_scoring(runs, side: str) -> None:
    for dag_id in DAGS:
        run = runs[side][dag_id]
        assert run["state"] == "success", (dag_id, _states(run))
    shards = [ti for ti in runs[side]["batch_score"]["task_instances"] if ti["task_id"] == "scoring.score_shard"]
    assert len(shards) == 4 and {ti["state"] for ti in shards} == {"success"}


def test_every_task_ran_on_the_celery_workers_and_both_took_work(distributed: StackHandle, runs) -> None:
    paths = StackPaths(distributed.stack)
    worker_logs = {
        number: paths.log_file(f"airflow-worker{number}").read_text(errors="replace")
        for number in range(1, WORKERS + 1)
    }
    pattern = re.compile(
        r"Executing workload in Celery:.*? task_id='([^']+)', dag_id='([^']+)', run_id='([^']+)',.*? map_index=(-?\d+)"
    )
    executed = {
        number: {(dag, run, task, int(index)) for task, dag, run, index in pattern.findall(text)}
        for number, text in worker_logs.items()
    }
    ran = {
        (run["dag_id"], run["dag_run_id"], ti["task_id"], ti["map_index"])
        for run in runs["distributed"].values()
        for ti in run["task_instances"]
        if ti["state"] in {"success", "failed", "up_for_retry"}
    }
    seen = set().union(*executed.values())
    assert ran <= seen, f"tasks not executed by a Celery worker: {sorted(ran - seen)}"
    took_work = {number: len(ran & tasks) for number, tasks in executed.items()}
    assert all(took_work.values()), f"a worker executed none of the day's tasks: {took_work}"
    assert len({key for key in ran if key[2] == "scoring.score_shard"}) == 4


def test_outputs_are_byte_identical_to_the_local_executor_run(distributed: StackHandle, reference, runs) -> None:
    lakes = {"distributed": Lake(distributed.settings), "reference": Lake(reference.settings)}
    for dataset in (VALIDATED_TRANSACTIONS, QUARANTINE_TRANSACTIONS, PREDICTIONS):
        manifests = {side: lake.partition_manifest(dataset, DAY) for side, lake in lakes.items()}
        assert all(manifests.values()), (dataset, manifests)
        for field in ("rows", "columns", "schema", "content_sha256"):
            assert manifests["distributed"][field] == manifests["reference"][field], (dataset, field)
        contents = {
            side: [lakes[side].get_bytes(key) for key in manifest["files"]] for side, manifest in manifests.items()
        }
        assert contents["distributed"] == contents["reference"], dataset
    predictions = lakes["distributed"].read_partition(PREDICTIONS, DAY)
    assert predictions.num_rows == lakes["distributed"].partition_manifest(VALIDATED_TRANSACTIONS, DAY)["rows"] > 3000
    assert lakes["distributed"].partition_manifest(QUARANTINE_TRANSACTIONS, DAY)["rows"] > 0  # the incident


def test_postgresql_never_reported_a_busy_database(distributed: StackHandle, runs) -> None:
    """The SQLite lock workarounds (HTTP 503 "database is locked") have no reason to fire on PostgreSQL."""
    api_log = StackPaths(distributed.stack).log_file("airflow-api-server").read_text(errors="replace")
    assert "database is locked" not in api_log.lower()
    assert not re.search(r"status_code=50[03]\b", api_log)
