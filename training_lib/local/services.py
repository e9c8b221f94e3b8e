"""What the local stack runs: one :class:`Service` per process, built from the settings, with the check that
says it is healthy (S3, MLflow, Airflow's four components and, distributed, PostgreSQL, Redis and the Celery
workers)."""

from __future__ import annotations

import sys

from training_lib.config import StackSettings, process_environment
from training_lib.local.environment import (
    AIRFLOW_COMPONENTS,
    LOOPBACK,
    POSTGRES_MAX_CONNECTIONS,
    POSTGRES_USER,
    StackError,
    StackPaths,
    airflow_env,
    as_postgres_user,
    platform_env,
    port_of,
    postgres_bin,
    postgres_password,
    postgres_url,
    redis_bin,
    redis_password,
    redis_url,
    venv_bin,
)
from training_lib.local.processes import Service, http_ok


class StackServices:
    """The services ``settings`` describe, grouped in start order."""

    def __init__(self, settings: StackSettings, paths: StackPaths) -> None:
        self.settings = settings
        self.paths = paths

    def s3_service(self) -> Service:
        endpoint = self.settings.platform.s3_endpoint_url
        if not endpoint:
            raise StackError("FRAUD_S3_ENDPOINT_URL is empty (real AWS): drop 's3' from FRAUD_EMBEDDED_SERVICES")
        port = port_of(endpoint)
        argv = [venv_bin("moto_server"), "-H", LOOPBACK, "-p", str(port)]
        return Service("s3", argv, platform_env(self.settings, self.paths), self.s3_healthy, port)

    def mlflow_service(self) -> Service:
        uri = self.settings.platform.mlflow_tracking_uri
        if not uri.startswith("http"):
            raise StackError(f"MLFLOW_TRACKING_URI={uri!r} is not a server URL the stack can run")
        port = port_of(uri)
        argv = [
            venv_bin("mlflow"), "server",
            "--host", LOOPBACK,
            "--port", str(port),
            "--artifacts-destination", f"s3://{self.settings.platform.bucket}/mlflow",
            "--workers", "1",
        ]  # fmt: skip
        env = platform_env(self.settings, self.paths)
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        # The backend store by environment (mlflow server reads it), so a PostgreSQL password is never on argv.
        env["MLFLOW_BACKEND_STORE_URI"] = (
            postgres_url(self.settings, self.paths, "mlflow")
            if self.settings.uses_postgres
            else f"sqlite:///{self.paths.mlflow / 'mlflow.db'}"
        )
        return Service("mlflow", argv, env, lambda: http_ok(f"{uri}/health"), port)

    def postgres_service(self) -> Service:
        port = self.settings.postgres_port
        argv = as_postgres_user(
            [
                postgres_bin("postgres"),
                "-D", str(self.paths.postgres),
                "-h", LOOPBACK,
                "-p", str(port),
                "-k", str(self.paths.postgres),  # the Unix socket stays in the data directory, not /run
                "-c", f"max_connections={POSTGRES_MAX_CONNECTIONS}",
            ]
        )  # fmt: skip
        env = {"PATH": process_environment().get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        return Service("postgres", argv, env, self.postgres_healthy, port)

    def redis_service(self) -> Service:
        return Service(
            "redis", [redis_bin(), str(self.paths.redis / "redis.conf")], platform_env(self.settings, self.paths),
            self.redis_healthy, self.settings.redis_port,
        )  # fmt: skip

    def celery_worker_services(self) -> list[Service]:
        env = airflow_env(self.settings, self.paths)
        services = []
        for number in range(1, self.settings.celery_workers + 1):
            argv = [
                venv_bin("airflow"), "celery", "worker",
                "--concurrency", str(self.settings.celery_worker_concurrency),
                "--celery-hostname", f"worker{number}@%h",
                # the worker's log server would bind every interface; the API server reads the shared folder
                "--skip-serve-logs",
                "--pid", str(self.paths.airflow_home / f"celery-worker{number}.pid"),  # Celery's own, one per worker
            ]  # fmt: skip
            argv = [sys.executable, "-m", "training_lib.local.supervise", "--", *argv]
            services.append(Service(f"airflow-worker{number}", argv, env))
        return services

    def airflow_services(self) -> list[Service]:
        env = airflow_env(self.settings, self.paths)
        services = []
        for component in AIRFLOW_COMPONENTS:
            argv = [venv_bin("airflow"), component]
            if component in {"scheduler", "triggerer"}:
                argv.append("--skip-serve-logs")
            # restarted when it dies on its own (see training_lib.local.supervise); the recorded PID is the supervisor's
            argv = [sys.executable, "-m", "training_lib.local.supervise", "--", *argv]
            port = port_of(self.settings.airflow_api_url) if component == "api-server" else None
            services.append(Service(f"airflow-{component}", argv, env, None, port))
        if self.settings.distributed:
            services.extend(self.celery_worker_services())
        return services

    def groups(self) -> dict[str, list[Service]]:
        """Service groups in start order; PostgreSQL when the stack uses it, Redis only in the distributed topology."""
        builders = {
            "postgres": lambda: [self.postgres_service()],
            "redis": lambda: [self.redis_service()],
            "s3": lambda: [self.s3_service()],
            "mlflow": lambda: [self.mlflow_service()],
            "airflow": self.airflow_services,
        }
        wanted = [*self.infrastructure_groups(), *self.settings.embedded_services]
        return {group: builders[group]() for group in builders if group in wanted}

    def infrastructure_groups(self) -> tuple[str, ...]:
        if self.settings.distributed:
            return ("postgres", "redis")
        return ("postgres",) if self.settings.uses_postgres else ()

    # ---- health
    def s3_healthy(self) -> bool:
        return http_ok(f"{self.settings.platform.s3_endpoint_url}/moto-api/data.json")

    def postgres_connect(self, database: str = "postgres"):
        import psycopg2

        return psycopg2.connect(
            host=LOOPBACK, port=self.settings.postgres_port, user=POSTGRES_USER,
            password=postgres_password(self.paths), dbname=database, connect_timeout=2,
        )  # fmt: skip

    def postgres_healthy(self) -> bool:
        import psycopg2

        try:
            self.postgres_connect().close()
        except psycopg2.OperationalError:
            return False
        return True

    def redis_healthy(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(LOOPBACK, self.settings.redis_port, password=redis_password(self.paths),
                                    socket_timeout=2).ping())  # fmt: skip
        except redis.RedisError:
            return False

    def celery_workers_answering(self) -> list[str]:
        """Hostnames of the Celery workers that answer a ping over the broker."""
        from celery import Celery

        app = Celery(broker=redis_url(self.settings, self.paths))
        try:
            replies = app.control.ping(timeout=1.0) or []
        except Exception:  # broker not reachable yet: nobody answers
            return []
        finally:
            app.close()
        return sorted(name for reply in replies for name in reply)

    def workers_ready(self) -> bool:
        return len(self.celery_workers_answering()) >= self.settings.celery_workers
