"""Settings: defaults point at the embedded stack, overrides are typed, bad values name the variable; the
platform's settings and the local stack's are separate objects."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from training_lib.config import (
    ConfigError,
    Settings,
    StackSettings,
    describe_settings,
    load_settings,
    load_stack_settings,
)

REPO = Path(__file__).resolve().parents[1]


def test_defaults_point_at_the_embedded_stack() -> None:
    stack = load_stack_settings({})
    settings = stack.platform
    assert settings == load_settings({})
    assert settings.s3_endpoint_url == "http://127.0.0.1:5001"
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert stack.airflow_api_url == "http://127.0.0.1:8080"
    assert stack.embedded_services == ("s3", "mlflow", "airflow")
    assert stack.state_dir == REPO / ".local"
    assert not stack.distributed
    assert settings.model_name == "fraud-detector"
    assert settings.s3_credentials() == ("fraud-local", "fraud-local")  # moto on loopback accepts any key


def test_the_platform_settings_hold_nothing_of_the_local_stack() -> None:
    """Tasks, DAGs and the plugin get :class:`Settings`: no state folder, admin login, ports or workers."""
    platform = {f for f in Settings.__dataclass_fields__}
    local = {f for f in StackSettings.__dataclass_fields__} - {"platform"}
    assert not platform & local
    assert {"state_dir", "airflow_api_url", "airflow_admin_password", "celery_workers", "postgres_port"} <= local
    stack = load_stack_settings({"FRAUD_CELERY_WORKERS": "2", "FRAUD_BUCKET": "lake-b"})
    assert stack.distributed and stack.platform.bucket == "lake-b"
    assert load_stack_settings(stack.env()) == stack  # what the stack hands its processes reads back the same


def test_overrides_are_parsed_to_their_types() -> None:
    settings = load_settings(
        {
            "FRAUD_BUCKET": "my-lake",
            "FRAUD_DRIFT_THRESHOLD": "0.25",
            "FRAUD_MIN_NEW_LABELS": "1000",
            "FRAUD_S3_ENDPOINT_URL": "http://minio.internal:9000/",
            "MLFLOW_TRACKING_URI": "https://mlflow.example.com/",
        }
    )
    assert settings.bucket == "my-lake"
    assert settings.drift_threshold == pytest.approx(0.25)
    assert settings.min_new_labels == 1000
    assert settings.s3_endpoint_url == "http://minio.internal:9000"
    assert settings.s3_credentials() == (None, None)  # a remote server: boto3's credential chain
    assert settings.mlflow_tracking_uri == "https://mlflow.example.com"


def test_real_aws_is_an_empty_endpoint_and_the_default_credential_chain() -> None:
    settings = load_settings({"FRAUD_S3_ENDPOINT_URL": ""})
    assert settings.s3_endpoint_url is None
    assert settings.s3_credentials() == (None, None)
    keyed = load_settings({"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"})
    assert keyed.s3_credentials() == ("id", "secret")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FRAUD_DRIFT_THRESHOLD", "lots"),
        ("FRAUD_DRIFT_THRESHOLD", "1.5"),
        ("FRAUD_MIN_NEW_LABELS", "-3"),
        ("FRAUD_BUCKET", "Not_A_Bucket"),
        ("FRAUD_EMBEDDED_SERVICES", "s3,kafka"),
        ("FRAUD_S3_ENDPOINT_URL", "127.0.0.1:5001"),
        ("FRAUD_AIRFLOW_API_URL", ""),
        ("FRAUD_MODEL_NAME", "  "),
        ("FRAUD_S3_MAX_ATTEMPTS", "0"),
        ("FRAUD_S3_READ_TIMEOUT_S", "0"),
        ("FRAUD_AIRFLOW_DATABASE", "mysql"),
    ],
)
def test_bad_values_raise_an_error_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_stack_settings({variable: value})


def test_postgres_serves_airflow_when_chosen_and_always_with_celery_workers() -> None:
    assert not load_stack_settings({}).uses_postgres  # `make up`: SQLite
    assert load_stack_settings({"FRAUD_AIRFLOW_DATABASE": " PostgreS "}).uses_postgres
    assert load_stack_settings({"FRAUD_CELERY_WORKERS": "2", "FRAUD_AIRFLOW_DATABASE": "sqlite"}).uses_postgres


def test_the_s3_client_uses_the_configured_timeouts_and_attempts() -> None:
    from training_lib.lake.objects import s3_client

    settings = load_settings(
        {"FRAUD_S3_CONNECT_TIMEOUT_S": "2", "FRAUD_S3_READ_TIMEOUT_S": "7.5", "FRAUD_S3_MAX_ATTEMPTS": "3"}
    )
    config = s3_client(settings).meta.config
    assert (config.connect_timeout, config.read_timeout) == (2.0, 7.5)
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}  # the first try included


def test_a_gate_that_passes_anything_is_refused() -> None:
    with pytest.raises(ConfigError, match="FRAUD_PROMOTION_FLOOR"):
        load_settings({"FRAUD_PROMOTION_FLOOR": "0", "FRAUD_PROMOTION_MARGIN": "0"})


def test_env_round_trips_through_load_settings() -> None:
    original = load_settings({"FRAUD_BUCKET": "round-trip", "FRAUD_S3_ENDPOINT_URL": "", "FRAUD_ALERT_BUDGET": "0.01"})
    assert load_settings(original.env()) == original


def test_redacted_hides_secrets() -> None:
    settings = load_settings({"FRAUD_CARD_TOKEN_KEY": "k" * 64, "AWS_SECRET_ACCESS_KEY": "s3cr3t"})
    shown = settings.redacted()
    assert shown["FRAUD_CARD_TOKEN_KEY"] == "***"
    assert "s3cr3t" not in str(shown)


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [name for name, _default, _help in describe_settings() if f"`{name}`" not in readme]
    assert not missing, f"README configuration table lacks {missing}"
    assert len(describe_settings()) == len(Settings.__dataclass_fields__) + len(StackSettings.__dataclass_fields__) - 1


def _reads_environment(path: Path) -> list[str]:
    findings = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in {"environ", "getenv", "environb"}
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ):
            findings.append(f"{path.relative_to(REPO)}:{node.lineno} os.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            findings += [
                f"{path.relative_to(REPO)}:{node.lineno} from os import {a.name}"
                for a in node.names
                if a.name in {"environ", "getenv"}
            ]
    return findings


def test_only_config_reads_the_environment() -> None:
    sources = [p for folder in ("training_lib", "dags", "plugins") for p in (REPO / folder).rglob("*.py")]
    assert len(sources) >= 3
    findings = [
        f for p in sources if p.name != "config.py" or p.parent.name != "training_lib" for f in _reads_environment(p)
    ]
    assert not findings, findings
    # and the check does see a read where there is one
    assert _reads_environment(REPO / "training_lib" / "config.py")
