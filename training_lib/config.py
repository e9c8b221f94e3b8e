"""Settings: the only module that reads the environment.

Two typed objects, kept apart as the code is:
- :class:`Settings`, what the platform's tasks, DAGs and plugin use (lake, MLflow, thresholds, scoring);
- :class:`StackSettings`, what only the local stack reads (``training_lib.local``: its state folder, the
  Airflow API URL and admin login, the services it embeds, the distributed topology's workers and ports).
  It carries the platform settings it runs with (``.platform``); the platform never sees it.

Every setting has a default that points at the embedded local stack (`make up`), so nothing needs
to be configured on a laptop. Pointing the platform at real AWS S3 / MinIO and a remote MLflow is a
matter of environment variables only (see the README's configuration table).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EMBEDDED_SERVICES = ("s3", "mlflow", "airflow")
DUMMY_S3_KEY = "fraud-local"  # moto accepts any key; not a secret
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Airflow's SQLite metadata database (local stack): wait this long for a write lock instead of
# sqlite3's 5 s, which the API server exceeded under backfill load ("Database error" HTTP 500).
# Airflow imports these dicts by path (AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS[_ASYNC]).
AIRFLOW_SQLITE_LOCK_TIMEOUT_S = 60.0
AIRFLOW_SQLITE_ARGS: dict[str, Any] = {"timeout": AIRFLOW_SQLITE_LOCK_TIMEOUT_S}
AIRFLOW_SQLITE_ARGS_ASYNC: dict[str, Any] = {"timeout": AIRFLOW_SQLITE_LOCK_TIMEOUT_S}

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


def _env_field(env: str, default: Any, help: str) -> Any:
    return field(default=default, metadata={"env": env, "help": help})


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true/false, got {value!r}")


def _parse_optional_url(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


def _parse_url(value: str) -> str:
    parsed = _parse_optional_url(value)
    if parsed is None:
        raise ValueError("must not be empty")
    return parsed


def _parse_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _parse_optional_text(value: str) -> str | None:
    return value.strip() or None


def _parse_threshold_strategy(value: str) -> str:
    value = value.strip()
    if value not in {"alert_budget", "best_f1"}:
        raise ValueError(f"expected alert_budget or best_f1, got {value!r}")
    return value


AIRFLOW_DATABASES = ("sqlite", "postgres")


def _parse_airflow_database(value: str) -> str:
    value = value.strip().lower()
    if value not in AIRFLOW_DATABASES:
        raise ValueError(f"expected one of {', '.join(AIRFLOW_DATABASES)}, got {value!r}")
    return value


def _parse_services(value: str) -> tuple[str, ...]:
    services = tuple(s.strip() for s in value.split(",") if s.strip())
    unknown = sorted(set(services) - set(EMBEDDED_SERVICES))
    if unknown:
        raise ValueError(f"unknown service(s) {unknown}; choose from {list(EMBEDDED_SERVICES)}")
    return services


def _parse_fraction(value: str) -> float:
    number = float(value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"expected a fraction between 0 and 1, got {number}")
    return number


def _parse_positive_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(f"expected a non-negative integer, got {number}")
    return number


def _parse_at_least_one(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"expected an integer of at least 1, got {number}")
    return number


def _parse_positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(f"expected a positive number, got {number}")
    return number


def _parse_bucket(value: str) -> str:
    value = value.strip()
    if not (3 <= len(value) <= 63) or not all(c.islower() or c.isdigit() or c in ".-" for c in value):
        raise ValueError(f"not a valid S3 bucket name: {value!r}")
    return value


_PARSERS: dict[str, Callable[[str], Any]] = {
    "state_dir": lambda v: Path(v).expanduser().resolve(),
    "bucket": _parse_bucket,
    "s3_endpoint_url": _parse_optional_url,
    "s3_connect_timeout_s": _parse_positive_float,
    "s3_read_timeout_s": _parse_positive_float,
    "s3_max_attempts": _parse_at_least_one,
    "orphan_grace_hours": _parse_positive_float,
    "mlflow_tracking_uri": lambda v: v.strip().rstrip("/"),
    "airflow_api_url": _parse_url,
    "embedded_services": _parse_services,
    "drift_threshold": _parse_fraction,
    "quarantine_share_limit": _parse_fraction,
    "min_new_labels": _parse_positive_int,
    "promotion_margin": _parse_fraction,
    "promotion_floor": _parse_fraction,
    "alert_budget": _parse_fraction,
    "retrain_cooldown_days": _parse_positive_int,
    "performance_cooldown_days": _parse_positive_int,
    "performance_tolerance": _parse_fraction,
    "performance_window_days": _parse_at_least_one,
    "label_delay_days": _parse_positive_int,
    "dedup_lookback_days": _parse_positive_int,
    "training_window_days": _parse_positive_int,
    "alert_rate_factor": _parse_positive_float,
    "notify_webhook_url": _parse_optional_url,
    "scoring_bucket_rows": _parse_positive_int,
    "scoring_shard_rows": _parse_at_least_one,
    "scoring_max_shards": _parse_at_least_one,
    "celery_workers": _parse_positive_int,
    "celery_worker_concurrency": _parse_at_least_one,
    "postgres_port": _parse_at_least_one,
    "airflow_database": _parse_airflow_database,
    "redis_port": _parse_at_least_one,
    "threshold_strategy": _parse_threshold_strategy,
    "drift_reference_days": _parse_positive_int,
    "sensor_poke_s": _parse_positive_float,
}


class _FromEnvironment:
    """Fields that each name their environment variable (``metadata["env"]``)."""

    SECRETS: frozenset[str] = frozenset()

    def env(self) -> dict[str, str]:
        """These settings as environment variables, for the processes started with them."""
        out: dict[str, str] = {}
        for f in fields(self):  # type: ignore[arg-type]
            if "env" not in f.metadata:
                continue
            value = getattr(self, f.name)
            if value is None:
                if f.name == "s3_endpoint_url":
                    out[f.metadata["env"]] = ""
                continue
            if isinstance(value, tuple):
                value = ",".join(value)
            out[f.metadata["env"]] = str(value)
        return out

    def redacted(self) -> dict[str, str]:
        """Settings for display, with secrets hidden."""
        return {
            f.metadata["env"]: (
                "***" if f.name in self.SECRETS and getattr(self, f.name) else str(getattr(self, f.name))
            )
            for f in fields(self)  # type: ignore[arg-type]
            if "env" in f.metadata
        }


@dataclass(frozen=True)
class Settings(_FromEnvironment):
    """Typed platform configuration. Build it with :func:`load_settings`."""

    SECRETS = frozenset({"aws_secret_access_key", "card_token_key"})

    bucket: str = _env_field("FRAUD_BUCKET", "fraud-platform", "S3 bucket of the data lake and MLflow artifacts.")
    s3_endpoint_url: str | None = _env_field(
        "FRAUD_S3_ENDPOINT_URL",
        "http://127.0.0.1:5001",
        "S3 API endpoint (moto or MinIO). Empty: the AWS default endpoint of the region.",
    )
    aws_region: str = _env_field("AWS_DEFAULT_REGION", "us-east-1", "S3 region.")
    aws_access_key_id: str | None = _env_field(
        "AWS_ACCESS_KEY_ID",
        None,
        "S3 key id. Unset: boto3's credential chain; on a loopback endpoint (the embedded moto) dummy keys.",
    )
    aws_secret_access_key: str | None = _env_field("AWS_SECRET_ACCESS_KEY", None, "S3 secret key.")
    s3_connect_timeout_s: float = _env_field(
        "FRAUD_S3_CONNECT_TIMEOUT_S", 5.0, "Seconds the S3 client waits to connect before an attempt fails."
    )
    s3_read_timeout_s: float = _env_field(
        "FRAUD_S3_READ_TIMEOUT_S",
        60.0,
        "Seconds the S3 client waits for an answer before an attempt fails (a hung server is given up on).",
    )
    s3_max_attempts: int = _env_field(
        "FRAUD_S3_MAX_ATTEMPTS",
        5,
        "Attempts per S3 request (boto3 standard retries, first one included); then the task fails (Airflow retries).",
    )
    orphan_grace_hours: float = _env_field(
        "FRAUD_ORPHAN_GRACE_HOURS",
        24.0,
        "Hours before an unreferenced part file of another writer counts as an orphan and is swept by a commit.",
    )
    mlflow_tracking_uri: str = _env_field(
        "MLFLOW_TRACKING_URI", "http://127.0.0.1:5000", "MLflow tracking and registry server."
    )
    model_name: str = _env_field("FRAUD_MODEL_NAME", "fraud-detector", "Registered model name in MLflow.")
    experiment_name: str = _env_field("FRAUD_EXPERIMENT", "fraud-detection", "MLflow experiment for training.")
    drift_threshold: float = _env_field(
        "FRAUD_DRIFT_THRESHOLD",
        0.1,
        "Share of drifted columns (of 7 monitored) that counts as data drift; 0.1 = any one column.",
    )
    quarantine_share_limit: float = _env_field(
        "FRAUD_QUARANTINE_SHARE_LIMIT", 0.05, "Above this share of quarantined rows a day's ingestion fails."
    )
    min_new_labels: int = _env_field("FRAUD_MIN_NEW_LABELS", 50_000, "Newly matured labels that trigger a retrain.")
    promotion_margin: float = _env_field(
        "FRAUD_PROMOTION_MARGIN", 0.01, "PR-AUC the challenger must gain over the champion."
    )
    promotion_floor: float = _env_field(
        "FRAUD_PROMOTION_FLOOR", 0.5, "Absolute PR-AUC any model needs to become champion."
    )
    alert_budget: float = _env_field(
        "FRAUD_ALERT_BUDGET", 0.005, "Share of transactions the fraud team can review (sets the threshold)."
    )
    threshold_strategy: str = _env_field(
        "FRAUD_THRESHOLD_STRATEGY",
        "alert_budget",
        "How the decision threshold is chosen on validation: alert_budget or best_f1.",
    )
    training_window_days: int = _env_field(
        "FRAUD_TRAINING_WINDOW_DAYS", 30, "Matured labelled days a retrain uses (train, validation, test)."
    )
    retrain_cooldown_days: int = _env_field(
        "FRAUD_RETRAIN_COOLDOWN_DAYS",
        3,
        "Days of data between retrains: a retrain whose data day is closer to the last one's is skipped; 0 = off.",
    )
    performance_cooldown_days: int = _env_field(
        "FRAUD_PERFORMANCE_COOLDOWN_DAYS",
        1,
        "Days of data between retrains that realized quality triggered (the drift cooldown does not apply to them).",
    )
    performance_tolerance: float = _env_field(
        "FRAUD_PERFORMANCE_TOLERANCE",
        0.1,
        "Realized PR-AUC this far below the champion's evidence (its test PR-AUC) triggers a retrain.",
    )
    performance_window_days: int = _env_field(
        "FRAUD_PERFORMANCE_WINDOW_DAYS",
        3,
        "Realized quality is judged on the mean PR-AUC of the champion's newest N matured scored days.",
    )
    label_delay_days: int = _env_field(
        "FRAUD_LABEL_DELAY_DAYS", 7, "Days until a transaction's label (chargeback) is confirmed."
    )
    dedup_lookback_days: int = _env_field(
        "FRAUD_DEDUP_LOOKBACK_DAYS", 90, "Earlier days whose trans_num values a new day must not repeat."
    )
    drift_reference_days: int = _env_field(
        "FRAUD_DRIFT_REFERENCE_DAYS", 3, "Before the first model, the first N validated days are the drift reference."
    )
    alert_rate_factor: float = _env_field(
        "FRAUD_ALERT_RATE_FACTOR", 3.0, "A scored day alerting more than this many times the alert budget notifies."
    )
    notify_webhook_url: str | None = _env_field(
        "FRAUD_NOTIFY_WEBHOOK_URL", None, "POST notifications (JSON) here; unset: notifications are logged only."
    )
    scoring_bucket_rows: int = _env_field(
        "FRAUD_SCORING_BUCKET_ROWS", 200_000, "Rows per card bucket in batch scoring (bounds its memory)."
    )
    scoring_shard_rows: int = _env_field(
        "FRAUD_SCORING_SHARD_ROWS",
        250_000,
        "Rows per scoring shard: a day is split by card into ceil(rows / this) mapped `score_shard` tasks.",
    )
    scoring_max_shards: int = _env_field(
        "FRAUD_SCORING_MAX_SHARDS", 16, "At most this many scoring shards (mapped tasks) per day."
    )
    sensor_poke_s: float = _env_field(
        "FRAUD_SENSOR_POKE_S",
        30.0,
        "Seconds between checks of the DAGs' sensors (landing files, a validated day); the demo uses 3.",
    )
    card_token_key: str | None = _env_field(
        "FRAUD_CARD_TOKEN_KEY",
        None,
        "Secret key of the card token (keyed hash of cc_num). Unset: generated once into the state folder.",
    )

    @property
    def label_window_days(self) -> int:
        """A label confirmed on day L is accepted only for a transaction validated on the N days up to L (N =
        dedup look-back + label delay), so day D's labels are all in the label partitions D .. D + N - 1."""
        return self.dedup_lookback_days + self.label_delay_days

    @property
    def project_root(self) -> Path:
        return PROJECT_ROOT

    @property
    def dags_folder(self) -> Path:
        return PROJECT_ROOT / "dags"

    @property
    def plugins_folder(self) -> Path:
        return PROJECT_ROOT / "plugins"

    @property
    def include_folder(self) -> Path:
        return PROJECT_ROOT / "include"

    def s3_credentials(self) -> tuple[str | None, str | None]:
        """Explicit keys; without them, on a loopback endpoint (the embedded moto server, a test's S3 server),
        the dummy keys moto accepts; else (None, None): boto3's credential chain."""
        if self.aws_access_key_id:
            return self.aws_access_key_id, self.aws_secret_access_key
        if self.s3_endpoint_url and urlsplit(self.s3_endpoint_url).hostname in LOOPBACK_HOSTS:
            return DUMMY_S3_KEY, DUMMY_S3_KEY
        return None, None


