"""The embedded local stack: moto S3 server, MLflow server, Airflow; all on 127.0.0.1.

``python -m training_lib.local.stack up|down|status`` (what ``make up``/``down``/``status`` run).
What runs is defined in ``local.services``, what the processes see in ``local.environment``, how they
are started and stopped by PID in ``local.processes``; this module puts them together: ``up`` (in order,
each waited for until healthy), ``down``, ``reset``, ``status``.

Airflow runs as the four processes ``airflow standalone`` runs (api-server, scheduler,
dag-processor, triggerer), started one by one so that each has a PID file and the scheduler and
triggerer do not open their log-serving ports (which would bind all interfaces; the API server
reads task logs from the shared local folder anyway).

With ``FRAUD_CELERY_WORKERS=N`` (``make up-distributed``) the same command starts the scale-out topology
of docker-compose.yaml on this machine: PostgreSQL (Airflow metadata and MLflow backend store) and Redis
(Celery broker) from the OS packages, with data under the state folder and passwords generated into it,
Airflow with the CeleryExecutor and N ``airflow celery worker`` processes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

from training_lib.config import StackSettings, load_stack_settings
from training_lib.local.environment import (
    LOOPBACK,
    StackError,
    StackPaths,
    airflow_password,
    print_environment,
    venv_bin,
)
from training_lib.local.infrastructure import create_databases, init_postgres, write_redis_config
from training_lib.local.processes import (
    Service,
    airflow_health,
    airflow_healthy,
    http_ok,
    listening_addresses,
    port_in_use,
    recorded_pid,
    start_process,
    stop_processes,
)
from training_lib.local.services import StackServices

# --------------------------------------------------------------------------- the stack


class LocalStack:
    """Start, stop and inspect the embedded services described by ``settings``."""

    def __init__(self, settings: StackSettings, echo: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.paths = StackPaths(settings)
        self.catalog = StackServices(settings, self.paths)
        self.echo = echo

    def _wait(self, what: str, check: Callable[[], bool], timeout: float, watch: list[str]) -> float:
        start = time.monotonic()
        last_note = start
        while time.monotonic() - start < timeout:
            if check():
                return time.monotonic() - start
            for name in watch:
                if recorded_pid(self.paths.pid_file(name)) is None:
                    raise StackError(f"{name} exited during start-up; see {self.paths.log_file(name)}")
            if time.monotonic() - last_note > 10:
                self.echo(f"  … waiting for {what} ({time.monotonic() - start:.0f}s)")
                last_note = time.monotonic()
            time.sleep(0.5)
        raise StackError(f"{what} not healthy after {timeout:.0f}s; see logs in {self.paths.logs}")

    # ---- commands
    def up(self, timeout: float = 240.0) -> None:
        """Start what is not running, then wait for health. S3 first (MLflow stores artifacts there);
        MLflow's start-up overlaps Airflow's database migration."""
        started = time.monotonic()
        self.paths.create()
        groups = self.catalog.groups()
        for services in groups.values():
            for service in services:
                if (
                    recorded_pid(self.paths.pid_file(service.name)) is None
                    and service.port
                    and port_in_use(service.port)
                ):
                    raise StackError(
                        f"{service.name}: port {service.port} on {LOOPBACK} is taken by a process that is not "
                        f"ours; stop it or choose another port in the settings (see README, Configuration)"
                    )
        if self.catalog.infrastructure_groups():
            self._start_infrastructure(groups, timeout)
        if "s3" in groups:
            names = self._start_missing(groups["s3"])
            took = self._wait("S3 (moto)", self.catalog.s3_healthy, timeout, names)
            from training_lib.lake.objects import ensure_bucket

            ensure_bucket(self.settings.platform)
            self.echo(f"[s3] healthy after {took:.1f}s, bucket s3://{self.settings.platform.bucket} ready")
        if "mlflow" in groups:
            mlflow_names = self._start_missing(groups["mlflow"])
        if "airflow" in groups:
            airflow_names = self._prepare_and_start_airflow(groups["airflow"])
        if "mlflow" in groups:
            took = self._wait("MLflow", groups["mlflow"][0].health, timeout, mlflow_names)  # type: ignore[arg-type]
            self.echo(f"[mlflow] healthy after {took:.1f}s")
        if "airflow" in groups:
            took = self._wait("Airflow", lambda: airflow_healthy(self.settings.airflow_api_url), timeout, airflow_names)
            self.echo(f"[airflow] healthy after {took:.1f}s")
            if self.settings.distributed:
                took = self._wait("Celery workers", self.catalog.workers_ready, timeout, airflow_names)
                self.echo(f"[airflow] {self.settings.celery_workers} Celery worker(s) answering after {took:.1f}s")
        self.echo(f"local stack up in {time.monotonic() - started:.0f}s")
        self.echo(self.describe())

    def _start_infrastructure(self, groups: dict[str, list[Service]], timeout: float) -> None:
        """PostgreSQL (initialised on first start, databases created) and, distributed, Redis, healthy before
        anything else."""
        init_postgres(self.paths, self.echo)
        if self.settings.distributed:
            write_redis_config(self.paths, self.settings.redis_port)
        for group, what in (("postgres", "PostgreSQL"), ("redis", "Redis")):
            if group not in groups:
                continue
            names = self._start_missing(groups[group])
            took = self._wait(what, groups[group][0].health, timeout, names)  # type: ignore[arg-type]
            self.echo(f"[{group}] healthy after {took:.1f}s")
        create_databases(self.catalog.postgres_connect(), self.echo)

    def _start_missing(self, services: list[Service]) -> list[str]:
        names = []
        for service in services:
            pid = recorded_pid(self.paths.pid_file(service.name))
            if pid is None:
                pid = start_process(service, self.paths)
                self.echo(f"[{service.name}] started PID {pid} (log: {self.paths.log_file(service.name)})")
            names.append(service.name)
        return names

    def _prepare_and_start_airflow(self, services: list[Service]) -> list[str]:
        airflow_password(self.settings, self.paths)
        if not all(recorded_pid(self.paths.pid_file(s.name)) for s in services):
            self.echo("[airflow] migrating the metadata database …")
            log_path = self.paths.log_file("airflow-db-migrate")
            with open(log_path, "ab") as log:
                result = subprocess.run(
                    [venv_bin("airflow"), "db", "migrate"],
                    env=services[0].env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            if result.returncode != 0:
                raise StackError(f"airflow db migrate failed (exit {result.returncode}); see {log_path}")
        return self._start_missing(services)

    def down(self) -> None:
        """Stop by PID: the platform's services first, then the databases they were using (PostgreSQL, Redis)."""
        groups = self.catalog.groups()
        infrastructure = self.catalog.infrastructure_groups()
        for layer in ([g for g in groups if g not in infrastructure], [g for g in groups if g in infrastructure]):
            names = [service.name for group in layer for service in groups[group]]
            for name, outcome in stop_processes(list(reversed(names)), self.paths).items():
                self.echo(f"[{name}] {outcome}")

    def reset(self) -> None:
        """Delete the MLflow and Airflow state (the stack must be down; S3 on moto lives in memory).

        Keeps the secrets and the Airflow login, so the UI password stays the same."""
        if any(self.running().values()):
            raise StackError("stop the stack before resetting its state")
        password = self.paths.airflow_passwords.read_bytes() if self.paths.airflow_passwords.exists() else None
        for folder in (self.paths.mlflow, self.paths.airflow_home, self.paths.postgres, self.paths.redis):
            shutil.rmtree(folder, ignore_errors=True)
        self.paths.create()
        if password is not None:
            self.paths.airflow_passwords.write_bytes(password)
            self.paths.airflow_passwords.chmod(0o600)

    def running(self) -> dict[str, int | None]:
        return {
            service.name: recorded_pid(self.paths.pid_file(service.name))
            for services in self.catalog.groups().values()
            for service in services
        }

    def describe(self) -> str:
        settings = self.settings
        password = airflow_password(settings, self.paths) if "airflow" in settings.embedded_services else "(external)"
        lines = [
            f"  Airflow UI : {settings.airflow_api_url}   login: {settings.airflow_admin_user} / {password}",
            f"  MLflow UI  : {settings.platform.mlflow_tracking_uri}",
            f"  S3 endpoint: {settings.platform.s3_endpoint_url or 'AWS default'}   bucket: s3://{settings.platform.bucket}",
            f"  state      : {self.paths.root}",
        ]
        if settings.distributed:
            lines.append(
                f"  executor   : CeleryExecutor, {settings.celery_workers} worker(s) × "
                f"{settings.celery_worker_concurrency} slots; PostgreSQL {LOOPBACK}:{settings.postgres_port}, "
                f"Redis {LOOPBACK}:{settings.redis_port}"
            )
        elif settings.uses_postgres:
            lines.append(f"  executor   : LocalExecutor; PostgreSQL {LOOPBACK}:{settings.postgres_port}")
        return "\n".join(lines)

    def status(self) -> bool:
        """Print each service's PID and health; True when everything configured is up and healthy."""
        checks = {
            "postgres": self.catalog.postgres_healthy,
            "redis": self.catalog.redis_healthy,
            "s3": self.catalog.s3_healthy,
            "mlflow": lambda: http_ok(f"{self.settings.platform.mlflow_tracking_uri}/health"),
            "airflow": lambda: airflow_healthy(self.settings.airflow_api_url),
        }
        all_ok = True
        for group, services in self.catalog.groups().items():
            healthy = checks[group]()
            all_ok &= healthy
            for service in services:
                pid = recorded_pid(self.paths.pid_file(service.name))
                all_ok &= pid is not None
                self.echo(
                    f"{service.name:22} {'PID ' + str(pid) if pid else 'not running':14} "
                    f"{'healthy' if healthy else 'NOT healthy'}"
                )
        pids = [pid for pid in self.running().values() if pid]
        if pids:
            listening = ", ".join(f"{host}:{port}" for host, port in sorted(listening_addresses(pids)))
            self.echo(f"  listening  : {listening}")
        if "airflow" in self.settings.embedded_services:
            health = airflow_health(self.settings.airflow_api_url)
            if health:
                self.echo("  airflow components: " + ", ".join(f"{k}={v}" for k, v in health.items()))
            if self.settings.distributed:
                answering = self.catalog.celery_workers_answering()
                all_ok &= len(answering) >= self.settings.celery_workers
                self.echo(f"  celery workers answering: {', '.join(answering) or 'none'}")
        self.echo(self.describe())
        return all_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training_lib.local.stack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for health (up)")
    args = parser.parse_args(argv)
    settings = load_stack_settings()
    stack = LocalStack(settings)
    try:
        if args.command == "up":
            stack.up(timeout=args.timeout)
        elif args.command == "down":
            stack.down()
        elif args.command == "env":
            print_environment(settings, stack.paths)
        else:
            return 0 if stack.status() else 1
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
