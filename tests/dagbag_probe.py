"""Load the repo's DAG folder in a fresh interpreter and print what the integrity test checks, as JSON.

Run by tests/test_dag_integrity.py in a subprocess with its own AIRFLOW_HOME, so the check sees
exactly what Airflow's DAG processor sees and which modules parsing pulled in.
"""

from __future__ import annotations

import json
import sys
import time

HEAVY = ("pandas", "sklearn", "xgboost", "mlflow", "evidently", "great_expectations")


def main(dag_folder: str, output: str) -> None:
    from pathlib import Path

    from airflow.dag_processing.dagbag import BundleDagBag

    before = set(sys.modules)
    started = time.perf_counter()
    # What the DAG processor and the task runner use: the bundle folder is on sys.path.
    bag = BundleDagBag(dag_folder=dag_folder, bundle_path=Path(dag_folder), bundle_name="dags-folder")
    parse_seconds = time.perf_counter() - started
    pulled_in = sorted({name.split(".")[0] for name in set(sys.modules) - before} & set(HEAVY))
    dags = {}
    from datetime import UTC, datetime

    from airflow.serialization.encoders import coerce_to_core_timetable  # what the scheduler runs

    probe_time = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # 03:00 UTC, after both nightly schedules fired
    for dag_id, dag in bag.dags.items():
        interval = None
        timetable = coerce_to_core_timetable(dag.timetable)
        if timetable.periodic:
            manual = timetable.infer_manual_data_interval(run_after=probe_time)
            interval = [manual.start.isoformat(), manual.end.isoformat()]
        dags[dag_id] = {
            "data_interval_at_probe_time": interval,
            "fileloc": dag.fileloc,
            "doc_md": dag.doc_md or "",
            "tags": sorted(dag.tags or []),
            "params": {
                name: {**param.schema, "description": param.description or ""} for name, param in dag.params.items()
            },
            "tasks": {
                task.task_id: {
                    "owner": task.owner,
                    "retries": task.retries,
                    "upstream": sorted(task.upstream_task_ids),
                    "mapped": bool(task.is_mapped),
                }
                for task in dag.tasks
            },
        }
    with open(output, "w") as handle:
        json.dump(
            {
                "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
                "dags": dags,
                "heavy_modules_loaded": pulled_in,
                "parse_seconds": parse_seconds,
            },
            handle,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
