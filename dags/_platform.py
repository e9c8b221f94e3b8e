"""Shared pieces of the platform's DAG files: Assets, defaults, the day a run processes.

Light imports only (Airflow re-parses DAG files constantly): no pandas, GX, Evidently or MLflow here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from airflow.sdk import Asset, CronDataIntervalTimetable, Param, PokeReturnValue, get_current_context, task

from training_lib.config import load_settings
from training_lib.lake.layout import AUDIT_REGISTRY, LABELS, REPORTS_DRIFT, VALIDATED_TRANSACTIONS

_SETTINGS = load_settings()
_BUCKET = _SETTINGS.bucket
_POKE_S = _SETTINGS.sensor_poke_s

# Asset names are URIs in the platform bucket's namespace (see README, Architecture).
VALIDATED = Asset(name="validated_transactions", uri=f"s3://{_BUCKET}/{VALIDATED_TRANSACTIONS}")
DRIFT_DETECTED = Asset(name="drift_detected", uri=f"s3://{_BUCKET}/{REPORTS_DRIFT}")
NEW_LABELS = Asset(name="new_labels", uri=f"s3://{_BUCKET}/{LABELS}")
MODEL_PROMOTED = Asset(name="model_promoted", uri=f"s3://{_BUCKET}/{AUDIT_REGISTRY}")

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)
# Data intervals, explicitly: the run with logical date D covers [D, D+1) and starts after it ended, so a
# nightly run and a backfill of D both process day D. (A plain cron string gives Airflow 3's
# CronTriggerTimetable, whose runs have no interval: the 00:00 run would process the day just starting.)
NIGHTLY = CronDataIntervalTimetable("0 0 * * *", timezone="UTC")
NIGHTLY_SCORING = CronDataIntervalTimetable("0 2 * * *", timezone="UTC")  # D 02:00 -> D+1 02:00: scores day D
DEFAULT_ARGS = {
    "owner": "fraud-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
}
DAY_PARAM = Param(
    None,
    type=["null", "string"],
    format="date",
    title="Day to process",
    description="YYYY-MM-DD. Empty: the run's data interval (a scheduled run processes the day that just ended).",
)


def run_day() -> date:
    """The day this run processes: the ``day`` param if given, else the data interval's start."""
    context = get_current_context()
    requested = (context.get("params") or {}).get("day")
    if requested:
        return date.fromisoformat(str(requested))
    start = context.get("data_interval_start")
    if start is not None:
        return start.date()
    run_after = context["dag_run"].run_after
    return (run_after - timedelta(days=1)).date()


def validated_sensor(task_id: str):
    """A sensor task (reschedule mode) that waits until the day's validated transactions are published."""

    @task.sensor(task_id=task_id, poke_interval=_POKE_S, timeout=12 * 3600, mode="reschedule")
    def wait() -> PokeReturnValue:
        from training_lib.config import load_settings
        from training_lib.lake.layout import VALIDATED_TRANSACTIONS
        from training_lib.lake.storage import Lake

        day = run_day()
        ready = Lake(load_settings()).partition_exists(VALIDATED_TRANSACTIONS, day)
        return PokeReturnValue(is_done=ready, xcom_value=day.isoformat())

    return wait()


def landing_sensor(dataset: str, task_id: str, *, after_transactions: bool = False):
    """A sensor task (reschedule mode) that waits until files landed under ``<dataset>/dt=D/`` and, with
    ``after_transactions``, until the day's validated transactions are published too."""

    @task.sensor(task_id=task_id, poke_interval=_POKE_S, timeout=12 * 3600, mode="reschedule")
    def wait() -> PokeReturnValue:
        from training_lib.config import load_settings
        from training_lib.lake.layout import VALIDATED_TRANSACTIONS
        from training_lib.lake.storage import Lake

        day = run_day()
        lake = Lake(load_settings())
        files = lake.landing_files(dataset, day)
        ready = bool(files) and (not after_transactions or lake.partition_exists(VALIDATED_TRANSACTIONS, day))
        return PokeReturnValue(is_done=ready, xcom_value={"day": day.isoformat(), "files": files})

    return wait()