@dataclass(frozen=True)
class StackSettings(_FromEnvironment):
    """Typed configuration of the local stack (``training_lib.local``); build it with
    :func:`load_stack_settings`. ``platform``: the platform settings the stack's processes run with."""

    SECRETS = frozenset({"airflow_admin_password"})

    platform: Settings = field(default_factory=Settings)
    state_dir: Path = _env_field(
        "FRAUD_STATE_DIR", PROJECT_ROOT / ".local", "All local-stack state: data, logs, PID files."
    )
    airflow_api_url: str = _env_field(
        "FRAUD_AIRFLOW_API_URL", "http://127.0.0.1:8080", "Airflow API server (UI and REST API)."
    )
    airflow_admin_user: str = _env_field("FRAUD_AIRFLOW_USER", "admin", "Airflow admin user of the local stack.")
    airflow_admin_password: str | None = _env_field(
        "FRAUD_AIRFLOW_PASSWORD", None, "Its password. Unset: generated once into the state folder."
    )
    embedded_services: tuple[str, ...] = _env_field(
        "FRAUD_EMBEDDED_SERVICES",
        EMBEDDED_SERVICES,
        "Services `make up` starts. Use `airflow` alone with external S3 and MLflow.",
    )
    celery_workers: int = _env_field(
        "FRAUD_CELERY_WORKERS",
        0,
        "0: LocalExecutor (`make up`). N > 0: CeleryExecutor with N workers, PostgreSQL and Redis "
        "(`make up-distributed` uses 2).",
    )
    airflow_database: str = _env_field(
        "FRAUD_AIRFLOW_DATABASE",
        "sqlite",
        "Airflow's metadata database with LocalExecutor: `sqlite` (a file in the state folder) or `postgres` "
        "(the stack's own PostgreSQL server, from `make os-packages`; no SQLite lock waits under load: the tests "
        "use it). Always `postgres` with Celery workers.",
    )
    celery_worker_concurrency: int = _env_field(
        "FRAUD_CELERY_WORKER_CONCURRENCY", 2, "Task slots (processes) per Celery worker."
    )
    postgres_port: int = _env_field(
        "FRAUD_POSTGRES_PORT", 5432, "The stack's own PostgreSQL, when it runs one (Airflow metadata, MLflow store)."
    )
    redis_port: int = _env_field("FRAUD_REDIS_PORT", 6379, "Redis of the distributed stack (the Celery broker).")

    @property
    def distributed(self) -> bool:
        """The scale-out topology: Celery workers, PostgreSQL, Redis (instead of LocalExecutor)."""
        return self.celery_workers > 0

    @property
    def uses_postgres(self) -> bool:
        """The stack runs its own PostgreSQL for Airflow's metadata and MLflow's backend store."""
        return self.distributed or self.airflow_database == "postgres"

    def env(self) -> dict[str, str]:
        """The platform's and the stack's settings as environment variables."""
        return {**self.platform.env(), **super().env()}

    def redacted(self) -> dict[str, str]:
        return {**self.platform.redacted(), **super().redacted()}


