"""retrain: dataset -> train (MLflow) -> champion vs challenger -> promote or reject -> report."""

from __future__ import annotations

from _platform import DEFAULT_ARGS, DRIFT_DETECTED, MODEL_PROMOTED, NEW_LABELS, START_DATE
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

DOC = """
### Retrain: challenger vs champion with a real gate

**Triggered by** the Assets `drift_detected` **or** `new_labels` (emitted by `transactions_daily`,
`labels_daily` and, when the champion's realized quality degrades, `batch_score`), or by hand (Trigger →
parameters below). One run at a time. The cooldown counts in *data* time: a run whose data day (the newest
`dt` of its triggering events; for a manual run the newest validated day) is less than
`FRAUD_RETRAIN_COOLDOWN_DAYS` after the last retrain's is skipped, unless **force** is set; a run triggered
by degraded realized quality (reason `performance`) uses the shorter `FRAUD_PERFORMANCE_COOLDOWN_DAYS`, so
a drift retrain that came too early to learn a change never holds back the one that can. A drift that
persists day after day therefore retrains once per cooldown, and a backfill replaying a month in minutes
retrains as often as the month did live.

1. **check_cooldown** — skips the run inside the cooldown.
2. **build_dataset** — the newest matured labelled days up to the run's data day (`window_days`), shared
   features, split by time into train / validation / test days; snapshot in `training/datasets/<id>/`
   (card tokens, no PAN). As of its data day, a run sees the same data whenever it runs.
3. **train** — a small XGBoost search (`include/training/xgboost_search.json`, nested runs `search-*`)
   fitted on the train days and early-stopped on the validation days; the best settings are fitted again
   on train + validation (the **evaluation fit**, nested run `evaluation-fit`: the gate's evidence, scored
   on the test days it never saw) beside a logistic-regression baseline; then **refit on the whole
   window** with the same settings and tree count: that refit is the new registered version. Its threshold
   is the validation days' alert rate, as a score quantile (tag `threshold`). `fits.json` and the tags
   `fit.*.fitted_on` / `evaluated_on` say which rows each fit saw and where it was measured.
4. **evaluate** — the evaluation fit and the current champion scored on the same test days: those after
   the last day the champion was fitted on (no such day: no evidence, the champion stays).
5. **decide** (`registry.gate_and_record`) — the new version gets `challenger`; it becomes `champion` only
   above `FRAUD_PROMOTION_FLOOR` and at least `FRAUD_PROMOTION_MARGIN` PR-AUC better than the champion.
   The decision is tagged on the versions and appended to the audit log (`audit/registry/`). A failure
   before this step leaves every alias as it was.
6. **signal_promotion** — a promotion emits the **model_promoted** Asset.
7. **report** — `reports/retrain/dt=<last training day>/<dataset>.json`.
"""


