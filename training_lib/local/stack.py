"""The embedded local stack: moto S3 server, MLflow server, Airflow; all on 127.0.0.1.

``python -m training_lib.local.stack up|down|status`` (what ``make up``/``down``/``status`` run).
Every process is started in its own session, recorded in a PID file under
``<state_dir>/pids`` together with its kernel start time, and stopped by that PID only (never by
name or process group); after a parent exits, any child it left behind in its session is stopped
by PID as well.

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
import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from training_lib.config import Settings, StackSettings, load_stack_settings, process_environment

LOOPBACK = "127.0.0.1"
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
POSTGRES_USER = "fraud"  # owner of the distributed stack's databases
POSTGRES_OS_USER = "postgres"  # PostgreSQL refuses to run as root: started by root, it runs as this OS user
POSTGRES_DATABASES = ("airflow", "mlflow")
POSTGRES_MAX_CONNECTIONS = 200
OS_PACKAGES_HINT = "run `make os-packages` (installs the Debian packages postgresql and redis-server)"


class StackError(RuntimeError):
    """The local stack could not be started or stopped; the message says which service and why."""


@dataclass
class Service:
    """One long-running process of the stack."""

    name: str
    argv: list[str]
    env: dict[str, str]
    health: Callable[[], bool] | None = None
    port: int | None = None


# --------------------------------------------------------------------------- paths and secrets


def _port_of(url: str) -> int:
    parts = urlsplit(url)
    if parts.port:
        return parts.port
    return 443 if parts.scheme == "https" else 80


def _bin(name: str) -> str:
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
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__API__HOST": LOOPBACK,
            "AIRFLOW__API__PORT": str(_port_of(api)),
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
    if not settings.distributed:  # SQLite in AIRFLOW_HOME: a long lock wait (these arguments break PostgreSQL)
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = "training_lib.config.AIRFLOW_SQLITE_ARGS"
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"] = "training_lib.config.AIRFLOW_SQLITE_ARGS_ASYNC"
    else:
        env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(max(4, settings.celery_workers * settings.celery_worker_concurrency)),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres_url(settings, paths, "airflow"),
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


def _as_postgres_user(argv: list[str]) -> list[str]:
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


# --------------------------------------------------------------------------- health checks


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local URLs
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def airflow_health(api_url: str, timeout: float = 2.0) -> dict[str, str]:
    """Component name → status from ``/api/v2/monitor/health`` (empty when it does not answer)."""
    try:
        with urllib.request.urlopen(f"{api_url}/api/v2/monitor/health", timeout=timeout) as response:  # noqa: S310
            body = json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return {}
    return {name: (part or {}).get("status", "unknown") for name, part in body.items() if isinstance(part, dict)}


def airflow_healthy(api_url: str) -> bool:
    health = airflow_health(api_url)
    needed = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return bool(health) and all(health.get(name) == "healthy" for name in needed)


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


# --------------------------------------------------------------------------- processes by PID


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; it is wrapped in parentheses.
    pid, name, rest = raw[: raw.index(" ")], raw[raw.index("(") + 1 : raw.rindex(")")], raw[raw.rindex(")") + 2 :]
    return [pid, name, *rest.split()]


def process_start_time(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[21] if stat else None


def process_alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[2] != "Z"


def session_members(session_id: int) -> list[int]:
    """PIDs of live processes in the given session (children a stopped parent left behind)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat and stat[5] == str(session_id) and stat[2] != "Z":
            members.append(int(entry.name))
    return members


def _decode_address(hex_address: str) -> tuple[str, int]:
    host_hex, port_hex = hex_address.split(":")
    raw = bytes.fromhex(host_hex)
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # /proc/net/tcp6 stores four little-endian 32-bit words
        host = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    return host, int(port_hex, 16)


def listening_addresses(pids: list[int]) -> set[tuple[str, int]]:
    """(host, port) of every TCP socket in LISTEN state held by these processes or their session members."""
    members = {member for pid in pids for member in [pid, *session_members(pid)]}
    inodes = set()
    for pid in members:
        fd_dir = Path(f"/proc/{pid}/fd")
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields_ = line.split()
                if fields_[3] == "0A" and fields_[9] in inodes:  # 0A = LISTEN
                    found.add(_decode_address(fields_[1]))
    return found


def read_pid_file(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def recorded_pid(path: Path) -> int | None:
    """The PID in a PID file if that very process (same kernel start time) is still alive."""
    record = read_pid_file(path)
    if not record:
        return None
    pid = int(record["pid"])
    if process_alive(pid) and process_start_time(pid) == record.get("start_time"):
        return pid
    return None


def start_process(service: Service, paths: StackPaths) -> int:
    log = open(paths.log_file(service.name), "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        service.argv,
        env=service.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=paths.root,
        start_new_session=True,
    )
    log.close()
    record = {
        "pid": process.pid,
        "start_time": process_start_time(process.pid),
        "argv": service.argv,
        "started_at": time.time(),
    }
    paths.pid_file(service.name).write_text(json.dumps(record))
    return process.pid


def _signal_and_wait(pid: int, sig: int, timeout: float) -> bool:
    """Send ``sig`` (0: send nothing) and wait up to ``timeout`` seconds for the process to end."""
    try:
        if sig:
            os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.1)
    return not process_alive(pid)


