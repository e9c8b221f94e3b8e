"""rollback_model: move the champion alias back to an earlier version, audited."""

from __future__ import annotations

from _platform import DEFAULT_ARGS, MODEL_PROMOTED, START_DATE
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

DOC = """
### Roll the champion back

**Triggered by hand** (Trigger → parameters). Moves the registry alias `champion` of the model to
**version** (empty: the previous champion according to the audit log), tags both versions, appends a
`rollback` entry with the **reason** and who triggered it to the audit log (`audit/registry/`), and
emits the **model_promoted** Asset. Everything that scores resolves `models:/<name>@champion` when it
runs, so the next scoring uses the rolled-back version.

Moving the alias in the MLflow UI (model version → Aliases → edit) works just as well; the platform
then shows that move as made outside the platform.
"""


@dag(
    dag_id="rollback_model",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "retries": 1},
    tags=["fraud", "mlflow", "ops"],
    params={
        "version": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Version",
            description="Model version to make champion. Empty: the previous champion from the audit log.",
        ),
        "reason": Param(
            "",
            type="string",
            minLength=3,
            title="Reason",
            description="Why the champion is rolled back (kept in the audit log).",
        ),
    },
    doc_md=DOC,
)
def rollback_model():
    @task(outlets=[MODEL_PROMOTED])
    def rollback(*, outlet_events=None) -> dict:
        from training_lib.config import load_settings
        from training_lib.modeling.registry import Registry

        context = get_current_context()
        params = context["params"]
        user = getattr(context["dag_run"], "triggering_user_name", None) or "unknown"
        entry = Registry(load_settings()).rollback(
            params.get("version"),
            reason=params["reason"],
            actor=f"airflow:rollback_model/{context['run_id']} by {user}",
        )
        if entry.get("replayed"):
            raise AirflowSkipException(f"this run rolled back to version {entry.get('to_version')} already")
        outlet_events[MODEL_PROMOTED].extra = {
            "version": entry.get("to_version"),
            "previous": entry.get("from_version"),
            "reason": entry.get("reason"),
        }
        return entry

    rollback()


rollback_model()
