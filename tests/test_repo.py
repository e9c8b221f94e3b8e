"""Repository hygiene: the lock, the CI entry point, lint, and docker-compose consistent with the local stack."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import training_lib.local.environment as environment_module
import training_lib.local.services as services_module
from training_lib.config import StackSettings, describe_settings, load_stack_settings
from training_lib.local.environment import AIRFLOW_COMPONENTS
from training_lib.local.infrastructure import write_redis_config
from training_lib.local.processes import Service
from training_lib.local.stack import LocalStack

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


def _declared() -> list[Requirement]:
    """Every requirement pyproject.toml declares: the runtime ones and those of each extra."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {}).values()
    return [Requirement(line) for line in [*project["dependencies"], *(line for extra in extras for line in extra)]]


def test_pyproject_declares_what_the_lock_pins() -> None:
    pins = {canonicalize_name(name): Version(version) for name, version in _lock().items()}
    declared = _declared()
    assert declared, "pyproject.toml declares no dependencies"
    for requirement in declared:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} (pyproject.toml) is not pinned in requirements.txt"
        assert requirement.specifier, f"{requirement} (pyproject.toml): declare the range the code works with"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{requirement} (pyproject.toml) does not admit {name}=={pins[name]} pinned in requirements.txt"
        )


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(path: Path) -> set[str]:
    """Absolute module names a file imports, leaving out ``if TYPE_CHECKING:`` blocks (never run)."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and _is_type_checking(block.test)
        for statement in block.body
        for node in ast.walk(statement)
    }
    modules = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def _providers(module: str, candidates: list[str]) -> set[str]:
    """Of the distributions sharing a top-level package (airflow, mlflow), those holding ``module`` itself,
    else its closest parent package."""
    files = {name: {file.as_posix() for file in metadata.distribution(name).files or []} for name in candidates}
    parts = module.split(".")
    while parts:
        stem = "/".join(parts)
        holders = {name for name, held in files.items() if {f"{stem}.py", f"{stem}/__init__.py"} & held}
        if holders:
            return holders
        parts.pop()
    return set(candidates)


def test_pyproject_declares_every_distribution_the_code_imports() -> None:
    declared = {canonicalize_name(requirement.name) for requirement in _declared()}
    # A declared distribution that ships no code of its own (apache-airflow) stands for what it requires outright:
    # apache-airflow-core and apache-airflow-task-sdk (airflow.sdk), at the versions it pins.
    for name in list(declared):
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:  # not installed: the lock test above names it
            continue
        if not any(file.suffix == ".py" for file in distribution.files or []):
            required = [Requirement(line) for line in distribution.requires or []]
            declared |= {canonicalize_name(requirement.name) for requirement in required if not requirement.marker}
    # Airflow puts the dags/ and plugins/ folders on sys.path: their modules import each other by bare name.
    local = {"training_lib"} | {
        path.stem for folder in ("dags", "plugins") for path in (REPO / folder).iterdir() if path.suffix == ".py"
    }
    importers: dict[str, set[str]] = {}
    for folder in ("training_lib", "dags", "plugins"):
        for path in (REPO / folder).rglob("*.py"):
            for module in _runtime_imports(path):
                importers.setdefault(module, set()).add(str(path.relative_to(REPO)))
    distributions = metadata.packages_distributions()
    undeclared = []
    for module, files in sorted(importers.items()):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in local:
            continue
        candidates = distributions.get(top)
        assert candidates, f"{module} (imported by {sorted(files)}) comes from no installed distribution"
        providers = {canonicalize_name(name) for name in _providers(module, candidates)}
        if not providers & declared:
            undeclared.append(f"{module} ({' or '.join(sorted(providers))}), imported by {sorted(files)}")
    assert not undeclared, "pyproject.toml does not declare:\n" + "\n".join(undeclared)


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
    for target in ("install", "lock", "up", "down", "status", "test", "test-fast", "lint", "clean"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"make {target} is missing"


def test_code_is_ruff_clean() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    check = subprocess.run([ruff, "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run([ruff, "format", "--check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout


# ---------------------------------------------------------------- docker-compose.yaml vs the local distributed stack
#
# docker-compose.yaml is the scale-out topology in containers; `make up-distributed` (training_lib/local/stack.py with
# FRAUD_CELERY_WORKERS=N) is the same topology as local processes. These tests build the local one in-process
# (nothing is started) and compare: services, published ports, commands, environment variable names and values,
# connection URLs. Every deliberate difference is listed below with its reason.

COMPOSE = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
IMAGE_ROOT = "/opt/fraud"  # the project root inside the platform image (Dockerfile): training_lib's PROJECT_ROOT
AIRFLOW_LOG_VOLUME = "airflow-logs"

# The one deliberate substitution: S3 is the moto server locally and MinIO in containers (persistent storage).
SUBSTITUTED = {"s3": "minio"}
# MinIO serves S3 on its own default port inside the compose network (its health check, `mc ready local`,
# expects it there) and is published on the local stack's S3 port; every other service keeps the local port.
CONTAINER_PORTS = {"minio": 9000}
ONE_SHOTS = {"create-bucket", "airflow-init"}  # ensure_bucket() and `airflow db migrate`: steps of the local `up`
PUBLISHED = {"minio", "mlflow", "airflow-api-server"}  # PostgreSQL and Redis stay inside the compose network

# Environment names a compose service may set that are neither AIRFLOW__* nor platform settings (describe_settings).
LIBRARY_ENV = {
    "AWS_ENDPOINT_URL_S3": "boto3 and pyarrow follow it to the S3 endpoint (local.environment.platform_env)",
    "MLFLOW_S3_ENDPOINT_URL": "MLflow's S3 artifact store follows it (platform_env)",
    "GX_ANALYTICS_ENABLED": "Great Expectations telemetry off (platform_env)",
    "PYTHONUNBUFFERED": "log lines reach the log at once (platform_env)",
    "AIRFLOW_CONN_AWS_DEFAULT": "Airflow's aws_default connection (airflow_env)",
    "MLFLOW_BACKEND_STORE_URI": "mlflow server's backend store, by environment to keep the password off argv",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "mlflow server's job runner off (StackServices.mlflow_service)",
    "POSTGRES_USER": "official postgres image: the role it creates on first start",
    "POSTGRES_PASSWORD": "official postgres image: that role's password",
    "POSTGRES_DB": "official postgres image: the database it creates on first start",
    "POSTGRES_INITDB_ARGS": "official postgres image: initdb options (the local stack's encoding and locale)",
    "REDISCLI_AUTH": "redis-cli's password, for the Redis health check",
    "MINIO_ROOT_USER": "MinIO's credentials: the platform's S3 key id",
    "MINIO_ROOT_PASSWORD": "MinIO's credentials: the platform's S3 secret",
    "DUMB_INIT_SETSID": "official Airflow image: SIGTERM to the Celery worker only, for a warm shutdown",
}
WORKER_ONLY_ENV = {"DUMB_INIT_SETSID"}

# What the local Airflow environment sets that compose deliberately does not.
LOCAL_ONLY_ENV = {
    "AIRFLOW_HOME": "the image's own AIRFLOW_HOME (/opt/airflow); locally a folder of the state directory",
    "FRAUD_STATE_DIR": "the local stack's PID files, logs and generated secrets; containers keep state in volumes",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": (
        "compose keeps Airflow's default path, which the Dockerfile links into the airflow-auth volume "
        "(a *_PASSWORDS_FILE path in docker-compose.yaml trips tests/test_secrets.py's name rule)"
    ),
}
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - of a container: compose publishes its ports on 127.0.0.1 only
# Set in both with different values, on purpose.
IN_CONTAINER_ENV = {
    "AIRFLOW__API__HOST": (ALL_INTERFACES, "all interfaces of its container; the port is published on 127.0.0.1 only"),
}
IMAGE_PATH_ENV = ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER")  # <repo>/x locally, /opt/fraud/x
BROWSER_URL_ENV = {"AIRFLOW__API__BASE_URL": "the links the UI gives the browser: the published port on the host"}
SECRET_ENV = (
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "FRAUD_CARD_TOKEN_KEY",
    "AWS_SECRET_ACCESS_KEY",
)
# Variables compose must be given (`${NAME:?}`): the header of docker-compose.yaml generates exactly these.
REQUIRED_VARIABLES = {
    "FRAUD_CARD_TOKEN_KEY",
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
}
# Settings of the Airflow side only (x-airflow-env), not in the MLflow server's environment: the card-token key
# (only tasks tokenise card numbers: the secret stays out of the MLflow container), the number of Celery workers,
# and the Airflow API URL (MLflow never calls Airflow).
AIRFLOW_SIDE_SETTINGS = ("FRAUD_CARD_TOKEN_KEY", "FRAUD_CELERY_WORKERS", "FRAUD_AIRFLOW_API_URL")
# Celery worker options only several workers on one host need.
WORKER_LOCAL_ONLY_FLAGS = {
    "--celery-hostname": "distinct node names on one host; each container has its own hostname (celery@<hostname>)",
    "--pid": "Celery's PID file, one per worker in a shared folder; each container has its own filesystem",
}

_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def _resolve(value: object) -> str:
    """A compose value as compose interpolates it when nothing is set: defaults used, a required one as <NAME>."""

    def replace(match: re.Match[str]) -> str:
        if match.group() == "$$":
            return "$"
        name, op = match["name"], match["op"]
        assert op, f"${{{name}}} has neither a default nor `:?` (compose would substitute an empty string)"
        return match["arg"] if op.endswith("-") else f"<{name}>"

    return _VARIABLE.sub(replace, str(value))


def _env(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: environment as a mapping, please"
    return {name: _resolve(value) for name, value in env.items()}


def _options(argv: list[str]) -> dict[str, str | bool]:
    """--option value / --flag pairs of a command line (a flag maps to True)."""
    options: dict[str, str | bool] = {}
    for i, arg in enumerate(argv):
        if arg.startswith("-"):
            following = argv[i + 1] if i + 1 < len(argv) else None
            options[arg] = following if following is not None and not following.startswith("-") else True
    return options


def _after_supervise(argv: list[str]) -> list[str]:
    """The supervised command of a local Airflow service (``python -m training_lib.local.supervise -- <argv>``)."""
    assert argv[1:4] == ["-m", "training_lib.local.supervise", "--"], argv
    return argv[4:]


def _counterpart(local_name: str) -> str:
    if local_name.startswith("airflow-worker"):
        return "airflow-worker"  # one scalable service for the local stack's numbered workers
    return SUBSTITUTED.get(local_name, local_name)


def _published(service: str) -> list[tuple[str, int, int]]:
    published = []
    for entry in SERVICES[service].get("ports", []):
        host, host_port, container_port = str(entry).rsplit(":", 2)
        published.append((host, int(host_port), int(container_port)))
    return published


@dataclass
class LocalTopology:
    settings: StackSettings
    services: dict[str, Service]
    redis_conf: dict[str, str]

    def port_owner(self, port: int) -> str:
        (name,) = [name for name, service in self.services.items() if service.port == port]
        return name


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> LocalTopology:
    """The local distributed topology, as `make up-distributed` builds it, without starting anything."""
    state_dir = tmp_path_factory.mktemp("distributed-state")
    settings = load_stack_settings({"FRAUD_CELERY_WORKERS": "2", "FRAUD_STATE_DIR": str(state_dir)})
    with pytest.MonkeyPatch.context() as patch:
        for module in (environment_module, services_module):  # only what the stack sets, not this shell's
            patch.setattr(module, "process_environment", dict)
        patch.setattr(services_module, "postgres_bin", lambda name: name)  # the OS packages are not needed here
        patch.setattr(services_module, "redis_bin", lambda: "redis-server")
        stack = LocalStack(settings, echo=lambda _line: None)
        services = {service.name: service for group in stack.catalog.groups().values() for service in group}
        stack.paths.create()
        write_redis_config(stack.paths, settings.redis_port)
    directives = (line.split(" ", 1) for line in (stack.paths.redis / "redis.conf").read_text().splitlines())
    redis_conf = {key: value.strip('"') for key, value in directives}
    return LocalTopology(settings, services, redis_conf)


def _endpoint(local: LocalTopology, url: str) -> tuple:
    """A local loopback URL as it must read in compose: the counterpart service's name and container port."""
    parts = urlsplit(url)
    assert parts.hostname == environment_module.LOOPBACK, url
    service = _counterpart(local.port_owner(parts.port))
    return parts.scheme, parts.username, service, CONTAINER_PORTS.get(service, parts.port), parts.path, parts.query


