"""Sharded batch scoring on Celery: throughput with 1 vs 2 workers on the same day, in the same run (issue 9).

Starts the distributed topology (`make up-distributed`: PostgreSQL, Redis, CeleryExecutor) on free ports
with workers of one task slot each, seeds a labelled history, trains a champion and publishes one large
validated day. Then the ``batch_score`` DAG scores that day alternately with one worker (the second one
stopped by its PID) and with two, ``--rounds`` times each. Throughput = the day's rows / the wall time of
the mapped ``scoring.score_shard`` phase (first shard start → last shard end), from Airflow's task
instances. Prints the 2-vs-1 ratio and where the time goes (per-shard task time, CPU count).

Usage: .venv/bin/python benchmarks/bench_distributed.py [--rows 200000] [--shard-rows 25000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _shard_phase(client, run_id: str) -> dict[str, float]:
    shards = [ti for ti in client.task_instances("batch_score", run_id) if ti["task_id"] == "scoring.score_shard"]
    if not shards or any(ti["state"] != "success" for ti in shards):
        raise RuntimeError(
            f"{run_id}: shard tasks did not all succeed: {[(t['map_index'], t['state']) for t in shards]}"
        )
    first = min(ti["start_date"] for ti in shards)
    last = max(ti["end_date"] for ti in shards)
    inside = [  # score_shard's own timer (model load, S3 reads, features, predict, staging), from its XCom
        client.xcom("batch_score", run_id, "scoring.score_shard", map_index=ti["map_index"])["seconds"] for ti in shards
    ]
    return {
        "shards": len(shards),
        "phase_s": _seconds(first, last),
        "task_s": statistics.mean(_seconds(ti["start_date"], ti["end_date"]) for ti in shards),
        "inside_s": statistics.mean(float(x) for x in inside),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the scored day")
    parser.add_argument("--shard-rows", type=int, default=25_000, help="FRAUD_SCORING_SHARD_ROWS")
    parser.add_argument("--rounds", type=int, default=2, help="runs per worker count (alternating)")
    args = parser.parse_args()

    from training_lib.config import load_stack_settings
    from training_lib.lake.layout import VALIDATED_TRANSACTIONS
    from training_lib.lake.storage import Lake
    from training_lib.local.airflow_client import AirflowClient
    from training_lib.local.environment import airflow_password
    from training_lib.local.processes import stop_processes
    from training_lib.local.stack import LocalStack
    from training_lib.modeling.train import seed_champion
    from training_lib.simulation.scenario import SimulationConfig
    from training_lib.simulation.simulator import Simulator, publish_validated_days

    state = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    state.chmod(0o755)  # reachable by the postgres OS user when run as root
    env = {
        "FRAUD_STATE_DIR": str(state),
        "FRAUD_S3_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_free_port()}",
        "FRAUD_AIRFLOW_API_URL": f"http://127.0.0.1:{_free_port()}",
        "FRAUD_POSTGRES_PORT": str(_free_port()),
        "FRAUD_REDIS_PORT": str(_free_port()),
        "FRAUD_BUCKET": "bench-distributed",
        "FRAUD_CARD_TOKEN_KEY": "benchmark-only-key",
        "FRAUD_CELERY_WORKERS": "2",
        "FRAUD_CELERY_WORKER_CONCURRENCY": "1",
        "FRAUD_SCORING_SHARD_ROWS": str(args.shard_rows),
    }
    os.environ.update(env)  # the stack's processes and this one read the same settings
    stack_settings = load_stack_settings()
    settings = stack_settings.platform
    stack = LocalStack(stack_settings, echo=lambda line: print(f"  {line}"))
    stack.up(timeout=300)
    try:
        lake = Lake(settings)
        start = date(2026, 3, 1)
        history = [start + timedelta(days=i) for i in range(10)]
        simulator = Simulator(SimulationConfig(seed=9, start=start, transactions_per_day=max(20_000, args.rows // 10)))
        publish_validated_days(lake, simulator, history, labelled=history)
        version = seed_champion(settings, len(history), actor="user:bench")["version"]
        day = history[-1] + timedelta(days=1)
        big = Simulator(SimulationConfig(seed=9, start=start, transactions_per_day=args.rows))
        publish_validated_days(lake, big, [day])
        rows = lake.partition_manifest(VALIDATED_TRANSACTIONS, day)["rows"]
        print(f"seeded: champion v{version}, scored day {day} with {rows:,} rows (not timed)")

        client = AirflowClient(
            stack_settings.airflow_api_url,
            stack_settings.airflow_admin_user,
            airflow_password(stack_settings, stack.paths),
        )
        client.wait_for_dag("batch_score", timeout=240)
        client.set_paused("batch_score", False)
        results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        for round_number in range(args.rounds):
            for workers in (1, 2):
                if workers == 1:
                    stop_processes(["airflow-worker2"], stack.paths)
                else:
                    stack.up(timeout=300)  # starts the stopped worker again and waits until it answers
                run = client.trigger("batch_score", {"day": day.isoformat()})
                final = client.wait_for_run("batch_score", run["dag_run_id"], timeout=3600)
                if final["state"] != "success":
                    raise RuntimeError(f"batch_score run {run['dag_run_id']} ended {final['state']}")
                measured = _shard_phase(client, run["dag_run_id"])
                measured["rows_per_s"] = rows / measured["phase_s"]
                results[workers].append(measured)
                print(
                    f"  round {round_number + 1}, {workers} worker(s): {measured['shards']:.0f} shards in "
                    f"{measured['phase_s']:.1f} s ({measured['rows_per_s']:,.0f} rows/s; "
                    f"{measured['task_s']:.1f} s per shard task, {measured['inside_s']:.1f} s of it in score_shard)"
                )
        best = {workers: max(r["rows_per_s"] for r in runs) for workers, runs in results.items()}
        per_task = {workers: statistics.mean(r["task_s"] for r in runs) for workers, runs in results.items()}
        inside = {workers: statistics.mean(r["inside_s"] for r in runs) for workers, runs in results.items()}
        gap = {  # between one shard task's end and the next one's start on the lone worker
            1: statistics.mean(r["phase_s"] / r["shards"] - r["task_s"] for r in results[1]),
        }
        print(f"\nsharded scoring of {rows:,} rows, workers with 1 task slot each, {os.cpu_count()} CPU(s):")
        print(f"  1 worker : {best[1]:9,.0f} rows/s (best of {args.rounds})")
        print(f"  2 workers: {best[2]:9,.0f} rows/s (best of {args.rounds})")
        print(f"  ratio 2/1: {best[2] / best[1]:.2f}   (ideal 2.00)")
        print(
            f"  mean shard task: {per_task[1]:.1f} s alone, {per_task[2]:.1f} s with two running at once "
            f"({per_task[2] / per_task[1]:.2f}x: both workers share the {os.cpu_count()} cores with the scheduler, "
            "API server, S3 and MLflow)"
        )
        print(
            f"  of a shard task alone, {inside[1]:.1f} s is score_shard itself and {per_task[1] - inside[1]:.1f} s the "
            f"task process around it (start, imports, Airflow's execution API); {gap[1]:.1f} s pass between one "
            "shard task and the next on one worker (Celery hand-off, scheduler loop)"
        )
        print(json.dumps({"rows": rows, "best_rows_per_s": best, "ratio": best[2] / best[1], "runs": results}))
    finally:
        stack.down()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