@dag(
    dag_id="retrain",
    schedule=(DRIFT_DETECTED | NEW_LABELS),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retries": 1},
    tags=["fraud", "training", "mlflow"],
    params={
        "force": Param(
            False,
            type="boolean",
            title="Force",
            description="Retrain even inside the cooldown after the last retrain.",
        ),
        "window_days": Param(
            None,
            type=["null", "integer"],
            minimum=3,
            title="Training window (days)",
            description="Newest matured labelled days to use. Empty: FRAUD_TRAINING_WINDOW_DAYS.",
        ),
    },
    doc_md=DOC,
)
def retrain():
    @task.short_circuit
    def check_cooldown() -> bool:
        from training_lib.config import load_settings
        from training_lib.modeling.cooldown import cooldown_days, cooldown_remaining, retrain_data_day
        from training_lib.modeling.registry import Registry
        from training_lib.monitoring.health import require_mlflow

        context = get_current_context()
        settings = load_settings()
        require_mlflow(settings)  # fail at the start, naming MLFLOW_TRACKING_URI, not minutes into training
        if context["params"].get("force"):
            print("force=true: the cooldown does not apply")
            return True
        data_day = retrain_data_day(settings, _triggering_days(context))
        last = Registry(settings).last_retrain_data_day(excluding_actor=_actor(context))
        setting, days = cooldown_days(settings, _trigger_reasons(context))
        wait = cooldown_remaining(last, data_day, days)
        if wait:
            print(
                f"data day {data_day}: the last retrain answered {last}, within {setting}={days}: skipping"
                f" ({wait} more day(s) of data needed)"
            )
        return not wait

    @task
    def build_dataset() -> dict:
        from dataclasses import asdict

        from training_lib.config import load_settings
        from training_lib.modeling.cooldown import retrain_data_day
        from training_lib.modeling.dataset import build_dataset as snapshot_dataset

        context = get_current_context()
        settings = load_settings()
        data_day = retrain_data_day(settings, _triggering_days(context))
        window = context["params"].get("window_days")
        info, _parts = snapshot_dataset(settings, window, end=data_day, run_key=context["run_id"])
        # the day the dataset was built as of: the decision records it (for the next cooldown check)
        return {**asdict(info), "data_day": data_day.isoformat() if data_day else None}

    @task
    def train(dataset: dict) -> dict:
        from training_lib.config import load_settings
        from training_lib.modeling.dataset import load_dataset
        from training_lib.modeling.train import train_and_log, trained_for_dataset
        from training_lib.monitoring.health import require_mlflow

        context = get_current_context()
        settings = load_settings()
        require_mlflow(settings)
        earlier = trained_for_dataset(settings, dataset["dataset_id"])  # a re-run of this run
        if earlier:
            return earlier
        info, parts = load_dataset(settings, dataset["dataset_id"])
        tags = {"airflow_dag_run": context["run_id"], "trigger": _trigger(context)}
        return train_and_log(settings, info, parts, tags=tags)

    @task
    def evaluate(trained: dict) -> dict:
        from training_lib.config import load_settings
        from training_lib.modeling.evaluate import evaluate_candidates

        return evaluate_candidates(load_settings(), trained["version"], trained["dataset_id"])

    @task
    def decide(evaluation: dict, dataset: dict) -> dict:
        from training_lib.config import load_settings
        from training_lib.modeling.registry import gate_and_record

        context = get_current_context()
        return gate_and_record(
            load_settings(), evaluation, actor=_actor(context), trigger=_trigger(context), data_day=dataset["data_day"]
        )

    @task(outlets=[MODEL_PROMOTED])
    def signal_promotion(entry: dict, *, outlet_events=None) -> dict:
        if entry["kind"] != "promotion":
            raise AirflowSkipException(f"version {entry['candidate_version']} was not promoted")
        if entry.get("replayed"):
            raise AirflowSkipException(f"version {entry['candidate_version']} was promoted by an earlier try")
        extra = {
            "version": entry["candidate_version"],
            "previous": entry.get("previous_champion_version"),
            "reason": entry["reason"],
        }
        outlet_events[MODEL_PROMOTED].extra = extra
        return extra

    @task
    def report(dataset: dict, trained: dict, entry: dict) -> str:
        import json
        from datetime import date

        from training_lib.config import load_settings
        from training_lib.lake.storage import Lake

        lake = Lake(load_settings())
        body = {"dataset": dataset, "training": trained, "decision": entry}
        day = date.fromisoformat(dataset["days"][-1])
        return lake.put_report("reports/retrain", day, f"{dataset['dataset_id']}.json", json.dumps(body, indent=2))

    dataset = build_dataset()
    check_cooldown() >> dataset
    trained = train(dataset)
    entry = decide(evaluate(trained), dataset)
    signal_promotion(entry)
    report(dataset, trained, entry)


def _actor(context) -> str:
    """Who decides, in the audit log: this run (a re-run of it finds its own decision and repeats nothing)."""
    return f"airflow:retrain/{context['run_id']}"


def _triggering_days(context) -> list[str]:
    """The ``dt`` of every Asset event that triggered this run ([] for a manual run)."""
    events = context.get("triggering_asset_events") or {}
    return [
        str(event.extra["dt"])
        for asset_events in events.values()
        for event in asset_events
        if (event.extra or {}).get("dt")
    ]


def _trigger_reasons(context) -> set[str]:
    """The ``reason`` of every triggering Asset event that has one (e.g. ``performance``)."""
    events = context.get("triggering_asset_events") or {}
    return {
        str(event.extra["reason"])
        for asset_events in events.values()
        for event in asset_events
        if (event.extra or {}).get("reason")
    }


def _trigger(context) -> str:
    """What started this run: the triggering Asset events (name, day, reason) or 'manual'."""
    events = context.get("triggering_asset_events") or {}
    described = [
        f"{asset.name}:{(event.extra or {}).get('dt', '')}"
        + (f" ({event.extra['reason']})" if (event.extra or {}).get("reason") else "")
        for asset, asset_events in events.items()
        for event in asset_events
    ]
    return ", ".join(described) if described else context["dag_run"].run_type


retrain()