def _server_secret(service: str) -> str | None:
    """The password a compose server is started with (what its clients' URLs must carry)."""
    if service == "postgres":
        return _env("postgres")["POSTGRES_PASSWORD"]
    if service == "redis":
        return _resolve(_options(SERVICES["redis"]["command"])["--requirepass"])
    return None


def _assert_same_endpoint(local: LocalTopology, name: str, local_url: str, compose_url: str) -> None:
    parts = urlsplit(compose_url)
    expected = _endpoint(local, local_url)
    assert (parts.scheme, parts.username, parts.hostname, parts.port, parts.path, parts.query) == expected, name
    assert parts.password == _server_secret(expected[2]), f"{name}: not the password {expected[2]} is given"


def _needed(local_env: dict[str, str]) -> set[str]:
    """Local names compose must set too: all but platform settings left at their default (training_lib reads the
    same default in a container), and those whose value is a loopback URL (in a container that is itself)."""
    defaults = StackSettings().env()
    return {
        name
        for name, value in local_env.items()
        if name not in LOCAL_ONLY_ENV and (defaults.get(name) != value or environment_module.LOOPBACK in value)
    }


def _assert_environment_matches(local: LocalTopology, local_env: dict[str, str], service: str, skip=()) -> None:
    raw = SERVICES[service]["environment"]
    compose_env = _env(service)
    needed = _needed(local_env) - set(skip)
    missing = sorted(needed - set(compose_env))
    assert not missing, f"{service} lacks what the local stack sets: {missing}"
    for name in sorted(needed):
        local_value, value = local_env[name], compose_env[name]
        if name in SECRET_ENV:
            assert re.fullmatch(r"\$\{\w+:\?\}", str(raw[name])), f"{name}: a required variable, never a value"
        elif name in IMAGE_PATH_ENV:
            assert value == f"{IMAGE_ROOT}/{Path(local_value).relative_to(REPO).as_posix()}", name
        elif name == "AIRFLOW__LOGGING__BASE_LOG_FOLDER":
            assert value in _mounts(service, AIRFLOW_LOG_VOLUME), f"{name}: not the shared log volume"
        elif name in IN_CONTAINER_ENV:
            assert value == IN_CONTAINER_ENV[name][0], name
        elif name == "AIRFLOW_CONN_AWS_DEFAULT":
            local_conn, conn = json.loads(local_value), json.loads(value)
            assert set(conn) == set(local_conn) and set(conn["extra"]) == set(local_conn["extra"])
            assert (conn["conn_type"], conn["login"]) == (local_conn["conn_type"], local_conn["login"])
            assert conn["password"] == _env("minio")["MINIO_ROOT_PASSWORD"]
            assert conn["extra"]["region_name"] == local_conn["extra"]["region_name"]
            assert conn["extra"]["endpoint_url"] == compose_env["FRAUD_S3_ENDPOINT_URL"]
            _assert_same_endpoint(local, name, local_conn["extra"]["endpoint_url"], conn["extra"]["endpoint_url"])
        elif environment_module.LOOPBACK in local_value and name not in BROWSER_URL_ENV:
            _assert_same_endpoint(local, name, local_value, value)
        else:
            assert value == local_value, f"{name}: compose {value!r}, local stack {local_value!r}"


