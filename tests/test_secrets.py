"""No credentials in the repository: a regex secret scan of every git-tracked file (no stack needed).

What counts as a committed secret (:data:`RULES`, one regex each, reported as ``file:line``):

* an AWS access key id (``AKIA``/``ASIA``/... and 16 upper-case letters or digits);
* a PEM private key (``-----BEGIN ... PRIVATE KEY-----``);
* a JSON Web Token (three base64url parts, the first two starting ``eyJ``, i.e. ``{"``);
* a Fernet key (32 bytes as urlsafe base64: 43 characters and ``=``), Airflow's ``fernet_key``;
* a URI with a password in it (``postgresql://user:password@host``, an Airflow connection URI);
* an assignment of a literal to a name that says password, secret, private/access/API key or credentials
  (Python, JSON, YAML, .env, shell alike), whatever the value looks like, unless it is a placeholder or a
  reference (``${VAR}``, ``<password>``, ``***``, ``{...}``); and a literal assigned to a ``token`` name
  when it looks random (long, letters and digits mixed);
* a tracked ``.env`` file (``.env``, ``.env.local``, ``prod.env``; ``.env.example`` is allowed).

Deliberately fake values are allowed per file in :data:`ALLOWED`, each with the reason. A regex scanner is
enough for a repository this size and has no dependency; ``detect-secrets`` (PyPI) adds entropy plugins and
a baseline file, and would be the choice if the scan had to cover git history or many repositories.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

_CREDENTIAL_NAME = (
    r"[\w.-]*?(?:passw(?:or)?d|passwd|secret|private[_-]?key|access[_-]?key|api[_-]?key|credentials?|fernet[_-]?key"
    r"|token[_-]?key|signing[_-]?key)"
    r"[\w.-]*"
)
_TOKEN_NAME = r"[\w.-]*?token[\w.-]*"
_QUOTED_VALUE = (
    r"""\s*["']?\s*[:=]\s*[rbuf]?(?P<quote>["'])(?P<value>[^"'\n]*)(?P=quote)"""  # name = "value" / "name": "value"
)
_BARE_VALUE = r"""\s*[:=][ \t]*(?P<value>[^\s"'#,}\]]+)"""  # NAME=value / name: value (YAML, .env, shell)

RULES: dict[str, re.Pattern[str]] = {
    "AWS access key id": re.compile(
        r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}(?![A-Z0-9])"
    ),
    "private key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "JWT": re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "Fernet key": re.compile(r"(?<![\w-])[A-Za-z0-9_-]{43}=(?![\w=-])"),
    "URI with a password": re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@'\"]+:(?P<value>[^\s@/'\"]+)@"),
    "credential literal": re.compile(rf"(?i)\b{_CREDENTIAL_NAME}['\"]?{_QUOTED_VALUE}"),
    "credential value": re.compile(rf"(?i)\b{_CREDENTIAL_NAME}{_BARE_VALUE}"),
    "token literal": re.compile(rf"(?i)\b{_TOKEN_NAME}['\"]?{_QUOTED_VALUE}"),
}
BARE_VALUE_SUFFIXES = (".yaml", ".yml", ".env", ".ini", ".cfg", ".toml", ".sh", "Makefile", "Dockerfile", ".ci/run")
# Not a secret: empty, a reference to somewhere else, a template, a masked or elided value, a Python literal.
PLACEHOLDER = re.compile(
    r"""^(?:|\$\{?\w+\}?.*|<[^>]*>|\{\{?[^}]*\}?\}|%\(\w+\)s|\*+|x+|\.\.\.|…|None|null|true|false|\w+\(.*|
    os\.environ.*|settings\..*|self\..*|env\[.*|[\w.]+\.(?:secret|password|key|token)\w*)$""",
    re.VERBOSE | re.IGNORECASE,
)

