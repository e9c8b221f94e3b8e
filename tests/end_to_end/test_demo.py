"""The short demo (`make demo-fast`) on a private real stack: moto S3 server, MLflow server, Airflow scheduler.

Every step is a DAG run the scheduler runs (backfills and Asset-triggered retrains); the assertions read
the outcome back from S3, the MLflow registry, the audit log and the Airflow API.
"""

from __future__ import annotations

import threading
from datetime import date

import pytest
from pii_scan import PiiScanner, ScanReport

from training_lib.lake.layout import (
    AUDIT_REGISTRY,
    LABELS,
    LANDING_TRANSACTIONS,
    PREDICTIONS,
    QUARANTINE_LABELS,
    QUARANTINE_TRANSACTIONS,
    REPORTS_DRIFT,
    REPORTS_PERFORMANCE,
    REPORTS_QUALITY,
    REPORTS_SCORING,
    VALIDATED_TRANSACTIONS,
    partition_prefix,
)
from training_lib.lake.objects import s3_client
from training_lib.lake.storage import Lake
from training_lib.local.demo import DemoDriver
from training_lib.local.demo_plan import FAST
from training_lib.local.demo_summary import format_summary
from training_lib.local.environment import LOOPBACK
from training_lib.local.processes import listening_addresses
from training_lib.local.stack import LocalStack
from training_lib.modeling.dataset import DATASETS
from training_lib.simulation.simulator import Simulator

# The demo takes ~7 minutes alone; beside another test stack on a loaded 2-core machine, twice that.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

STACK_SETTINGS = dict(FAST.profile)  # the stack's processes run with the demo's scenario settings
PLAN = FAST
# Where card numbers and names may live (training_lib/lake/storage.py): files as delivered, validated rows and
# quarantined rows. The label store (LABELS: trans_num, is_fraud, confirmed_at) holds none and is scanned.
PRIVATE_ZONES = ("landing/", "validated/", "quarantine/")
LISTEN_SAMPLE_S = 2.0