def _mounts(service: str, volume: str) -> set[str]:
    return {
        str(entry).split(":")[1] for entry in SERVICES[service].get("volumes", []) if str(entry).split(":")[0] == volume
    }


def test_every_local_service_has_its_compose_counterpart_on_loopback(local: LocalTopology) -> None:
    counterparts = {_counterpart(name) for name in local.services}
    assert set(SERVICES) == counterparts | ONE_SHOTS, "compose services are the local ones plus the one-shot steps"
    assert {_counterpart(f"airflow-{component}") for component in AIRFLOW_COMPONENTS} <= set(SERVICES)
    local_ports = {_counterpart(name): service.port for name, service in local.services.items() if service.port}
    assert set(local_ports) == {"postgres", "redis", "minio", "mlflow", "airflow-api-server"}
    for service in SERVICES:
        published = _published(service)
        assert (service in PUBLISHED) == bool(published), f"{service}: published {published}"
        for host, host_port, container_port in published:
            assert host == "127.0.0.1", f"{service} is published on {host}, not on loopback only"
            assert host_port == local_ports[service], f"{service}: host port {host_port}, local {local_ports[service]}"
            assert container_port == CONTAINER_PORTS.get(service, local_ports[service]), service
    defaults = load_stack_settings({})
    assert {local_ports[s] for s in PUBLISHED} == {
        urlsplit(url).port
        for url in (defaults.platform.s3_endpoint_url, defaults.platform.mlflow_tracking_uri, defaults.airflow_api_url)
    }, "the host's default settings reach the published services"
    # the worker scales: no fixed name or port, and `up` starts as many as the local distributed stack
    worker = SERVICES["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker
    local_workers = [name for name in local.services if name.startswith("airflow-worker")]
    assert int(_resolve(worker["deploy"]["replicas"])) == len(local_workers) == local.settings.celery_workers


@pytest.mark.parametrize("component", AIRFLOW_COMPONENTS)
def test_compose_airflow_component_runs_the_local_command(local: LocalTopology, component: str) -> None:
    local_argv = _after_supervise(local.services[f"airflow-{component}"].argv)
    compose = SERVICES[f"airflow-{component}"]
    assert Path(local_argv[0]).name == "airflow"
    assert [_resolve(arg) for arg in compose["command"]] == ["airflow", *local_argv[1:]]
    assert compose["restart"] == "unless-stopped", "what training_lib.local.supervise does locally"
    assert compose["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
    assert SERVICES["airflow-init"]["command"] == ["airflow", "db", "migrate"]  # what `up` runs before them


def test_compose_worker_runs_the_local_worker_command(local: LocalTopology) -> None:
    compose_argv = [_resolve(arg) for arg in SERVICES["airflow-worker"]["command"]]
    assert compose_argv[:3] == ["airflow", "celery", "worker"]
    compose_options = _options(compose_argv)
    assert compose_options["--skip-serve-logs"] is True
    assert compose_options["--concurrency"] == str(local.settings.celery_worker_concurrency)
    for name in (name for name in local.services if name.startswith("airflow-worker")):
        local_argv = _after_supervise(local.services[name].argv)
        assert Path(local_argv[0]).name == "airflow" and local_argv[1:3] == ["celery", "worker"]
        local_options = _options(local_argv)
        assert set(WORKER_LOCAL_ONLY_FLAGS) <= set(local_options), "stale entry in WORKER_LOCAL_ONLY_FLAGS"
        assert compose_options == {k: v for k, v in local_options.items() if k not in WORKER_LOCAL_ONLY_FLAGS}
    assert SERVICES["airflow-worker"]["restart"] == "unless-stopped"


def test_compose_mlflow_runs_the_local_server(local: LocalTopology) -> None:
    service = local.services["mlflow"]
    compose_argv = [_resolve(arg) for arg in SERVICES["mlflow"]["command"]]
    assert Path(service.argv[0]).name == "mlflow" and service.argv[1] == "server"
    assert compose_argv[:2] == ["mlflow", "server"]
    local_options, compose_options = _options(service.argv), _options(compose_argv)
    for flag in ("--port", "--artifacts-destination", "--workers"):
        assert compose_options[flag] == local_options[flag], flag
    assert compose_options["--host"] == ALL_INTERFACES  # inside its container; published on loopback only
    assert _published("mlflow") == [("127.0.0.1", service.port, int(compose_options["--port"]))]
    # the backend store by environment in both: PostgreSQL database `mlflow`, psycopg2
    assert "--backend-store-uri" not in local_options and "--backend-store-uri" not in compose_options
    _assert_environment_matches(local, service.env, "mlflow", skip=AIRFLOW_SIDE_SETTINGS)


def test_compose_infrastructure_is_configured_like_the_local_one(local: LocalTopology) -> None:
    postgres_argv = local.services["postgres"].argv
    local_settings = [postgres_argv[i + 1] for i, arg in enumerate(postgres_argv) if arg == "-c"]
    command = SERVICES["postgres"]["command"]
    assert command[0] == "postgres"
    assert [command[i + 1] for i, arg in enumerate(command) if arg == "-c"] == local_settings
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    # Redis: a password and no persistence, as the local stack's redis.conf
    redis_options = _options([_resolve(arg) for arg in SERVICES["redis"]["command"]])
    assert local.redis_conf["requirepass"] and redis_options["--requirepass"] == "<REDIS_PASSWORD>"
    for directive in ("save", "appendonly"):
        assert redis_options[f"--{directive}"] == local.redis_conf[directive], directive


def test_compose_airflow_environment_matches_the_local_distributed_one(local: LocalTopology) -> None:
    airflow = [name for name in SERVICES if name.startswith("airflow-")]
    shared = {k: v for k, v in SERVICES["airflow-scheduler"]["environment"].items()}
    for name in airflow:  # one environment for every Airflow container (the worker adds its shutdown switch)
        env = {k: v for k, v in SERVICES[name]["environment"].items() if k not in WORKER_ONLY_ENV}
        assert env == shared, f"{name} has its own Airflow environment"
    for name in LOCAL_ONLY_ENV:
        assert name not in shared, f"{name} is listed as local-only but compose sets it"
    local_env = local.services["airflow-scheduler"].env
    assert all(local.services[f"airflow-{c}"].env == local_env for c in AIRFLOW_COMPONENTS)
    assert set(LOCAL_ONLY_ENV) <= set(local_env), "stale entry in LOCAL_ONLY_ENV"
    for service in airflow:
        if service != "airflow-init":
            _assert_environment_matches(local, local_env, service)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_compose_environment_names_are_known(service: str) -> None:
    known = {name for name, _default, _help in describe_settings()} | set(LIBRARY_ENV)
    env = _env(service)
    unknown = sorted(k for k in env if not k.startswith("AIRFLOW__") and k not in known)
    assert not unknown, f"{service} sets variables the platform does not know: {unknown}"
    load_stack_settings(env)  # and the platform and stack settings among them parse


def test_compose_connection_urls_use_the_local_drivers_databases_and_role(local: LocalTopology) -> None:
    local_env, env = local.services["airflow-scheduler"].env, _env("airflow-scheduler")
    expected = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": ("postgresql+psycopg2", "postgres", "/airflow"),
        "AIRFLOW__CELERY__RESULT_BACKEND": ("db+postgresql+psycopg2", "postgres", "/airflow"),
        "AIRFLOW__CELERY__BROKER_URL": ("redis", "redis", "/0"),
    }
    urls = [(name, local_env[name], env[name], *want) for name, want in expected.items()]
    urls.append(
        (
            "MLFLOW_BACKEND_STORE_URI",
            local.services["mlflow"].env["MLFLOW_BACKEND_STORE_URI"],
            _env("mlflow")["MLFLOW_BACKEND_STORE_URI"],
            "postgresql+psycopg2",
            "postgres",
            "/mlflow",
        )
    )
    for name, local_url, compose_url, scheme, server, path in urls:
        for url in (local_url, compose_url):
            parts = urlsplit(url)
            assert (parts.scheme, parts.path) == (scheme, path), f"{name}: {parts.scheme}://…{parts.path}"
            assert (parts.username or None) == (environment_module.POSTGRES_USER if server == "postgres" else None), (
                name
            )
        assert urlsplit(compose_url).hostname == server
        _assert_same_endpoint(local, name, local_url, compose_url)
    # one role owning the databases the local stack creates: POSTGRES_DB plus the init script's
    postgres_env = _env("postgres")
    assert postgres_env["POSTGRES_USER"] == environment_module.POSTGRES_USER
    (init_script,) = [
        entry.split(":")[0] for entry in SERVICES["postgres"]["volumes"] if ":/docker-entrypoint-initdb.d/" in entry
    ]
    created = re.findall(r"(?im)^\s*CREATE DATABASE \"?(\w+)\"?", (REPO / init_script).read_text())
    assert sorted([postgres_env["POSTGRES_DB"], *created]) == sorted(environment_module.POSTGRES_DATABASES)


def test_compose_secrets_are_required_variables_never_values() -> None:
    text = (REPO / "docker-compose.yaml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?\}", text))
    assert required == REQUIRED_VARIABLES
    assert not re.findall(r"\$\{(\w+):\?[^}]", text), "`:?` without a message (a message would read as a value)"
    defaulted = set(re.findall(r"\$\{(\w+):?-", text))
    assert not defaulted & REQUIRED_VARIABLES, "a secret with a default value"
    header = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    generated = set(re.search(r"for name in ([\w\s\\]+?); do", header).group(1).replace("\\", " ").split())
    assert generated == REQUIRED_VARIABLES, "the header's .env recipe names exactly the required variables"