# Deliberately fake values, per file. Each needs a reason; nothing else is allowed.
ALLOWED: dict[str, dict[str, str]] = {
    "docker-compose.yaml": {
        # the local stack's dummy S3 key id, kept as the compose default so that host tools reach MinIO alike
        "fraud-local": "default S3 key id of the compose MinIO (its secret is a required variable), not AWS",
    },
    "tests/test_config.py": {
        "secret": "a fake AWS secret passed to load_settings() to test explicit credentials",
        "s3cr3t": "a fake secret whose redaction test_redacted_hides_secrets checks",
    },
    "benchmarks/bench_retrain.py": {
        "benchmark-only-key": "card-token key of the benchmark's throw-away stack on synthetic data",
    },
    "benchmarks/bench_scoring.py": {
        "benchmark-only-key": "card-token key of the benchmark's throw-away stack on synthetic data",
    },
    "benchmarks/bench_distributed.py": {
        "benchmark-only-key": "card-token key of the benchmark's throw-away stack on synthetic data",
    },
    "benchmarks/bench_monitoring.py": {
        "benchmark-only-key": "card-token key of the benchmark's throw-away stack on synthetic data",
    },
    "tests/scoring/test_batch.py": {
        "scoring-unit-test-key": "the HMAC key of a unit test on synthetic cards, never used outside the test",
    },
    "tests/end_to_end/test_distributed.py": {
        # both stacks of the test must tokenize alike, so the key is fixed
        "distributed-test-token-key-0123456789": "the HMAC key of two throw-away test stacks on synthetic data",
    },
    "tests/end_to_end/test_batch_score.py": {
        # a fixed card-token key of that module's private test stack, so the test can recompute the tokens
        "test-token-key-0123456789": "the HMAC key of a throw-away test stack, never used outside the test",
    },
    "tests/test_secrets.py": {
        # the scanner's own self-tests build their planted secrets at run time (see FAKE_* below)
    },
}


@dataclass(frozen=True)
class SecretFinding:
    path: str
    line: int
    rule: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.excerpt}"


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _looks_random(value: str) -> bool:
    classes = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]"))
    return len(value) >= 16 and classes >= 2 and bool(re.search(r"[0-9]", value)) and _entropy(value) >= 3.5


def _masked(text: str) -> str:
    """The line with long runs of key-like characters cut, so a report does not repeat a secret."""
    return re.sub(r"([A-Za-z0-9_/+=-]{4})[A-Za-z0-9_/+=-]{8,}", r"\1…", text.strip())[:160]


def scan_text(text: str, path: str) -> list[SecretFinding]:
    """Findings of every rule in one file's text (``path`` as it should be reported and allow-listed)."""
    allowed = ALLOWED.get(path, {})
    bare_values = path.endswith(BARE_VALUE_SUFFIXES) or Path(path).name.startswith(".env")
    findings = []
    for number, line in enumerate(text.splitlines(), start=1):
        for rule, pattern in RULES.items():
            if rule == "credential value" and not bare_values:
                continue
            for match in pattern.finditer(line):
                value = match.groupdict().get("value")
                value = match.group() if value is None else value.strip()
                if value in allowed:
                    continue
                if rule in {"credential literal", "credential value", "URI with a password"} and (
                    PLACEHOLDER.match(value) or len(value) < 4
                ):
                    continue
                if rule == "token literal" and not _looks_random(value):
                    continue
                findings.append(SecretFinding(path, number, rule, _masked(line)))
    return findings


def scan_file(path: Path, root: Path) -> list[SecretFinding]:
    relative = path.relative_to(root).as_posix()
    findings = scan_text(path.read_bytes().decode("utf-8", "replace"), relative)
    name = path.name
    if (name == ".env" or name.startswith(".env.") or name.endswith(".env")) and name != ".env.example":
        findings.append(SecretFinding(relative, 0, ".env file", "environment files stay out of git"))
    return findings


def tracked_files(root: Path = REPO) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    return [root / name for name in listed.decode().split("\0") if name and (root / name).is_file()]


# --------------------------------------------------------------------------- the repository


def test_no_tracked_file_holds_a_credential() -> None:
    files = tracked_files()
    assert len(files) > 20 and any(f.name == "stack.py" for f in files)  # it did list the repository
    this_scanner = Path(__file__).resolve()  # its rules and examples are fake secrets by design
    findings = [finding for path in files if path.resolve() != this_scanner for finding in scan_file(path, REPO)]
    assert not findings, "\n".join(map(str, findings))