def stop_processes(names: list[str], paths: StackPaths, timeout: float = 30.0) -> dict[str, str]:
    """Stop recorded processes by PID: SIGTERM to all, wait, SIGKILL what remains; then leftover children.

    Returns name -> what happened, for display.
    """
    targets: dict[str, int] = {}
    outcome: dict[str, str] = {}
    for name in names:
        pid = recorded_pid(paths.pid_file(name))
        if pid is None:
            paths.pid_file(name).unlink(missing_ok=True)
            outcome[name] = "not running"
        else:
            targets[name] = pid
    started = time.monotonic()
    for pid in targets.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for name, pid in targets.items():
        remaining = max(0.5, timeout - (time.monotonic() - started))
        how = "stopped" if _signal_and_wait(pid, 0, remaining) else None
        if how is None:
            how = "killed (SIGTERM ignored)" if _signal_and_wait(pid, signal.SIGKILL, 5) else None
        if how is None:
            raise StackError(f"{name}: PID {pid} did not stop, even after SIGKILL")
        leftovers = [child for child in session_members(pid) if child != pid]
        for child in leftovers:
            if not _signal_and_wait(child, signal.SIGTERM, 5):
                _signal_and_wait(child, signal.SIGKILL, 5)
        paths.pid_file(name).unlink(missing_ok=True)
        note = f" and {len(leftovers)} leftover child(ren)" if leftovers else ""
        outcome[name] = f"{how} PID {pid}{note} after {time.monotonic() - started:.1f}s"
    return outcome


# --------------------------------------------------------------------------- the stack


