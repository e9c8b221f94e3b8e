"""platform_health: checks that Airflow's workers reach the lake (S3) and the MLflow server."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

DEFAULT_ARGS = {"owner": "fraud-platform", "retries": 2, "retry_delay": timedelta(seconds=10)}


@dag(
    dag_id="platform_health",
    schedule=None,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["fraud", "ops"],
    doc_md="""
### Platform health check
Run it by hand after `make up`, or after pointing the platform at another S3 / MLflow, to see that
the task workers reach both with the platform's settings.

* **s3**: writes, reads back and deletes a probe object in the platform bucket through the
  `aws_default` connection (the S3 hook), so the connection and the bucket are both proven.
* **mlflow**: asks the tracking server for the platform's experiment and registered model.

Writes nothing that stays. Triggered manually only.
""",
)
def platform_health():
    @task
    def s3() -> dict:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from training_lib.config import load_settings
        from training_lib.monitoring.health import check_s3

        settings = load_settings()
        return check_s3(S3Hook(aws_conn_id="aws_default").get_conn(), settings.bucket)

    @task
    def mlflow() -> dict:
        from training_lib.config import load_settings
        from training_lib.monitoring.health import check_mlflow

        return check_mlflow(load_settings())

    [s3(), mlflow()]


platform_health()
