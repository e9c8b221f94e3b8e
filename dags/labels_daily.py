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
)
from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowSkipException

from training_lib.lake.layout import LANDING_LABELS

DOC = """
### Daily labels: confirmed fraud / legitimate outcomes

Labels arrive late: a chargeback confirms (or clears) a transaction days after it happened
(`FRAUD_LABEL_DELAY_DAYS`). **Triggered by** its daily schedule, a backfill, or by hand with the
**Day to process** parameter.

1. **wait_for_labels** — waits for files under `landing/labels/dt=D/` (`trans_num, is_fraud, confirmed_at`)
   and for `transactions_daily` to have published day D, so every label whose transaction arrived by
   day D finds it.
2. **ingest** — runs `include/gx/labels_suite.json`: the transaction must have been ingested, the
   label must be 0/1 and confirmed on day D, and a trans_num must not carry conflicting labels (in the
   file or against the label store). Publishes `labels/dt=D/` and `quarantine/labels/dt=D/` atomically.
3. **signal_new_labels** — counts the labels stored since the champion's training cut-off (all of them
   before the first model, never days after D); at `FRAUD_MIN_NEW_LABELS` or more it emits the
   **new_labels** Asset (extra: dt, count, since), which schedules `retrain`; otherwise it is skipped.

Up to three days run at once, but day *D+1* is ingested only after day *D* is stored.
"""


@dag(
    dag_id="labels_daily",
    schedule=NIGHTLY,
    start_date=START_DATE,
    catchup=False,
    # day D+1's sensor and ingestion overlap day D's count (ingestion stays in order), and a run waiting in its
    # sensor for files that have not landed yet never holds back a backfill or a manual day
    max_active_runs=3,
    default_args=DEFAULT_ARGS,
    tags=["fraud", "ingestion", "labels"],
    params={"day": DAY_PARAM},
    doc_md=DOC,
)
def labels_daily():
    # depends_on_past: day D+1 is ingested only once day D is stored, so conflicts are checked against
    # every earlier day (the count of day D reads days <= D only, so it may overlap day D+1's ingestion).
    @task(depends_on_past=True)
    def ingest() -> dict:
        from training_lib.config import load_settings
        from training_lib.ingestion.ingest import ingest_labels_day

        return ingest_labels_day(load_settings(), run_day())

    @task(outlets=[NEW_LABELS])
    def signal_new_labels(ingested: dict, *, outlet_events=None) -> dict:
        from training_lib.config import load_settings
        from training_lib.monitoring.new_labels import new_labels_status

        status = new_labels_status(load_settings(), run_day())
        if not status["enough"]:
            raise AirflowSkipException(
                f"{status['count']} labels since {status['since'] or 'the start'} (< {status['min_new_labels']})"
            )
        extra = {"dt": status["day"], "count": status["count"], "since": status["since"]}
        outlet_events[NEW_LABELS].extra = extra
        return extra

    ingested = ingest()
    landing_sensor(LANDING_LABELS, "wait_for_labels", after_transactions=True) >> ingested
    signal_new_labels(ingested)


labels_daily()