class LocalStack:
    """Start, stop and inspect the embedded services described by ``settings``."""

    def __init__(self, settings: StackSettings, echo: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.paths = StackPaths(settings)
        self.echo = echo

    # ---- service definitions
    def s3_service(self) -> Service:
        endpoint = self.settings.platform.s3_endpoint_url
        if not endpoint:
            raise StackError("FRAUD_S3_ENDPOINT_URL is empty (real AWS): drop 's3' from FRAUD_EMBEDDED_SERVICES")
        port = _port_of(endpoint)
        argv = [_bin("moto_server"), "-H", LOOPBACK, "-p", str(port)]
        return Service("s3", argv, platform_env(self.settings, self.paths), self._s3_healthy, port)

    def mlflow_service(self) -> Service:
        uri = self.settings.platform.mlflow_tracking_uri
        if not uri.startswith("http"):
            raise StackError(f"MLFLOW_TRACKING_URI={uri!r} is not a server URL the stack can run")
        port = _port_of(uri)
        argv = [
            _bin("mlflow"), "server",
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
            if self.settings.distributed
            else f"sqlite:///{self.paths.mlflow / 'mlflow.db'}"
        )
        return Service("mlflow", argv, env, lambda: http_ok(f"{uri}/health"), port)

    def postgres_service(self) -> Service:
        port = self.settings.postgres_port
        argv = _as_postgres_user(
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
        return Service("postgres", argv, env, self._postgres_healthy, port)

    def redis_service(self) -> Service:
        return Service(
            "redis", [redis_bin(), str(self.paths.redis / "redis.conf")], platform_env(self.settings, self.paths),
            self._redis_healthy, self.settings.redis_port,
        )  # fmt: skip

    def celery_worker_services(self) -> list[Service]:
        env = airflow_env(self.settings, self.paths)
        services = []
        for number in range(1, self.settings.celery_workers + 1):
            argv = [
                _bin("airflow"), "celery", "worker",
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
            argv = [_bin("airflow"), component]
            if component in {"scheduler", "triggerer"}:
                argv.append("--skip-serve-logs")
            # restarted when it dies on its own (see training_lib.local.supervise); the recorded PID is the supervisor's
            argv = [sys.executable, "-m", "training_lib.local.supervise", "--", *argv]
            port = _port_of(self.settings.airflow_api_url) if component == "api-server" else None
            services.append(Service(f"airflow-{component}", argv, env, None, port))
        if self.settings.distributed:
            services.extend(self.celery_worker_services())
        return services

    def services(self) -> dict[str, list[Service]]:
        """Service groups in start order; PostgreSQL and Redis only in the distributed topology."""
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
        return ("postgres", "redis") if self.settings.distributed else ()

    # ---- health
    def _s3_healthy(self) -> bool:
        return http_ok(f"{self.settings.platform.s3_endpoint_url}/moto-api/data.json")

    def _postgres_connect(self, database: str = "postgres"):
        import psycopg2

        return psycopg2.connect(
            host=LOOPBACK, port=self.settings.postgres_port, user=POSTGRES_USER,
            password=postgres_password(self.paths), dbname=database, connect_timeout=2,
        )  # fmt: skip

    def _postgres_healthy(self) -> bool:
        import psycopg2

        try:
            self._postgres_connect().close()
        except psycopg2.OperationalError:
            return False
        return True

    def _redis_healthy(self) -> bool:
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

    def _workers_ready(self) -> bool:
        return len(self.celery_workers_answering()) >= self.settings.celery_workers

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
        groups = self.services()
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
        if self.settings.distributed:
            self._start_infrastructure(groups, timeout)
        if "s3" in groups:
            names = self._start_missing(groups["s3"])
            took = self._wait("S3 (moto)", self._s3_healthy, timeout, names)
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
                took = self._wait("Celery workers", self._workers_ready, timeout, airflow_names)
                self.echo(f"[airflow] {self.settings.celery_workers} Celery worker(s) answering after {took:.1f}s")
        self.echo(f"local stack up in {time.monotonic() - started:.0f}s")
        self.echo(self.describe())

    def _start_infrastructure(self, groups: dict[str, list[Service]], timeout: float) -> None:
        """PostgreSQL (initialised on first start, databases created) and Redis, healthy before anything else."""
        self._init_postgres()
        self._write_redis_config()
        for group, what in (("postgres", "PostgreSQL"), ("redis", "Redis")):
            names = self._start_missing(groups[group])
            took = self._wait(what, groups[group][0].health, timeout, names)  # type: ignore[arg-type]
            self.echo(f"[{group}] healthy after {took:.1f}s")
        with contextlib.closing(self._postgres_connect()) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                for database in POSTGRES_DATABASES:
                    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                    if cursor.fetchone() is None:
                        cursor.execute(f'CREATE DATABASE "{database}"')
                        self.echo(f"[postgres] created database {database}")

    def _init_postgres(self) -> None:
        """``initdb`` the data directory once: password authentication only, the password from the state folder."""
        data = self.paths.postgres
        if (data / "PG_VERSION").exists():
            return
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o700)
        with tempfile.TemporaryDirectory(prefix="fraud-pg-") as scratch:
            password_file = Path(scratch) / "password"
            password_file.write_text(postgres_password(self.paths))
            if os.geteuid() == 0:
                import pwd

                account = pwd.getpwnam(POSTGRES_OS_USER)
                for path in (data, Path(scratch), password_file):
                    os.chown(path, account.pw_uid, account.pw_gid)
                reach = subprocess.run(_as_postgres_user(["test", "-w", str(data)]), check=False)
                if reach.returncode != 0:
                    raise StackError(
                        f"the {POSTGRES_OS_USER} OS user (PostgreSQL refuses to run as root) cannot write {data}: "
                        f"a parent folder is private; choose a FRAUD_STATE_DIR it can reach"
                    )
            argv = [
                postgres_bin("initdb"), "-D", str(data), "-U", POSTGRES_USER, f"--pwfile={password_file}",
                "--auth=scram-sha-256", "-E", "UTF8", "--locale=C",
            ]  # fmt: skip
            log_path = self.paths.log_file("postgres-initdb")
            with open(log_path, "ab") as log:
                result = subprocess.run(_as_postgres_user(argv), stdout=log, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            raise StackError(f"initdb failed (exit {result.returncode}); see {log_path}")
        self.echo(f"[postgres] initialised {data}")

    def _write_redis_config(self) -> None:
        """Redis on loopback with a password, no persistence (Celery messages are re-sent by the scheduler)."""
        config = "\n".join(
            [
                f"bind {LOOPBACK}",
                f"port {self.settings.redis_port}",
                "protected-mode yes",
                f"requirepass {redis_password(self.paths)}",
                f"dir {self.paths.redis}",
                'save ""',
                "appendonly no",
                "daemonize no",
                "",
            ]
        )
        path = self.paths.redis / "redis.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(config)

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
                    [_bin("airflow"), "db", "migrate"],
                    env=services[0].env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            if result.returncode != 0:
                raise StackError(f"airflow db migrate failed (exit {result.returncode}); see {log_path}")
        return self._start_missing(services)

    def down(self) -> None:
        """Stop by PID: the platform's services first, then (distributed) the databases they were using."""
        groups = self.services()
        infrastructure = self.infrastructure_groups()
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
            for services in self.services().values()
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
        return "\n".join(lines)

    def status(self) -> bool:
        """Print each service's PID and health; True when everything configured is up and healthy."""
        checks = {
            "postgres": self._postgres_healthy,
            "redis": self._redis_healthy,
            "s3": self._s3_healthy,
            "mlflow": lambda: http_ok(f"{self.settings.platform.mlflow_tracking_uri}/health"),
            "airflow": lambda: airflow_healthy(self.settings.airflow_api_url),
        }
        all_ok = True
        for group, services in self.services().items():
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
                answering = self.celery_workers_answering()
                all_ok &= len(answering) >= self.settings.celery_workers
                self.echo(f"  celery workers answering: {', '.join(answering) or 'none'}")
        self.echo(self.describe())
        return all_ok


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
