"""Repository hygiene: the lock, the CI entry point, lint, and docker-compose consistent with the stack."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from training_lib.config import Settings, describe_settings, load_settings
from training_lib.stack import LocalStack

REPO = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"requirements.txt line is not pinned with ==: {line!r}"
        pins[name.strip().lower()] = version.split(";")[0].strip()
    return pins


def test_lock_pins_the_platform_stack() -> None:
    pins = _lock()
    expected_prefix = {
        "apache-airflow": "3.3.",
        "apache-airflow-providers-amazon": "",
        "scikit-learn": "",
        "xgboost-cpu": "",
        "mlflow": "3.",
        "pandas": "2.",
        "boto3": "",
        "evidently": "0.7.",
        "great-expectations": "1.",
        "pyarrow": "",
        "pytest": "",
        "moto": "",
        "flask": "",  # moto[server]'s extra
    }
    for name, prefix in expected_prefix.items():
        assert name in pins, f"{name} missing from requirements.txt"
        assert pins[name].startswith(prefix), f"{name}=={pins[name]} is not {prefix}*"
    assert "xgboost" not in pins, "xgboost and xgboost-cpu must never be installed together"
    assert not [name for name in pins if name.startswith("nvidia-")]


def test_every_direct_requirement_is_in_the_lock() -> None:
    pins = _lock()
    for line in (REPO / "requirements.in").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name = re.split(r"[<>=\[;~! ]", line, maxsplit=1)[0].lower()
            assert name in pins, f"{name} (requirements.in) is not in requirements.txt: run `make lock`"


def _readme_test_command() -> str:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## The two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert len(commands) == 2, commands
    return next(command for command in commands if "test" in command)


def test_ci_runs_exactly_the_readme_test_command() -> None:
    command = _readme_test_command()
    assert command == "make test"
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_state_and_environments_are_git_ignored() -> None:
    ignored = (REPO / ".gitignore").read_text().split()
    for entry in (".local/", ".venv/", ".tools/"):
        assert entry in ignored


def test_makefile_has_the_documented_targets() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target in ("install", "lock", "up", "down", "status", "test", "lint", "clean"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"make {target} is missing"


def test_code_is_ruff_clean() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    check = subprocess.run([ruff, "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run([ruff, "format", "--check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout


# ---------------------------------------------------------------- docker-compose.yaml vs the local stack

COMPOSE = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
LIBRARY_ENV = {
    "AWS_ENDPOINT_URL_S3",
    "MLFLOW_S3_ENDPOINT_URL",
    "GX_ANALYTICS_ENABLED",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION",
    "AIRFLOW_CONN_AWS_DEFAULT",
}


def _flags(argv: list[str]) -> dict[str, str]:
    return {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("-")}


def test_compose_has_the_stack_services_on_loopback() -> None:
    services = COMPOSE["services"]
    assert {"s3", "mlflow", "airflow"} <= set(services)
    defaults = load_settings({})
    expected_ports = {
        "s3": defaults.s3_endpoint_url.rsplit(":", 1)[1],
        "mlflow": defaults.mlflow_tracking_uri.rsplit(":", 1)[1],
        "airflow": defaults.airflow_api_url.rsplit(":", 1)[1],
    }
    for name, port in expected_ports.items():
        assert services[name]["ports"] == [f"127.0.0.1:{port}:{port}"]


@pytest.mark.parametrize("service", ["s3", "mlflow", "airflow"])
def test_compose_environment_names_are_platform_settings(service: str) -> None:
    known = {name for name, _default, _help in describe_settings()} | LIBRARY_ENV
    env = COMPOSE["services"][service].get("environment", {})
    unknown = sorted(k for k in env if not k.startswith("AIRFLOW__") and k not in known)
    assert not unknown, f"{service} sets variables the platform does not know: {unknown}"
    if env:
        load_settings({k: str(v) for k, v in env.items()})  # values parse, too


def test_compose_commands_match_the_local_stack() -> None:
    stack = LocalStack(Settings(), echo=lambda _line: None)
    compose_s3 = COMPOSE["services"]["s3"]["command"]
    local_s3 = stack.s3_service().argv
    assert Path(local_s3[0]).name == compose_s3[0] == "moto_server"
    assert _flags(compose_s3)["-p"] == _flags(local_s3)["-p"]

    compose_mlflow = COMPOSE["services"]["mlflow"]["command"]
    local_mlflow = stack.mlflow_service().argv
    assert compose_mlflow[:2] == ["mlflow", "server"] and local_mlflow[1] == "server"
    compose_flags, local_flags = _flags(compose_mlflow), _flags(local_mlflow)
    for flag in ("--port", "--artifacts-destination", "--workers"):
        assert compose_flags[flag] == local_flags[flag], flag
    assert compose_flags["--backend-store-uri"].startswith("sqlite:") == local_flags["--backend-store-uri"].startswith(
        "sqlite:"
    )

    compose_airflow_env = COMPOSE["services"]["airflow"]["environment"]
    local_airflow_env = stack.airflow_services()[0].env
    for key in (
        "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__CORE__PARALLELISM",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL",
        "AIRFLOW__API__PORT",
    ):
        assert compose_airflow_env[key] == local_airflow_env[key], key
    assert shlex.join(COMPOSE["services"]["airflow"]["command"]) == "standalone"
