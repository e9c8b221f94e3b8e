"""labels_daily: confirmed labels -> validate (GX) -> label store -> new_labels signal."""

from __future__ import annotations

from _platform import (
    DAY_PARAM,
    DEFAULT_ARGS,
    NEW_LABELS,
    NIGHTLY,
    START_DATE,
    landing_sensor,
    run_day,
    validated_sensor,
)
from airflow.sdk import dag, task

from training_lib.storage import LANDING_LABELS

DOC = """
### Daily labels: confirmed fraud / legitimate outcomes

Labels arrive late: a chargeback confirms (or clears) a transaction days after it happened
(`FRAUD_LABEL_DELAY_DAYS`). **Triggered by** its daily schedule, a backfill, or by hand with the
**Day to process** parameter.

1. **wait_for_labels** — waits for files under `landing/labels/dt=D/` (`trans_num, is_fraud, confirmed_at`);
   **wait_for_transactions** — and for `transactions_daily` to have published day D, so every label
   whose transaction arrived by day D finds it.
2. **ingest** — runs `include/gx/labels_suite.json`: the transaction must have been ingested, the
   label must be 0/1 and confirmed on day D, and a trans_num must not carry conflicting labels (in the
   file or against the label store). Publishes `labels/dt=D/` and `quarantine/labels/dt=D/` atomically.
3. **count_new_labels** — labels stored since the champion's training cut-off (all of them before the
   first model).
4. **enough_new_labels → signal_new_labels** — at `FRAUD_MIN_NEW_LABELS` or more, emits the
   **new_labels** Asset (extra: count, since), which schedules `retrain`.
"""


@dag(
    dag_id="labels_daily",
    schedule=NIGHTLY,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["fraud", "ingestion", "labels"],
    params={"day": DAY_PARAM},
    doc_md=DOC,
)
def labels_daily():
    @task
    def ingest() -> dict:
        from training_lib.config import load_settings
        from training_lib.ingest import ingest_labels_day

        return ingest_labels_day(load_settings(), run_day())

    @task
    def count_new_labels(ingested: dict) -> dict:
        from training_lib.config import load_settings
        from training_lib.ingest import new_labels_status

        return new_labels_status(load_settings(), run_day())

    @task.short_circuit
    def enough_new_labels(status: dict) -> bool:
        return bool(status["enough"])

    @task(outlets=[NEW_LABELS])
    def signal_new_labels(status: dict, *, outlet_events=None) -> dict:
        extra = {"dt": status["day"], "count": status["count"], "since": status["since"]}
        outlet_events[NEW_LABELS].extra = extra
        return extra

    ingested = ingest()
    [landing_sensor(LANDING_LABELS, "wait_for_labels"), validated_sensor("wait_for_transactions")] >> ingested
    status = count_new_labels(ingested)
    enough_new_labels(status) >> signal_new_labels(status)


labels_daily()
