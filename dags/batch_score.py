"""batch_score: nightly scoring of the previous day with the champion; alert-rate check; realized quality."""

from __future__ import annotations

from _platform import DAY_PARAM, DEFAULT_ARGS, DRIFT_DETECTED, NIGHTLY_SCORING, START_DATE, run_day, validated_sensor
from airflow.sdk import dag, get_current_context, task, task_group
from airflow.sdk.exceptions import AirflowSkipException

# The mapped task's label in the UI, rendered from the unmapped task's arguments: "shard 1/3".
SHARD_LABEL = "shard {{ task.op_kwargs['spec']['shard'] + 1 }}/{{ task.op_kwargs['spec']['shards'] }}"

DOC = """
### Nightly batch scoring

**Triggered by** its schedule (02:00 UTC, for the day that ended), a backfill over any range of days,
or by hand with the **Day to process** parameter.

1. **wait_for_validated** — waits (reschedule mode) until `transactions_daily` has published
   `validated/transactions/dt=D/` for that day, instead of racing ingestion.
2. **scoring** — the day split by card into shards, each scored by its own worker task, published
   together as one partition:
   - **plan** resolves `models:/<name>@champion` once at run time (a move of the alias in the MLflow UI
     applies to the next run) and splits the day into ceil(rows / `FRAUD_SCORING_SHARD_ROWS`) shards
     (at most `FRAUD_SCORING_MAX_SHARDS`): one spec per shard;
   - **score_shard** (mapped, one task instance per shard, "shard i/n") loads exactly the planned model
     version, scores its cards in buckets of bounded memory (`FRAUD_SCORING_BUCKET_ROWS`) and stages its
     part files, invisible to readers; more workers, more shards scored at once;
   - **commit** checks that every shard is there once and that the rows add up, then publishes
     `predictions/dt=D/` atomically (one manifest + `_SUCCESS`): trans_num, card token (no card number),
     amount, category, score, decision (the version's stored threshold), model name and version; run id
     and time in the manifest. Re-running a day with the same champion leaves the partition unchanged.
     Summary: `reports/scoring/dt=D/summary.json`.
3. **alert_rate_check** — notifies (log, or `FRAUD_NOTIFY_WEBHOOK_URL`) when the day alerts more than
   `FRAUD_ALERT_RATE_FACTOR` × `FRAUD_ALERT_BUDGET`.
4. **monitoring** — **realized_quality**: for scored days whose labels have matured, precision, recall,
   PR-AUC into `reports/performance/dt=…/`; **signal_retrain**: when the champion's mean PR-AUC over its newest
   `FRAUD_PERFORMANCE_WINDOW_DAYS` matured days falls below `FRAUD_PROMOTION_FLOOR` or more than
   `FRAUD_PERFORMANCE_TOLERANCE` below its evidence (its test PR-AUC), it notifies and emits **drift_detected**
   (reason `performance`), a retrain trigger that the drift cooldown does not hold back. Days scored by an
   earlier champion never count against the current one.
"""


@dag(
    dag_id="batch_score",
    schedule=NIGHTLY_SCORING,
    start_date=START_DATE,
    catchup=False,
    # days score independently: a backfill or a manual day never waits behind the nightly run's sensor
    max_active_runs=3,
    default_args=DEFAULT_ARGS,
    tags=["fraud", "scoring", "monitoring"],
    params={"day": DAY_PARAM},
    doc_md=DOC,
)
def batch_score():
    validated = validated_sensor("wait_for_validated")

    @task_group(group_id="scoring")
    def scoring() -> dict:
        @task
        def plan() -> list[dict]:
            from training_lib.config import load_settings
            from training_lib.scoring.plan import plan_scoring

            return plan_scoring(load_settings(), run_day(), run_id=get_current_context()["run_id"])

        @task(map_index_template=SHARD_LABEL)
        def score_shard(spec: dict) -> dict:
            from training_lib.config import load_settings
            from training_lib.scoring.shard import score_shard

            return score_shard(load_settings(), spec)

        @task
        def commit(specs: list[dict], results: list[dict]) -> dict:
            from training_lib.config import load_settings
            from training_lib.scoring.commit import commit_scoring

            return commit_scoring(load_settings(), specs, list(results))

        specs = plan()
        validated >> specs
        return commit(specs, score_shard.expand(spec=specs))

    @task
    def alert_rate_check(summary: dict) -> bool:
        from training_lib.config import load_settings
        from training_lib.notify import alert_rate_check, notifier_from_settings

        settings = load_settings()
        notification = alert_rate_check(summary, settings)
        if notification is not None:
            notifier_from_settings(settings).send(notification)
        return notification is not None

    @task_group(group_id="monitoring")
    def monitoring(summary: dict) -> None:
        @task
        def realized_quality(summary: dict) -> list[dict]:
            from training_lib.config import load_settings
            from training_lib.monitoring.performance import below_floor_check, matured_scored_days, realized_quality
            from training_lib.notify import notifier_from_settings

            settings = load_settings()
            results = [realized_quality(settings, day) for day in matured_scored_days(settings, run_day())]
            computed = [r for r in results if r and r.get("status") == "computed"]
            for result in computed:
                notification = below_floor_check(result)
                if notification is not None:
                    notifier_from_settings(settings).send(notification)
            return computed

        @task(outlets=[DRIFT_DETECTED])
        def signal_retrain(results: list[dict], *, outlet_events=None) -> dict:
            from training_lib.config import load_settings
            from training_lib.monitoring.performance import performance_trigger
            from training_lib.notify import notifier_from_settings

            settings = load_settings()
            extra, notification, why = performance_trigger(settings, run_day(), [r["day"] for r in results])
            print(why)
            if extra is None:
                raise AirflowSkipException(why)
            notifier_from_settings(settings).send(notification)
            outlet_events[DRIFT_DETECTED].extra = extra
            return extra

        signal_retrain(realized_quality(summary))

    summary = scoring()
    alert_rate_check(summary)
    monitoring(summary)


batch_score()