class ListeningSampler(threading.Thread):
    """Records every TCP listening address of the stack's processes (and their children: task processes,
    log servers) while the demo runs."""

    def __init__(self, stack: LocalStack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.stop = threading.Event()
        self.seen: set[tuple[str, int]] = set()
        self.samples = 0

    def run(self) -> None:
        while not self.stop.is_set():
            pids = [pid for pid in self.stack.running().values() if pid]
            self.seen |= listening_addresses(pids)
            self.samples += 1
            self.stop.wait(LISTEN_SAMPLE_S)


@pytest.fixture(scope="module")
def demo(local_stack) -> dict:
    lines: list[str] = []
    sampler = ListeningSampler(LocalStack(local_stack.stack, echo=lambda _: None))
    sampler.start()
    try:
        summary = DemoDriver(local_stack.settings, local_stack.airflow(), PLAN, echo=lines.append).run()
    finally:
        sampler.stop.set()
        sampler.join()
    return {"summary": summary, "lines": lines, "listening": sampler.seen, "listening_samples": sampler.samples}


@pytest.fixture(scope="module")
def lake(local_stack) -> Lake:
    return Lake(local_stack.settings)


@pytest.fixture(scope="module")
def simulator(local_stack) -> Simulator:
    return Simulator(PLAN.simulation(local_stack.settings.label_delay_days))


def _registry(local_stack):
    from training_lib.modeling.registry import Registry

    return Registry(local_stack.settings)


def test_every_day_is_ingested_and_reconciles(demo, lake: Lake, simulator: Simulator) -> None:
    incident = PLAN.dates[PLAN.incident_day - 1]
    for day in PLAN.dates:
        text, kinds = simulator.transactions_text(day)
        validated = lake.read_partition(VALIDATED_TRANSACTIONS, day).num_rows
        quarantined = lake.read_partition(QUARANTINE_TRANSACTIONS, day).num_rows
        assert validated + quarantined == len(text), day  # nothing lost
        assert quarantined == int(kinds.notna().sum()), day
        assert (quarantined > 0) == (day == incident), day
        # labels of quarantined transactions are quarantined too ("unknown transaction"), never dropped
        labels = lake.read_partition(LABELS, day).num_rows + lake.read_partition(QUARANTINE_LABELS, day).num_rows
        assert labels == len(simulator.labels(day)), day
    days = {d["day"]: d for d in demo["summary"]["days"]}
    assert days[incident.isoformat()]["quarantine_reasons"]


def test_every_day_has_a_drift_report(demo, lake: Lake) -> None:
    for day in PLAN.dates:
        summary = lake.get_json(lake.report_key(REPORTS_DRIFT, day, "summary.json"))
        assert summary["status"] in {"computed", "no_reference"}, (day, summary)
        if PLAN.drift_day is not None:
            drift_from = PLAN.day(PLAN.drift_day)
            assert summary["drift_detected"] is (day >= drift_from), (day, summary["share"], summary["drifted_columns"])


def test_retrain_was_started_by_asset_events(local_stack, demo) -> None:
    runs = local_stack.airflow().list_runs("retrain")
    assert runs and all(run["run_type"] == "asset_triggered" for run in runs)
    assert all(run["state"] == "success" for run in runs)
    decisions = [e for e in _registry(local_stack).history() if e["kind"] in {"promotion", "rejection"}]
    assert decisions, "at least one retrain must reach the gate"
    assert decisions[0]["kind"] == "promotion" and decisions[0]["previous_champion_version"] is None
    for entry in decisions:
        trigger = entry["evaluation"]["trigger"]
        assert "drift_detected:" in trigger or "new_labels:" in trigger, trigger
        assert entry["actor"].startswith("airflow:retrain/")


def test_registry_aliases_match_the_audit_log(local_stack, demo) -> None:
    registry = _registry(local_stack)
    history = registry.history()
    promotions = [e for e in history if e["kind"] == "promotion"]
    assert registry.champion().version == promotions[-1]["champion_version"]
    assert registry.alias_moves_outside_platform() == []
    events = local_stack.airflow().asset_events(source_dag_id="retrain", asset_name="model_promoted")
    assert [event["extra"]["version"] for event in events] == [e["champion_version"] for e in promotions]
    assert demo["summary"]["champion"] == registry.champion().version


def test_one_predictions_partition_per_scored_day(local_stack, demo, lake: Lake) -> None:
    first_promotion = next(e for e in _registry(local_stack).history() if e["kind"] == "promotion")
    scored = [day for day in PLAN.dates if lake.partition_exists(PREDICTIONS, day)]
    assert scored, "the first champion must arrive before the last day"
    assert scored == [day for day in PLAN.dates if day >= scored[0]]  # every night from the first champion on
    assert scored[0] > date.fromisoformat(first_promotion["evaluation"]["data_day"])
    for day in scored:
        predictions = lake.read_partition(PREDICTIONS, day).to_pandas()
        assert len(predictions) == lake.read_partition(VALIDATED_TRANSACTIONS, day).num_rows
        assert predictions["trans_num"].is_unique
        assert predictions["model_version"].nunique() == 1
        assert lake.exists(f"{partition_prefix(PREDICTIONS, day)}/_SUCCESS")
        # never scored by a model fitted on the day: the night order of the replay
        fitted_through = lake.partition_manifest(PREDICTIONS, day)["metadata"]["model_fitted_through"]
        assert fitted_through < day.isoformat(), (day, fitted_through)
    by_day = {d["day"]: d for d in demo["summary"]["days"]}
    assert [d for d, row in by_day.items() if row["predictions"]] == [d.isoformat() for d in scored]


def test_the_loop_closes_after_the_fraud_change(local_stack, demo, lake: Lake) -> None:
    """Card testing from the change day: a retrain on data holding the change is promoted, the new champion
    scores the later days, and realized PR-AUC on them is higher than on the days the earlier champion
    scored after the change. Structure and direction, not exact values."""
    recovery = demo["summary"]["recovery"]
    change = PLAN.day(PLAN.change_day)
    assert recovery["change_day"] == change.isoformat()
    promotion = recovery["promotion"]
    assert promotion is not None, "no promotion after the change"
    assert promotion["data_day"] >= change.isoformat() and promotion["previous"] is not None
    entry = next(e for e in _registry(local_stack).history() if e.get("champion_version") == promotion["version"])
    assert entry["challenger_pr_auc"] >= entry["champion_pr_auc"] + entry["margin"] - 1e-9
    assert entry["evaluation"]["days"] and all(day > entry["evaluation"]["champion_fitted_through"]
                                               for day in entry["evaluation"]["days"])  # fmt: skip
    broken, healed = recovery["broken"], recovery["healed"]
    assert broken["days"] and healed["days"], recovery
    assert max(broken["days"]) < min(healed["days"])
    assert healed["mean_pr_auc"] > broken["mean_pr_auc"], recovery
    days = {d["day"]: d for d in demo["summary"]["days"]}
    for day in healed["days"]:  # scored by the healing champion or a later one, measured on matured labels
        performance = lake.get_json(lake.report_key(REPORTS_PERFORMANCE, date.fromisoformat(day), "summary.json"))
        assert performance["status"] == "computed" and performance["model_version"] == days[day]["scored_by_version"]
    text = format_summary(demo["summary"])
    assert f"fraud changed on {change}" in text and f"after v{promotion['version']} was promoted" in text


def test_progress_and_summary_are_printed(demo) -> None:
    lines = demo["lines"]
    for day in PLAN.dates:
        assert any(f"[{day}] transactions_daily success" in line for line in lines), day
    assert any("[retrain] retrain (asset_triggered) success" in line for line in lines)
    text = format_summary(demo["summary"])
    assert f"{PLAN.days} days replayed" in text
    assert "champion now: v" in text and "predictions:" in text
    import urllib.request

    # the printed report links open in a browser without S3 credentials (presigned)
    with urllib.request.urlopen(demo["summary"]["links"]["latest_drift_report"], timeout=60) as response:  # noqa: S310
        assert b"<html" in response.read(3000).lower()


def test_every_process_listened_on_loopback_only_during_the_demo(local_stack, demo) -> None:
    settings = local_stack.settings
    ports = {port for _host, port in demo["listening"]}
    assert demo["listening_samples"] > 1
    for url in (settings.s3_endpoint_url, settings.mlflow_tracking_uri, local_stack.stack.airflow_api_url):
        assert int(url.rsplit(":", 1)[1]) in ports, (url, demo["listening"])
    # no log server (8793/8794), health server or task process bound another address at any sample
    assert {host for host, _port in demo["listening"]} == {LOOPBACK}, demo["listening"]


def test_nothing_the_platform_wrote_carries_a_card_number_or_a_name(
    local_stack, demo, lake: Lake, simulator: Simulator
) -> None:
    """Every S3 object outside the private zones, every file of the stack's state folder (service logs,
    Airflow task logs, the Airflow and MLflow databases) and the demo's printed output."""
    scanner = PiiScanner.from_simulator(simulator)
    settings = local_stack.settings
    # The scanner knows the input: it does find cards and names where they are allowed to be.
    day = PLAN.dates[0]
    landing = scanner.scan_bytes(lake.get_bytes(lake.landing_files(LANDING_TRANSACTIONS, day)[0]), "landing")
    assert {f.kind for f in landing} >= {"card number", "full name"}
    validated_part = lake.partition_manifest(VALIDATED_TRANSACTIONS, day)["files"][0]
    validated = scanner.scan_bytes(lake.get_bytes(validated_part), "validated")
    assert {f.kind for f in validated} >= {"card number", "last name"}

    bucket = scanner.scan_bucket(s3_client(settings), settings.bucket, skip_prefixes=PRIVATE_ZONES)
    # PostgreSQL's files are its pages, whose own catalogs (copied from initdb's template) name a collation
    # "French (St. Martin)", a customer's last name to the scanner: the databases are scanned as pg_dump text.
    local = scanner.scan_tree(local_stack.stack.state_dir, skip=("postgres",))
    dumps = _database_dumps(local_stack)
    databases = ScanReport()
    for database, dump in dumps.items():
        databases.extend(ScanReport(scanner.scan_text(dump, f"pg_dump {database}"), [f"pg_dump {database}"]))
    printed = ScanReport(scanner.scan_text("\n".join([*demo["lines"], format_summary(demo["summary"])]), "demo output"))
    findings = ScanReport().extend(bucket).extend(local).extend(databases).extend(printed)
    assert not findings.findings, findings.summary()

    # The scan read what the platform writes: reports, predictions, datasets, audit log, MLflow artifacts ...
    for prefix in (PREDICTIONS, REPORTS_QUALITY, REPORTS_DRIFT, REPORTS_SCORING, LABELS, AUDIT_REGISTRY, DATASETS):
        assert any(key.startswith(f"{prefix}/") for key in bucket.scanned), prefix
    assert any(key.startswith("mlflow/") and key.endswith("/model.pkl") for key in bucket.scanned)
    assert any(key.endswith(".html") for key in bucket.scanned if key.startswith(f"{REPORTS_DRIFT}/"))
    assert not [key for key in bucket.scanned if key.startswith(PRIVATE_ZONES)]
    # ... and the stack's databases (the runs' conf, XComs, task logs' index; MLflow params and tags) and logs.
    assert "COPY public.xcom " in dumps["airflow"] and "COPY public.params " in dumps["mlflow"]
    assert "logs/airflow-scheduler.log" in local.scanned
    task_logs = [path for path in local.scanned if path.startswith("airflow/logs/dag_id=")]
    assert any("dag_id=retrain/" in path for path in task_logs) and any(
        "dag_id=batch_score/" in path for path in task_logs
    )


def _database_dumps(local_stack) -> dict[str, str]:
    """The stack's PostgreSQL databases (Airflow's metadata, MLflow's store) as ``pg_dump`` SQL text."""
    import subprocess

    from training_lib.local.environment import (
        POSTGRES_DATABASES,
        POSTGRES_USER,
        StackPaths,
        postgres_bin,
        postgres_password,
    )

    stack = local_stack.stack
    env = {"PGPASSWORD": postgres_password(StackPaths(stack)), "PATH": "/usr/bin:/bin"}
    dumps = {}
    for database in POSTGRES_DATABASES:
        argv = [postgres_bin("pg_dump"), "-h", LOOPBACK, "-p", str(stack.postgres_port), "-U", POSTGRES_USER, database]
        dumps[database] = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, timeout=120).stdout
    return dumps
