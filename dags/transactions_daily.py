"""transactions_daily: land -> validate (GX) -> publish -> drift report (Evidently) -> drift signal."""

from __future__ import annotations

from _platform import (
    DAY_PARAM,
    DEFAULT_ARGS,
    DRIFT_DETECTED,
    NIGHTLY,
    START_DATE,
    VALIDATED,
    landing_sensor,
    run_day,
)
from airflow.sdk import dag, task, task_group
from airflow.sdk.exceptions import AirflowSkipException

from training_lib.lake.layout import LANDING_TRANSACTIONS

DOC = """
### Daily transactions: ingestion, quality gate, drift

**Triggered by** its daily schedule (the run for interval *D* processes day *D* after midnight UTC),
a backfill over a range of days, or by hand with the **Day to process** parameter.

1. **wait_for_landing** — waits (reschedule mode) for files under
   `landing/transactions/dt=D/` (CSV in the Kaggle layout, or Parquet).
2. **quality.validate** — runs the Great Expectations suite `include/gx/transactions_suite.json` over
   every row; writes `reports/quality/dt=D/` (summary + Data Docs, counts per file). Above the
   quarantine-share limit (`FRAUD_QUARANTINE_SHARE_LIMIT`) the task fails at once, without retries, and
   the day is held back: its quarantined rows are published for inspection, no validated row is, no
   landing file is deleted; later days wait. Fix or replace the landing files, then clear the task.
3. **quality.publish** — commits `validated/transactions/dt=D/` and `quarantine/transactions/dt=D/`
   (rows that failed, with `_reason`) atomically, and emits the **validated_transactions** Asset.
4. **drift.report** — Evidently data-drift report of the day against the champion's reference
   sample (before the first model: the first validated days) into `reports/drift/dt=D/`.
5. **drift.signal_drift** — when the share of drifted columns reaches `FRAUD_DRIFT_THRESHOLD`, emits
   the **drift_detected** Asset (extra: dt, share, columns), which schedules `retrain`; otherwise it
   is skipped (no event).

Up to three days run at once (a backfill catches up faster), but day *D+1* is validated only after day *D* is
published, so the duplicate check against earlier days is exact. Re-running a day replaces its
partitions; nothing is duplicated.
"""


@dag(
    dag_id="transactions_daily",
    schedule=NIGHTLY,
    start_date=START_DATE,
    catchup=False,
    # day D+1 validates while day D's drift report runs (publishing stays in order), and a run waiting in its
    # sensor for files that have not landed yet never holds back a backfill or a manual day
    max_active_runs=3,
    default_args=DEFAULT_ARGS,
    tags=["fraud", "ingestion", "quality", "drift"],
    params={"day": DAY_PARAM},
    doc_md=DOC,
)
def transactions_daily():
    @task_group(group_id="quality")
    def quality(landing: dict) -> dict:
        # wait_for_downstream: day D+1 is validated only once day D is published, so the check against
        # earlier days' trans_num sees day D (a held-back day holds the next ones back, nothing slips in).
        @task(wait_for_downstream=True)
        def validate(landing: dict) -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            from training_lib.config import load_settings
            from training_lib.ingestion.ingest import validate_transactions_day
            from training_lib.ingestion.quality import QualityGateError

            try:
                return validate_transactions_day(load_settings(), run_day())
            except QualityGateError as exc:  # the same files would fail again: no retries
                raise AirflowFailException(str(exc)) from exc

        @task(outlets=[VALIDATED])
        def publish(validation: dict, *, outlet_events=None) -> dict:
            from training_lib.config import load_settings
            from training_lib.ingestion.ingest import publish_transactions_day

            published = publish_transactions_day(load_settings(), validation)
            outlet_events[VALIDATED].extra = published
            return published

        return publish(validate(landing))

    @task_group(group_id="drift")
    def drift(published: dict) -> None:
        @task
        def report(published: dict) -> dict:
            from training_lib.config import load_settings
            from training_lib.monitoring.daily_drift import drift_day

            return drift_day(load_settings(), run_day())

        @task(outlets=[DRIFT_DETECTED])
        def signal_drift(summary: dict, *, outlet_events=None) -> dict:
            if not summary.get("drift_detected"):
                raise AirflowSkipException(f"no drift on {summary['day']}: share {summary['share']:.2f}")
            extra = {
                "dt": summary["day"],
                "share": summary["share"],
                "threshold": summary["threshold"],
                "columns": summary["drifted_columns"],
            }
            outlet_events[DRIFT_DETECTED].extra = extra
            return extra

        signal_drift(report(published))

    published = quality(landing_sensor(LANDING_TRANSACTIONS, "wait_for_landing"))
    drift(published)


transactions_daily()