def test_every_allowed_value_is_still_there() -> None:
    """An allow-list entry whose value is gone is stale: remove it rather than keep an exception around."""
    for path, values in ALLOWED.items():
        text = (REPO / path).read_text()
        assert all(value in text for value in values), (path, [v for v in values if v not in text])


# --------------------------------------------------------------------------- the scanner can fail

# Planted values are assembled at run time so this file itself holds no secret-shaped literal.
FAKE_AKIA = "AKIA" + "IOSFODNN7" + "EXAMPLE"  # AWS's documented example key id
FAKE_JWT = ".".join(["eyJhbGciOiJIUzI1NiJ9", "eyJzdWIiOiJhZG1pbiJ9", "c2lnbmF0dXJlLXBsYWNlaG9sZGVy"])
FAKE_FERNET = "q0Ve1dT8kzJ5mQbB9yXo3rLcA2sWnGfHuEiPjKtZvN4" + "="


def test_planted_aws_key_is_reported_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    planted = tmp_path / "deploy" / "settings.py"
    planted.write_text(f'REGION = "us-east-1"\nKEY_ID = "{FAKE_AKIA}"\n')
    (finding,) = scan_file(planted, tmp_path)
    assert (finding.path, finding.line, finding.rule) == ("deploy/settings.py", 2, "AWS access key id")
    assert str(finding).startswith("deploy/settings.py:2: AWS access key id")
    assert FAKE_AKIA not in str(finding)  # the report masks it


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ("-----BEGIN RSA " + "PRIVATE KEY-----", "private key"),
        ("-----BEGIN OPENSSH " + "PRIVATE KEY-----", "private key"),
        (f"Authorization: Bearer {FAKE_JWT}", "JWT"),
        (f"AIRFLOW__CORE__FERNET_KEY={FAKE_FERNET}", "Fernet key"),
        ("AIRFLOW_CONN_METADATA='postgresql://airflow:" + "Pr0dPassw0rd@db:5432/airflow'", "URI with a password"),
        ('db_password = "' + 'hunter2hunter2"', "credential literal"),
        ('{"aws_secret_access_key": "' + 'wJalrXUtnFEMI/K7MDENG"}', "credential literal"),
        ('client = Client(api_key="' + 'sk-live-1234abcd")', "credential literal"),
        ('jwt_secret: "' + 'just-a-phrase"', "credential literal"),
        ('auth_token = "' + 'ghp_9aK2bLq7Zx0cV4nM8sT1wE6rY3uI5oP"', "token literal"),
    ],
)
def test_each_rule_fires_on_its_kind_of_secret(line: str, rule: str) -> None:
    assert rule in {finding.rule for finding in scan_text(line + "\n", "planted.py")}


def test_bare_values_in_yaml_and_env_files(tmp_path: Path) -> None:
    compose = "services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: " + "sup3rsecret\n"
    assert [(f.line, f.rule) for f in scan_text(compose, "deploy/compose.yaml")] == [(4, "credential value")]
    env = tmp_path / ".env"
    env.write_text("FRAUD_CARD_TOKEN_KEY=${FROM_VAULT}\n")
    assert [f.rule for f in scan_file(env, tmp_path)] == [".env file"]  # a reference, but the file is tracked


@pytest.mark.parametrize(
    "line",
    [
        'password = os.environ["AIRFLOW_PASSWORD"]',
        "password: str = settings.airflow_admin_password",
        'AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY}"',
        'conn = "postgresql://airflow:{password}@db/airflow"',
        'AIRFLOW__DATABASE__SQL_ALCHEMY_CONN: "postgresql://user:<password>@db/airflow"',
        '"FRAUD_CARD_TOKEN_KEY": "***"',
        "token = client.token()",
        "TOKEN_HEX_CHARS = 24",
        'card_token = "card_token"',
        'request.headers["Authorization"] = f"Bearer {token}"',
    ],
)
def test_references_and_placeholders_are_not_secrets(line: str) -> None:
    assert scan_text(line + "\n", "config.py") == []


def test_allow_list_applies_to_its_own_file_only() -> None:
    line = 'AWS_SECRET_ACCESS_KEY: "fraud-local"\n'
    assert scan_text(line, "docker-compose.yaml") == []
    assert [f.rule for f in scan_text(line, "deploy/other.yaml")] == ["credential literal"]
