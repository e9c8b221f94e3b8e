"""Champion/challenger against real services: an `mlflow server` process and a moto S3 server on free ports."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from training_lib.config import Settings, load_settings
from training_lib.lake.layout import AUDIT_REGISTRY
from training_lib.lake.objects import LakeError, ensure_bucket
from training_lib.lake.storage import Lake
from training_lib.modeling.aliases import CHALLENGER, CHAMPION, THRESHOLD_TAG, RegistryError, VersionNotFound
from training_lib.modeling.audit import AuditLog
from training_lib.modeling.gate import GateDecision, decide, gate_decision
from training_lib.modeling.registry import Registry

pytestmark = pytest.mark.integration

BUCKET = "registry-test"
MLFLOW = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "mlflow"
FLOOR, MARGIN = 0.5, 0.01
EVALUATION = {"window": {"start": "2024-03-01", "end": "2024-03-07"}, "rows": 1234, "run_id": "abc"}
ACTOR = "airflow:retrain/manual__2024-03-08"


@dataclass
class Services:
    s3_endpoint: str
    tracking_uri: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (local test server)
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"mlflow server not healthy after {timeout}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    from moto.server import ThreadedMotoServer

    tmp = tmp_path_factory.mktemp("registry")
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    log = tmp / "mlflow-server.log"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FRAUD_"))}
    env.update({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"})
    argv = [
        str(MLFLOW),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{tmp / 'mlflow.db'}",
        "--artifacts-destination",
        str(tmp / "artifacts"),
        "--workers",
        "1",
    ]
    with log.open("w") as out:
        server = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        _, s3_port = moto.get_host_and_port()
        tracking_uri = f"http://127.0.0.1:{port}"
        wait_healthy(f"{tracking_uri}/health", server, log)
        with _use_tracking_uri(tracking_uri):  # for mlflow.sklearn.log_model in make_versions
            yield Services(f"http://127.0.0.1:{s3_port}", tracking_uri)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        moto.stop()


@pytest.fixture
def settings(services: Services) -> Settings:
    """Settings with a model name of its own for every test (its own versions, aliases and audit log)."""
    settings = load_settings(
        {
            "FRAUD_S3_ENDPOINT_URL": services.s3_endpoint,
            "MLFLOW_TRACKING_URI": services.tracking_uri,
            "FRAUD_BUCKET": BUCKET,
            "FRAUD_MODEL_NAME": f"fraud-{uuid.uuid4().hex[:8]}",
            "FRAUD_PROMOTION_FLOOR": str(FLOOR),
            "FRAUD_PROMOTION_MARGIN": str(MARGIN),
        }
    )
    ensure_bucket(settings)
    return settings


@pytest.fixture
def registry(settings: Settings) -> Registry:
    return Registry(settings)


def make_versions(registry: Registry, count: int, threshold: float | None = 0.5) -> list[str]:
    """Register ``count`` versions of a tiny logistic regression; tag each with its threshold."""
    import mlflow
    import mlflow.sklearn
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    # An explicit experiment of this server: the fluent "active experiment" is process-global and may
    # point at another test module's server.
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("registry-tests")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("registry-tests")
    versions = []
    for _ in range(count):
        with mlflow.start_run(experiment_id=experiment_id):
            info = mlflow.sklearn.log_model(
                LogisticRegression().fit(x, y),
                name="model",
                registered_model_name=registry.name,
                serialization_format="cloudpickle",
                pip_requirements=["scikit-learn"],  # skips requirement inference (seconds per model)
            )
        version = str(info.registered_model_version)
        if threshold is not None:
            registry.client.set_model_version_tag(registry.name, version, THRESHOLD_TAG, str(threshold))
        versions.append(version)
    return versions


def promote_first(registry: Registry, version: str, pr_auc: float = 0.7) -> dict:
    return registry.record_decision(version, registry.gate(pr_auc, None), evaluation=EVALUATION, actor=ACTOR)


def aliases(registry: Registry) -> dict[str, str]:
    return registry.aliases()


# -- the gate (pure) ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "reason_part"),
    [
        (0.812, 0.790, True, "beats champion 0.790 by 0.022 >= margin 0.010"),
        (0.82, 0.81, True, "by 0.010 >= margin 0.010"),  # exactly the margin: 0.82 - 0.81 < 0.01 in floats
        (0.795, 0.790, False, "< margin 0.010"),
        (0.70, 0.75, False, "< margin"),
        (0.45, None, False, "below the floor 0.500"),
        (0.45, 0.20, False, "below the floor"),  # beating a weak champion is not enough
        (0.55, None, True, "first model"),
        (math.nan, None, False, "not a usable metric"),
        (math.nan, 0.6, False, "not a usable metric"),
        (0.9, math.nan, False, "cannot compare"),
        (math.inf, 0.6, False, "not a usable metric"),
    ],
)
def test_decide(challenger: float, champion: float | None, promote: bool, reason_part: str) -> None:
    decision = decide(challenger, champion, floor=FLOOR, margin=MARGIN)
    assert decision.promote is promote
    assert reason_part in decision.reason
    assert (decision.floor, decision.margin) == (FLOOR, MARGIN)
    assert decision.champion_pr_auc is champion or (champion is not None and math.isnan(champion))


def test_gate_decision_without_a_comparable_day_keeps_the_champion() -> None:
    comparable = {"candidate_pr_auc": 0.9, "champion_pr_auc": 0.7, "champion_version": "1", "comparable": True}
    assert gate_decision(comparable, floor=FLOOR, margin=MARGIN).promote
    none_unseen = {**comparable, "champion_pr_auc": None, "comparable": False, "champion_fitted_through": "2024-03-07"}
    decision = gate_decision(none_unseen, floor=FLOOR, margin=MARGIN)
    assert not decision.promote and math.isnan(decision.champion_pr_auc)
    assert "no matured day after version 1's training window (through 2024-03-07)" in decision.reason
    one_class = {**none_unseen, "rows": 4000, "frauds": 0}  # days after its window, but no fraud on them
    assert "4000 test rows both models may be judged on hold a single class" in gate_decision(
        one_class, floor=FLOOR, margin=MARGIN).reason  # fmt: skip
    # consistent with the gate on its own numbers, as record_decision checks
    assert decide(decision.challenger_pr_auc, decision.champion_pr_auc, floor=FLOOR, margin=MARGIN).promote is False
    first = {"candidate_pr_auc": None, "champion_pr_auc": None, "champion_version": None, "comparable": False}
    assert gate_decision(first, floor=FLOOR, margin=MARGIN).champion_pr_auc is None  # no champion to compare with
    assert gate_decision({**first, "candidate_pr_auc": 0.6, "comparable": True}, floor=FLOOR, margin=MARGIN).promote


def test_decide_accepts_numpy_scalars() -> None:
    import numpy as np

    decision = decide(np.float32(0.9), np.float64(0.8), floor=FLOOR, margin=MARGIN)
    assert decision.promote and type(decision.challenger_pr_auc) is float


# -- decisions ---------------------------------------------------------------------------------------------------------


def test_first_model_is_promoted_and_audited(registry: Registry) -> None:
    (v1,) = make_versions(registry, 1, threshold=0.37)
    assert registry.champion() is None and registry.history() == []
    entry = promote_first(registry, v1, 0.7)

    assert aliases(registry) == {CHAMPION: v1}
    champion = registry.champion()
    assert champion is not None and champion.version == v1
    assert registry.challenger() is None
    assert registry.threshold(champion) == pytest.approx(0.37)
    assert entry["kind"] == "promotion"
    assert entry["candidate_version"] == v1 and entry["candidate_run_id"] == champion.run_id
    assert entry["previous_champion_version"] is None and entry["previous_champion_run_id"] is None
    assert entry["challenger_pr_auc"] == 0.7 and entry["champion_pr_auc"] is None
    assert (entry["floor"], entry["margin"]) == (FLOOR, MARGIN)
    assert entry["evaluation"] == EVALUATION and entry["actor"] == ACTOR
    assert "first model" in entry["reason"]
    assert entry["model"] == registry.name and entry["id"] and datetime.fromisoformat(entry["at"]).tzinfo
    assert registry.history() == [entry]
    assert champion.tags["decision"] == "promotion"
    assert champion.tags["evaluation_window"] == '{"end": "2024-03-07", "start": "2024-03-01"}'


def test_better_challenger_is_promoted(registry: Registry) -> None:
    v1, v2 = make_versions(registry, 2)
    first = promote_first(registry, v1, 0.79)
    entry = registry.record_decision(v2, registry.gate(0.812, 0.79), evaluation=EVALUATION, actor=ACTOR)

    assert aliases(registry) == {CHAMPION: v2}  # the challenger alias went with the promotion
    assert entry["kind"] == "promotion"
    assert entry["previous_champion_version"] == v1
    assert entry["previous_champion_run_id"] == first["candidate_run_id"]
    assert entry["candidate_version"] == v2 and entry["champion_pr_auc"] == 0.79
    assert entry["reason"] == "challenger PR-AUC 0.812 beats champion 0.790 by 0.022 >= margin 0.010"
    old = registry.version(v1)
    assert old.tags["last_challenge_decision"] == "promotion" and old.tags["last_challenge_by_version"] == v2
    assert [e["kind"] for e in registry.history()] == ["promotion", "promotion"]


def test_a_rerun_of_the_deciding_run_moves_nothing_again(registry: Registry) -> None:
    v1, v2 = make_versions(registry, 2)
    promote_first(registry, v1, 0.79)
    run = "airflow:retrain/manual__2026-03-02"
    entry = registry.record_decision(v2, registry.gate(0.812, 0.79), evaluation=EVALUATION, actor=run)
    history = registry.history()
    # the re-run evaluates against the champion it promoted itself: the audited decision stands
    again = registry.record_decision(v2, registry.gate(0.812, None), evaluation=EVALUATION, actor=run)
    assert again == {**entry, "replayed": True}
    assert registry.history() == history and aliases(registry) == {CHAMPION: v2}
    assert registry.decision_by(run, v2) == entry and registry.decision_by(ACTOR, v2) is None
    with pytest.raises(ValueError, match="already the champion"):  # another actor is still refused
        registry.record_decision(v2, registry.gate(0.9, 0.812), evaluation=EVALUATION, actor=ACTOR)


def test_worse_challenger_is_rejected(registry: Registry) -> None:
    v1, v2 = make_versions(registry, 2)
    promote_first(registry, v1, 0.79)
    decision = registry.gate(0.795, 0.79)
    entry = registry.record_decision(v2, decision, evaluation=EVALUATION, actor="user:alice")

    assert aliases(registry) == {CHAMPION: v1, CHALLENGER: v2}
    assert entry["kind"] == "rejection" and entry["actor"] == "user:alice"
    assert (entry["challenger_pr_auc"], entry["champion_pr_auc"], entry["margin"]) == (0.795, 0.79, MARGIN)
    assert entry["previous_champion_version"] == v1 and entry["champion_version"] == v1
    assert entry["reason"] == decision.reason and "< margin 0.010" in entry["reason"]
    candidate, champion = registry.version(v2), registry.version(v1)
    assert candidate.tags["decision"] == "rejection"
    assert float(candidate.tags["challenger_pr_auc"]) == 0.795 and float(candidate.tags["champion_pr_auc"]) == 0.79
    assert candidate.tags["compared_with_version"] == v1 and candidate.tags["reason"] == decision.reason
    assert {"decided_at", "margin", "floor", "evaluation_window"} <= set(candidate.tags)
    assert champion.tags["decision"] == "promotion"  # its own decision is kept
    assert champion.tags["last_challenge_decision"] == "rejection"


def test_inconsistent_decisions_are_refused(registry: Registry) -> None:
    v1, v2, v3 = make_versions(registry, 3)
    v3_untagged = make_versions(registry, 1, threshold=None)[0]
    with pytest.raises(ValueError, match="compared it with a champion"):
        registry.record_decision(v1, registry.gate(0.9, 0.7), evaluation={}, actor=ACTOR)
    promote_first(registry, v1)
    before = registry.history()
    with pytest.raises(ValueError, match=f"without a champion, but version {v1} is champion"):
        registry.record_decision(v2, registry.gate(0.9, None), evaluation={}, actor=ACTOR)
    with pytest.raises(ValueError, match="contradicts the gate"):
        forged = GateDecision(True, "trust me", 0.6, 0.7, FLOOR, MARGIN)
        registry.record_decision(v2, forged, evaluation={}, actor=ACTOR)
    with pytest.raises(ValueError, match=f"version {v1} is already the champion"):
        registry.record_decision(v1, registry.gate(0.9, 0.7), evaluation={}, actor="user:bob")
    with pytest.raises(ValueError, match=f"against champion version {v3}"):
        registry.record_decision(v2, registry.gate(0.9, 0.7), evaluation={}, actor=ACTOR, compared_with=v3)
    with pytest.raises(ValueError, match=f"version {v3_untagged} has no 'threshold' tag"):
        registry.record_decision(v3_untagged, registry.gate(0.9, 0.7), evaluation={}, actor=ACTOR)
    with pytest.raises(ValueError, match="actor must look like"):
        registry.record_decision(v2, registry.gate(0.9, 0.7), evaluation={}, actor="someone")
    assert aliases(registry) == {CHAMPION: v1}
    assert registry.history() == before


# -- failures leave everything unchanged -------------------------------------------------------------------------------


def test_missing_version_changes_nothing(registry: Registry) -> None:
    (v1,) = make_versions(registry, 1)
    promote_first(registry, v1)
    before = registry.history()
    with pytest.raises(VersionNotFound, match="has no version 99"):
        registry.record_decision("99", registry.gate(0.9, 0.7), evaluation={}, actor=ACTOR)
    # The real server refusing an alias move in the middle of a change: earlier moves are undone.
    with pytest.raises(RegistryError, match="aliases restored"):
        registry._move_aliases([(CHALLENGER, v1), (CHAMPION, "99")])
    assert aliases(registry) == {CHAMPION: v1}
    assert registry.history() == before


def test_failed_alias_move_leaves_aliases_tags_and_audit_unchanged(settings: Settings) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    class ChampionMoveFails(MlflowClient):
        def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
            if alias == CHAMPION and version == "2":
                raise MlflowException("injected: registry unavailable")
            super().set_registered_model_alias(name, alias, version)

    registry = Registry(settings, client=ChampionMoveFails(tracking_uri=settings.mlflow_tracking_uri))
    v1, v2, v3 = make_versions(registry, 3)
    assert v2 == "2"
    promote_first(registry, v1, 0.7)
    registry.record_decision(v3, registry.gate(0.705, 0.7), evaluation={}, actor=ACTOR)  # v3: challenger
    before = registry.history()
    with pytest.raises(RegistryError, match=r"moving alias 'champion' to version 2 failed.*aliases restored"):
        registry.record_decision(v2, registry.gate(0.8, 0.7), evaluation=EVALUATION, actor=ACTOR)
    assert aliases(registry) == {CHAMPION: v1, CHALLENGER: v3}
    assert registry.history() == before
    assert "decision" not in registry.version(v2).tags
    assert registry.version(v1).tags["last_challenge_by_version"] == v3  # still the earlier challenge


# -- rollback ----------------------------------------------------------------------------------------------------------


def test_rollback(registry: Registry) -> None:
    v1, v2, v3 = make_versions(registry, 3)
    with pytest.raises(ValueError, match="has no champion"):
        registry.rollback(reason="x", actor="user:alice")
    promote_first(registry, v1, 0.6)
    with pytest.raises(ValueError, match=f"no previous champion in the audit log \\(champion is version {v1}\\)"):
        registry.rollback(reason="bad model", actor="user:alice")
    registry.record_decision(v2, registry.gate(0.7, 0.6), evaluation=EVALUATION, actor=ACTOR)
    registry.record_decision(v3, registry.gate(0.8, 0.7), evaluation=EVALUATION, actor=ACTOR)
    assert registry.champion().version == v3

    entry = registry.rollback(reason="alert volume tripled", actor="user:alice")
    assert aliases(registry) == {CHAMPION: v2}
    assert entry["kind"] == "rollback" and (entry["from_version"], entry["to_version"]) == (v3, v2)
    assert entry["reason"] == "alert volume tripled" and entry["actor"] == "user:alice"
    assert entry["from_run_id"] == registry.version(v3).run_id and entry["to_run_id"] == registry.version(v2).run_id
    assert registry.version(v2).tags["rollback_from_version"] == v3
    assert registry.version(v3).tags["rolled_back_to_version"] == v2
    assert registry.version(v3).tags["rolled_back_reason"] == "alert volume tripled"

    with pytest.raises(ValueError, match=f"version {v2} is already the champion"):
        registry.rollback(v2, reason="x", actor="user:alice")
    with pytest.raises(ValueError, match="has no version 42"):
        registry.rollback(42, reason="x", actor="user:alice")
    with pytest.raises(ValueError, match="needs a reason"):
        registry.rollback(v1, reason=" ", actor="user:alice")

    explicit = registry.rollback(int(v1), reason="back to the first", actor="user:bob")
    assert aliases(registry) == {CHAMPION: v1}
    assert (explicit["from_version"], explicit["to_version"]) == (v2, v1)
    assert registry.previous_champion() == v2  # the default goes back to the champion before this one
    assert [e["kind"] for e in registry.history()] == ["promotion"] * 3 + ["rollback"] * 2
    assert registry.alias_moves_outside_platform() == []


def test_a_rerun_of_a_rollback_run_rolls_back_once(registry: Registry) -> None:
    v1, v2 = make_versions(registry, 2)
    promote_first(registry, v1, 0.7)
    registry.record_decision(v2, registry.gate(0.9, 0.7), evaluation=EVALUATION, actor=ACTOR)
    run = "airflow:rollback_model/manual__2026-03-03 by alice"
    entry = registry.rollback(reason="bad alerts", actor=run)
    history = registry.history()
    again = registry.rollback(reason="bad alerts", actor=run)  # not back to v2
    assert again == {**entry, "replayed": True}
    assert aliases(registry) == {CHAMPION: v1} and registry.history() == history


def test_rollback_onto_the_challenger_removes_that_alias(registry: Registry) -> None:
    v1, v2 = make_versions(registry, 2)
    promote_first(registry, v1, 0.7)
    registry.record_decision(v2, registry.gate(0.705, 0.7), evaluation={}, actor=ACTOR)
    entry = registry.rollback(v2, reason="v1 misbehaves", actor="user:alice")
    assert aliases(registry) == {CHAMPION: v2}
    assert entry["challenger_version"] is None
    assert registry.alias_moves_outside_platform() == []


# -- the audit log -----------------------------------------------------------------------------------------------------


def test_audit_log_is_append_only_and_chronological(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import training_lib.modeling.audit as audit_module

    lake = Lake(settings)
    audit = AuditLog(lake, settings.model_name)
    stored = [audit.append({"kind": "note", "n": i}) for i in range(5)]
    assert [e["n"] for e in audit.entries()] == list(range(5))
    assert audit.entries() == stored
    ats = [datetime.fromisoformat(e["at"]) for e in stored]
    assert ats == sorted(ats) and len(set(ats)) == 5
    keys = audit.keys()
    assert len(keys) == 5 and all(k.startswith(f"{AUDIT_REGISTRY}/{settings.model_name}/") for k in keys)
    assert audit.last()["n"] == 4 and audit.last("note")["n"] == 4 and audit.last("promotion") is None

    # Another writer appends later: entries only accumulate, earlier objects are untouched.
    AuditLog(lake, settings.model_name).append({"kind": "other"})
    assert audit.entries()[:5] == stored and audit.last()["kind"] == "other"
    assert audit.last("note")["n"] == 4

    # A key that exists is never overwritten (forced collision: same clock, same uuid).
    fixed = datetime(2030, 1, 1, tzinfo=UTC)
    monkeypatch.setattr(audit_module, "utc_now", lambda: fixed)
    monkeypatch.setattr(audit_module.uuid, "uuid4", lambda: uuid.UUID(int=7))
    first = AuditLog(lake, settings.model_name).append({"kind": "note", "n": 100})
    with pytest.raises(LakeError, match="refusing to overwrite"):
        AuditLog(lake, settings.model_name).append({"kind": "note", "n": 200})
    assert audit.last() == first

    with pytest.raises(ValueError, match="kind"):
        audit.append({"n": 1})
    with pytest.raises(ValueError, match="set by the audit log"):
        audit.append({"kind": "note", "at": "yesterday"})
    assert len(audit.entries()) == 7


def test_audit_logs_of_models_are_separate(settings: Settings) -> None:
    lake = Lake(settings)
    AuditLog(lake, settings.model_name).append({"kind": "note"})
    assert AuditLog(lake, settings.model_name + "-other").entries() == []
    assert AuditLog(lake, settings.model_name[:-1]).entries() == []  # a prefix of the name is another model


# -- cooldown and out-of-platform moves --------------------------------------------------------------------------------


def test_last_retrain_data_day(registry: Registry) -> None:
    v1, v2, v3 = make_versions(registry, 3)
    assert registry.last_retrain_data_day() is None
    promote_first(registry, v1, 0.7)
    assert registry.last_retrain_data_day() == datetime.fromisoformat(registry.history()[-1]["at"]).date()
    registry.record_decision(v2, registry.gate(0.6, 0.7), evaluation={"data_day": "2026-03-12"}, actor=ACTOR)
    assert registry.last_retrain_data_day() == date(2026, 3, 12)
    registry.rollback(v2, reason="manual", actor="user:alice")  # a rollback is not a retrain
    assert registry.last_retrain_data_day() == date(2026, 3, 12)
    later_run = "airflow:retrain/manual__2026-03-16"
    registry.record_decision(v3, registry.gate(0.9, 0.6), evaluation={"data_day": "2026-03-15"}, actor=later_run)
    assert registry.last_retrain_data_day() == date(2026, 3, 15)
    # a run's own decision does not put a re-run of it inside the cooldown
    assert registry.last_retrain_data_day(excluding_actor=later_run) == date(2026, 3, 12)


def test_alias_moves_outside_platform(registry: Registry) -> None:
    v1, v2 = make_versions(registry, 2)
    registry.client.set_registered_model_alias(registry.name, CHAMPION, v1)  # by hand, before any audit
    (moved,) = registry.alias_moves_outside_platform()
    assert moved["alias"] == CHAMPION and moved["registry_version"] == v1 and moved["audited_version"] is None

    registry.client.delete_registered_model_alias(registry.name, CHAMPION)
    promote_first(registry, v1, 0.7)
    registry.record_decision(v2, registry.gate(0.75, 0.7), evaluation={}, actor=ACTOR)
    assert registry.alias_moves_outside_platform() == []

    registry.client.set_registered_model_alias(registry.name, CHAMPION, v1)  # the MLflow UI's manual rollback
    (moved,) = registry.alias_moves_outside_platform()
    assert (moved["alias"], moved["registry_version"], moved["audited_version"]) == (CHAMPION, v1, v2)
    assert f"alias 'champion' is on version {v1} in the registry but on {v2}" in moved["description"]
    assert registry.previous_champion() == v2  # the last audited champion

    registry.client.set_registered_model_alias(registry.name, CHAMPION, v2)
    registry.client.set_registered_model_alias(registry.name, CHALLENGER, v1)
    (moved,) = registry.alias_moves_outside_platform()
    assert (moved["alias"], moved["registry_version"], moved["audited_version"]) == (CHALLENGER, v1, None)


class WriteDeniedLake(Lake):
    """The real lake, but every PUT is refused (an S3 policy denying writes)."""

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None, **conditions: Any) -> str:
        raise self._fail("PUT", key, PermissionError("AccessDenied"))


def test_unreadable_audit_log_moves_nothing(registry: Registry, settings: Settings) -> None:
    from dataclasses import replace

    (v1,) = make_versions(registry, 1)
    broken = Registry(settings, client=registry.client, lake=Lake(replace(settings, bucket="no-such-bucket-here")))
    with pytest.raises(LakeError, match="no-such-bucket-here"):
        promote_first(broken, v1)  # it cannot tell whether this run decided already: it decides nothing
    assert aliases(registry) == {}


def test_unwritable_audit_log_is_reported_as_an_unaudited_move(registry: Registry, settings: Settings) -> None:
    (v1,) = make_versions(registry, 1)
    broken = Registry(settings, client=registry.client, lake=WriteDeniedLake(settings))
    with pytest.raises(RegistryError, match=r"aliases were moved .* audit entry could not be written"):
        promote_first(broken, v1)
    assert aliases(registry) == {CHAMPION: v1}  # the alias moved first: serving is consistent
    assert registry.history() == []
    (moved,) = registry.alias_moves_outside_platform()
    assert (moved["alias"], moved["registry_version"], moved["audited_version"]) == (CHAMPION, v1, None)


# -- what the "Fraud models" page shows (training_lib.monitoring.model_status) -----------------------------------------


def test_platform_status_before_any_model(settings: Settings) -> None:
    from training_lib.monitoring.model_status import platform_status

    status = platform_status(settings)
    assert status["champion"] is None and status["challenger"] is None
    assert status["history"] == [] and status["outside_moves"] == [] and status["reports"] == []
    assert status["links"]["model"].endswith(f"/#/models/{settings.model_name}")


def test_platform_status_shows_aliases_history_and_moves_outside_the_platform(
    registry: Registry, settings: Settings
) -> None:
    from datetime import date

    from training_lib.lake.layout import REPORTS_DRIFT, REPORTS_QUALITY
    from training_lib.monitoring.model_status import platform_status

    v1, v2 = make_versions(registry, 2)
    promote_first(registry, v1, 0.7)
    registry.record_decision(
        v2, registry.gate(0.6, 0.7), evaluation={"trigger": "drift_detected:2026-01-20"}, actor=ACTOR
    )
    lake = Lake(settings)
    day = date(2026, 1, 20)
    lake.put_report(REPORTS_QUALITY, day, "summary.json", '{"validated": 9, "quarantined": 1}')
    lake.put_report(REPORTS_DRIFT, day, "summary.json", '{"share": 0.14, "drift_detected": true}')
    lake.put_report(REPORTS_DRIFT, day, "report.html", "<html></html>", "text/html")

    status = platform_status(settings, lake=lake)
    assert status["champion"]["version"] == v1 and status["challenger"]["version"] == v2
    assert status["champion"]["tags"]["decision"] == "promotion"
    assert status["champion"]["links"]["version"].endswith(f"/versions/{v1}")
    assert [e["kind"] for e in status["history"]] == ["rejection", "promotion"]  # newest first
    assert status["outside_moves"] == []
    (report,) = status["reports"]
    assert report["day"] == "2026-01-20" and report["drift"]["drift_detected"] is True
    assert "report.html" in report["drift_url"] and "quality_url" not in report  # no Data Docs written

    registry.client.set_registered_model_alias(registry.name, CHAMPION, v2)  # the MLflow UI's manual move
    status = platform_status(settings, lake=lake)
    assert status["champion"]["version"] == v2  # the registry is the truth
    (moved,) = status["outside_moves"]
    assert moved["alias"] == CHAMPION and moved["registry_version"] == v2 and moved["audited_version"] == v1
