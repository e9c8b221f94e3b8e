"""Where the local stack keeps its state and what its processes see.

Paths under ``<state_dir>``, the secrets generated once into it (Airflow's JWT and API keys, the card-token
key, the PostgreSQL and Redis passwords), the environment every process gets (the platform settings, S3 and
MLflow endpoints, Airflow's configuration for LocalExecutor on SQLite or CeleryExecutor on PostgreSQL), the
connection URLs and the server binaries. Pure: nothing here starts a process.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from training_lib.config import Settings, StackSettings, process_environment

LOOPBACK = "127.0.0.1"
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
POSTGRES_USER = "fraud"  # owner of the distributed stack's databases
POSTGRES_OS_USER = "postgres"  # PostgreSQL refuses to run as root: started by root, it runs as this OS user
POSTGRES_DATABASES = ("airflow", "mlflow")
POSTGRES_MAX_CONNECTIONS = 200
OS_PACKAGES_HINT = "run `make os-packages` (installs the Debian packages postgresql and redis-server)"


class StackError(RuntimeError):
    """The local stack could not be started or stopped; the message says which service and why."""


# --------------------------------------------------------------------------- paths and secrets


def port_of(url: str) -> int:
    parts = urlsplit(url)
    if parts.port:
        return parts.port
    return 443 if parts.scheme == "https" else 80


def venv_bin(name: str) -> str:
    """An executable of this virtualenv (the stack runs the pinned versions, not whatever is on PATH)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _read_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


class StackPaths:
    """Where the stack keeps its state: everything under ``settings.state_dir``."""

    def __init__(self, settings: StackSettings) -> None:
        root = settings.state_dir
        self.root = root
        self.pids = root / "pids"
        self.logs = root / "logs"
        self.secrets = root / "secrets"
        self.mlflow = root / "mlflow"
        self.airflow_home = root / "airflow"
        self.airflow_passwords = self.airflow_home / "simple_auth_manager_passwords.json.generated"
        self.postgres = root / "postgres"  # the data directory (owned by the postgres OS user under root)
        self.redis = root / "redis"

    def create(self) -> None:
        for folder in (self.pids, self.logs, self.secrets, self.mlflow, self.airflow_home, self.redis):
            folder.mkdir(parents=True, exist_ok=True)

    def pid_file(self, name: str) -> Path:
        return self.pids / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"


# --------------------------------------------------------------------------- environments


def airflow_aws_connection(settings: Settings) -> str:
    """The ``aws_default`` connection as Airflow's JSON connection format."""
    key, secret = settings.s3_credentials()
    extra: dict[str, str] = {"region_name": settings.aws_region}
    if settings.s3_endpoint_url:
        extra["endpoint_url"] = settings.s3_endpoint_url
    conn: dict[str, object] = {"conn_type": "aws", "extra": extra}
    if key:
        conn["login"] = key
        conn["password"] = secret
    return json.dumps(conn)