def test_compose_task_logs_and_login_live_on_shared_volumes(local: LocalTopology) -> None:
    log_folder = _env("airflow-scheduler")["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]
    for service in (name for name in SERVICES if name.startswith("airflow-") and name != "airflow-init"):
        assert _mounts(service, AIRFLOW_LOG_VOLUME) == {log_folder}, f"{service}: task logs not on the shared volume"
    assert AIRFLOW_LOG_VOLUME in COMPOSE["volumes"]
    # Airflow's default password file (AIRFLOW_HOME of the image) links into a volume of the API server
    local_file = Path(local.services["airflow-api-server"].env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    link = re.search(r"ln -s (\S+) \\\s+(\S+)", (REPO / "Dockerfile").read_text())
    assert link, "the Dockerfile links the simple auth manager's passwords file into a volume"
    target, default = PurePosixPath(link.group(1)), PurePosixPath(link.group(2))
    assert default == PurePosixPath("/opt/airflow") / local_file.name and target.name == local_file.name
    api_mounts = {str(entry).split(":")[1] for entry in SERVICES["airflow-api-server"]["volumes"]}
    assert str(target.parent) in api_mounts


def test_compose_dependencies_wait_for_health() -> None:
    for name, service in SERVICES.items():
        if name in ONE_SHOTS:
            assert "restart" not in service, f"{name} is a one-shot step"
        else:
            assert service.get("restart") == "unless-stopped" and "healthcheck" in service, name
        for dependency, how in service.get("depends_on", {}).items():
            condition = how["condition"]
            if dependency in ONE_SHOTS:
                assert condition == "service_completed_successfully", (name, dependency)
            else:
                assert condition == "service_healthy" and "healthcheck" in SERVICES[dependency], (name, dependency)


def test_dockerfile_builds_the_locked_airflow_with_the_project_root_in_the_image() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    (base,) = re.findall(r"(?m)^FROM (\S+)", dockerfile)
    python = re.search(r"--python-version (\d+\.\d+)", (REPO / "requirements.txt").read_text()).group(1)
    assert base == f"apache/airflow:{_lock()['apache-airflow']}-python{python}"
    assert re.search(r"(?m)^RUN pip install .*-r \S*requirements\.txt", dockerfile)
    for folder in ("training_lib", "dags", "plugins", "include"):
        assert re.search(rf"(?m)^COPY .*\b{folder} {IMAGE_ROOT}/{folder}$", dockerfile), folder
    env = _env("airflow-scheduler")
    assert env["AIRFLOW__CORE__DAGS_FOLDER"].startswith(IMAGE_ROOT + "/")
