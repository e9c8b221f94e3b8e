"""Every DAG file imports cleanly and carries what operators need: owner, retries, tags, docs."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
HEAVY = {"pandas", "sklearn", "xgboost", "mlflow", "evidently", "great_expectations"}
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("airflow_home")
    output = home / "dagbag.json"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    }
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "dagbag_probe.py"), str(DAGS), str(output)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(output.read_text())


def test_dag_folder_has_dags() -> None:
    assert DAG_FILES, "dags/ holds no DAG file"


def test_no_import_errors(dagbag: dict) -> None:
    assert dagbag["import_errors"] == {}


def test_every_dag_file_defines_a_dag(dagbag: dict) -> None:
    files_with_dags = {Path(d["fileloc"]).name for d in dagbag["dags"].values()}
    assert {p.name for p in DAG_FILES} <= files_with_dags


@pytest.mark.parametrize("field", ["owner", "retries"])
def test_every_task_has_owner_and_retries(dagbag: dict, field: str) -> None:
    missing = [
        f"{dag_id}.{task_id}"
        for dag_id, dag in dagbag["dags"].items()
        for task_id, task in dag["tasks"].items()
        if (field == "owner" and task["owner"] in ("", "airflow")) or (field == "retries" and task["retries"] < 1)
    ]
    assert not missing, f"tasks without a real {field}: {missing}"


def test_every_dag_has_tags_and_doc(dagbag: dict) -> None:
    for dag_id, dag in dagbag["dags"].items():
        assert dag["tags"], f"{dag_id} has no tags"
        assert len(dag["doc_md"].strip()) >= 80, f"{dag_id} has no real doc_md"


def test_parsing_dags_loads_no_heavy_library(dagbag: dict) -> None:
    assert dagbag["heavy_modules_loaded"] == []


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_import_heavy_libraries_only_inside_functions(dag_file: Path) -> None:
    tree = ast.parse(dag_file.read_text())
    top_level_imports = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level_imports += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level_imports.append(node.module)
    offending = sorted(name for name in top_level_imports if name.split(".")[0] in HEAVY)
    assert not offending, f"{dag_file.name} imports {offending} at module level"


@pytest.mark.parametrize(
    ("dag_id", "interval"),
    [
        ("transactions_daily", ["2026-03-01T00:00:00+00:00", "2026-03-02T00:00:00+00:00"]),
        ("labels_daily", ["2026-03-01T00:00:00+00:00", "2026-03-02T00:00:00+00:00"]),
        ("batch_score", ["2026-03-01T02:00:00+00:00", "2026-03-02T02:00:00+00:00"]),
    ],
)
def test_a_nightly_run_processes_the_day_that_ended(dagbag: dict, dag_id: str, interval: list[str]) -> None:
    # run_day() is the data interval's start: on 2 March the nightly runs process 1 March, not 2 March.
    assert dagbag["dags"][dag_id]["data_interval_at_probe_time"] == interval


@pytest.mark.parametrize(
    ("dag_id", "task_id", "waits_for"),
    [
        ("transactions_daily", "quality.validate", "wait_for_landing"),
        ("labels_daily", "ingest", "wait_for_labels"),
        ("batch_score", "scoring.plan", "wait_for_validated"),
    ],
)
def test_work_waits_for_its_sensor(dagbag: dict, dag_id: str, task_id: str, waits_for: str) -> None:
    assert waits_for in dagbag["dags"][dag_id]["tasks"][task_id]["upstream"]


def test_batch_scoring_fans_out_into_mapped_shards_and_commits_once(dagbag: dict) -> None:
    tasks = dagbag["dags"]["batch_score"]["tasks"]
    assert tasks["scoring.score_shard"]["mapped"] and not tasks["scoring.commit"]["mapped"]
    assert tasks["scoring.score_shard"]["upstream"] == ["scoring.plan"]
    assert tasks["scoring.commit"]["upstream"] == ["scoring.plan", "scoring.score_shard"]
    for downstream in ("alert_rate_check", "monitoring.realized_quality"):
        assert tasks[downstream]["upstream"] == ["scoring.commit"]
    assert "score" not in tasks


def test_every_trigger_param_is_typed_and_explained(dagbag: dict) -> None:
    """The trigger form shows a title, a description and a typed field for every parameter."""
    found = 0
    for dag_id, dag in dagbag["dags"].items():
        for name, schema in dag["params"].items():
            found += 1
            assert schema.get("type"), f"{dag_id}.{name} has no type"
            assert schema.get("title") and len(schema.get("description", "")) >= 20, f"{dag_id}.{name} is not explained"
    assert found >= 6  # day (3 DAGs), force, window_days, version, reason