def platform_env(settings: StackSettings, paths: StackPaths) -> dict[str, str]:
    """Environment shared by every process of the stack and by the tasks Airflow runs."""
    env = process_environment()
    env.update(settings.env())
    key, secret = settings.platform.s3_credentials()
    if key:
        env["AWS_ACCESS_KEY_ID"] = key
        env["AWS_SECRET_ACCESS_KEY"] = secret or ""
    env["AWS_DEFAULT_REGION"] = settings.platform.aws_region
    if settings.platform.s3_endpoint_url:
        # boto3, pyarrow and MLflow's S3 artifact store all follow these without code changes.
        env["AWS_ENDPOINT_URL_S3"] = settings.platform.s3_endpoint_url
        env["MLFLOW_S3_ENDPOINT_URL"] = settings.platform.s3_endpoint_url
    if not settings.platform.card_token_key:
        env["FRAUD_CARD_TOKEN_KEY"] = _read_or_create_secret(
            paths.secrets / "card_token.key", lambda: secrets.token_hex(32)
        )
    env["GX_ANALYTICS_ENABLED"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    return env


DAG_REPARSE_S = 300
FORKSERVER_PRELOAD = "training_lib.preload,airflow.api_fastapi.core_api.security"


def airflow_env(settings: StackSettings, paths: StackPaths) -> dict[str, str]:
    """Airflow configuration for the local stack, as ``AIRFLOW__SECTION__KEY`` variables."""
    env = platform_env(settings, paths)
    api = settings.airflow_api_url
    jwt_secret = _read_or_create_secret(paths.secrets / "airflow_jwt.secret", lambda: secrets.token_urlsafe(32))
    api_secret = _read_or_create_secret(paths.secrets / "airflow_api.secret", lambda: secrets.token_urlsafe(32))
    env.update(
        {
            "AIRFLOW_HOME": str(paths.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(settings.platform.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.platform.plugins_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{settings.airflow_admin_user}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(paths.airflow_passwords),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            # An unchanged DAG file is parsed again every 5 minutes, not every 10 s (that kept the DAG processor
            # at ~20 % of a core on an idle stack); a file whose mtime changed is parsed at the next refresh.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(DAG_REPARSE_S),
            "AIRFLOW__API__HOST": LOOPBACK,
            "AIRFLOW__API__PORT": str(port_of(api)),
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": api_secret,
            "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # Task processes inherit the heavy libraries from a preloaded forkserver (training_lib/preload.py)
            # and the API modules every task process imports when it loads the plugins (plugins/ has a
            # FastAPI app): ~3 s less per task on 2 cores.
            "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
            "AIRFLOW__CORE__MP_FORKSERVER_PRELOAD": FORKSERVER_PRELOAD,
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(paths.airflow_home / "logs"),
            "AIRFLOW_CONN_AWS_DEFAULT": airflow_aws_connection(settings.platform),
        }
    )
    if not settings.uses_postgres:  # SQLite in AIRFLOW_HOME: a long lock wait (these arguments break PostgreSQL)
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = "training_lib.config.AIRFLOW_SQLITE_ARGS"
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"] = "training_lib.config.AIRFLOW_SQLITE_ARGS_ASYNC"
    else:
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = postgres_url(settings, paths, "airflow")
    if settings.distributed:
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(max(4, settings.celery_workers * settings.celery_worker_concurrency)),
                "AIRFLOW__CELERY__BROKER_URL": redis_url(settings, paths),
                # the driver must be named: plain db+postgresql:// makes SQLAlchemy look for psycopg 3
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + postgres_url(settings, paths, "airflow"),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(settings.celery_worker_concurrency),
            }
        )
    return env


def postgres_password(paths: StackPaths) -> str:
    return _read_or_create_secret(paths.secrets / "postgres.password", lambda: secrets.token_urlsafe(24))


def redis_password(paths: StackPaths) -> str:
    return _read_or_create_secret(paths.secrets / "redis.password", lambda: secrets.token_urlsafe(24))


def postgres_url(settings: StackSettings, paths: StackPaths, database: str) -> str:
    """SQLAlchemy URL of one database of the distributed stack's PostgreSQL (psycopg2 driver)."""
    password = postgres_password(paths)
    return f"postgresql+psycopg2://{POSTGRES_USER}:{password}@{LOOPBACK}:{settings.postgres_port}/{database}"


def redis_url(settings: StackSettings, paths: StackPaths) -> str:
    return f"redis://:{redis_password(paths)}@{LOOPBACK}:{settings.redis_port}/0"


# --------------------------------------------------------------------------- PostgreSQL and Redis binaries


def postgres_bin(name: str) -> str:
    """A PostgreSQL server program: from PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda path: int(Path(path).parts[-3].split(".")[0])
    )
    if not candidates:
        raise StackError(f"PostgreSQL's {name} is not installed: {OS_PACKAGES_HINT}")
    return candidates[-1]


def redis_bin() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise StackError(f"redis-server is not installed: {OS_PACKAGES_HINT}")
    return found


def as_postgres_user(argv: list[str]) -> list[str]:
    """Run as the postgres OS user when we are root (PostgreSQL refuses root); unchanged otherwise."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", f"--reuid={POSTGRES_OS_USER}", f"--regid={POSTGRES_OS_USER}", "--init-groups", "--", *argv]


def airflow_password(settings: StackSettings, paths: StackPaths) -> str:
    """The admin password: the configured one, else generated once into the state folder."""
    wanted = settings.airflow_admin_password
    if paths.airflow_passwords.exists():
        current = json.loads(paths.airflow_passwords.read_text()).get(settings.airflow_admin_user)
        if current and (wanted is None or wanted == current):
            return current
    password = wanted or secrets.token_urlsafe(12)
    paths.airflow_passwords.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.airflow_passwords, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({settings.airflow_admin_user: password}, handle)
    return password


# Connection URLs that carry a password: `env` prints Airflow's ``<KEY>_CMD`` form reading a private file.
URL_SECRETS = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
)


def print_environment(settings: StackSettings, paths: StackPaths) -> None:
    """``export`` lines for the airflow/mlflow CLIs against this stack; no secret values on screen."""
    for key, value in sorted(airflow_env(settings, paths).items()):
        if key in URL_SECRETS:
            secret_file = paths.secrets / f"{key.lower()}.url"
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(value)
            print(f"export {key}_CMD={json.dumps(f'cat {secret_file}')}")
        elif key.startswith(("AIRFLOW", "FRAUD_", "MLFLOW_", "AWS_")) and "SECRET" not in key and "KEY" not in key:
            print(f"export {key}={json.dumps(value)}")