def describe_settings() -> list[tuple[str, str, str]]:
    """(environment variable, default, meaning) for every setting, the platform's then the local stack's:
    the README's configuration table."""
    rows = []
    for f in (*fields(Settings), *fields(StackSettings)):
        if "env" not in f.metadata:
            continue
        default = f.default
        if isinstance(default, tuple):
            default = ",".join(default)
        if isinstance(default, Path):
            default = "<repo>/" + str(default.relative_to(PROJECT_ROOT))
        rows.append((f.metadata["env"], "" if default is None else str(default), f.metadata["help"]))
    return rows


def _parsed(cls: type, source: Mapping[str, str]) -> dict[str, Any]:
    """The values of ``cls``'s fields found in ``source``, each validated by its parser."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        if "env" not in f.metadata or f.metadata["env"] not in source:
            continue
        name, raw = f.metadata["env"], source[f.metadata["env"]]
        parser = _PARSERS.get(f.name, _parse_optional_text if f.default is None else _parse_text)
        try:
            values[f.name] = parser(raw)
        except ValueError as exc:
            raise ConfigError(f"environment variable {name}={raw!r} is invalid: {exc}") from exc
    return values


def _source(environ: Mapping[str, str] | None, overrides: Mapping[str, str] | None) -> dict[str, str]:
    return {**(os.environ if environ is None else environ), **(overrides or {})}


def load_settings(environ: Mapping[str, str] | None = None, overrides: Mapping[str, str] | None = None) -> Settings:
    """Read the platform settings from ``environ`` (default: the process environment), validating each value.

    ``overrides`` (same variable names) win over ``environ``: e.g. the demo's scenario settings."""
    settings = Settings(**_parsed(Settings, _source(environ, overrides)))
    if settings.promotion_floor <= 0 and settings.promotion_margin <= 0:
        raise ConfigError(
            "FRAUD_PROMOTION_FLOOR and FRAUD_PROMOTION_MARGIN cannot both be 0: the gate would pass anything"
        )
    return settings


def load_stack_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, str] | None = None
) -> StackSettings:
    """Read the local stack's settings, and the platform settings it runs with, as :func:`load_settings` does."""
    source = _source(environ, overrides)
    return StackSettings(platform=load_settings(source), **_parsed(StackSettings, source))


def process_environment() -> dict[str, str]:
    """A copy of the process environment, for building child-process environments."""
    return dict(os.environ)


def writer_scope(environ: Mapping[str, str] | None = None) -> str:
    """A short id shared by every task and try of one Airflow DAG run, else by this process.

    Part files carry it in their names, so a commit can sweep what its own run staged and left behind (a killed
    try, a shard's leftovers) without touching what a concurrent writer of another run has staged.
    """
    source = os.environ if environ is None else environ
    dag_id, run_id = source.get("AIRFLOW_CTX_DAG_ID"), source.get("AIRFLOW_CTX_DAG_RUN_ID")
    identity = f"run|{dag_id}|{run_id}" if dag_id and run_id else f"process|{os.getpid()}"
    return hashlib.sha256(identity.encode()).hexdigest()[:8]
