"""Champion/challenger in the MLflow model registry: decisions applied, aliases moved and audited, rollback.

The registry state is two **aliases** on the registered model (stages are deprecated and never used):

* ``champion``: the version batch scoring loads (``models:/<name>@champion``);
* ``challenger``: the latest candidate that did not beat the champion (removed when a candidate is promoted).

The gate is pure (``modeling.gate``: :func:`decide`, :func:`gate_decision`). :meth:`Registry.record_decision`
applies a decision to the registry and ``modeling.audit.AuditLog`` keeps one JSON object per event under
``audit/registry/<model>/`` in the lake, never overwritten. :meth:`Registry.rollback` moves the champion
back (by default to the champion before the current one, according to the audit log).

Write order of every registry change: **alias moves first** (one MLflow call each), **then tags, then the
audit entry**. The aliases are what serving reads, the audit entry is the record of what happened:

* an alias call that fails aborts the change before anything else is written; alias moves already made by
  the same change are undone (best effort), so the registry and the audit log stay as they were;
* the audit entry is written last, so an entry only ever describes alias moves that really happened. If
  it cannot be written (S3 down), the aliases have moved without a record: :meth:`Registry.alias_moves_outside_platform`
  reports exactly that difference, like a move made by hand in the MLflow UI;
* tags are descriptive (the MLflow UI shows them on the version); a failed tag write is logged and noted
  in the audit entry (``tag_errors``) instead of leaving an alias move unaudited.

MLflow has no compare-and-set on aliases: callers must keep to one writer at a time (e.g. a retrain DAG
with ``max_active_runs=1``; rollbacks are manual). ``compared_with`` in :meth:`Registry.record_decision`
narrows the window in which a decision could be applied against a champion that has changed since.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING, Any

from training_lib.config import Settings
from training_lib.lake.storage import Lake
from training_lib.modeling.audit import (
    PROMOTION,
    REJECTION,
    ROLLBACK,
    AuditLog,
    audited_aliases,
    decision_by,
    last_champion_change,
    last_decision_data_day,
    utc_now,
)
from training_lib.modeling.gate import GateDecision, decide, gate_decision, json_number

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
THRESHOLD_TAG = "threshold"  # decision threshold stored on each model version (set by training)
EVALUATION_RUN_TAG = "evaluation_run_id"  # the run of the version's evaluation fit: the gate's evidence
LABELS_THROUGH_TAG = "labels_through"  # set by training on the model version: last label day it used
TRAINING_WINDOW_TAG = "training_window"  # "first..last" day the registered version was fitted on

_TAG_VALUE_LIMIT = 5000  # MLflow's model-version tag column
_ACTOR_RE = re.compile(r"^[A-Za-z][\w.-]*:\S.*$")


class RegistryError(RuntimeError):
    """A registry change could not be applied; the message says what state the registry was left in."""


class VersionNotFound(ValueError, LookupError):
    """The registered model has no such version (or does not exist)."""


def fitted_through(version: ModelVersion) -> date | None:
    """The last day ``version`` was fitted on (its ``training_window`` tag), None when unknown."""
    window = (version.tags or {}).get(TRAINING_WINDOW_TAG, "")
    return date.fromisoformat(window.split("..")[-1]) if window else None


def gate_and_record(
    settings: Settings, evaluation: dict[str, Any], *, actor: str, trigger: str, data_day: str | None
) -> dict[str, Any]:
    """The retrain's decision: :func:`gate_decision` with the configured floor and margin, then
    :meth:`Registry.record_decision` (version tags, aliases, audit entry), the trigger and data day recorded.

    Returns the audit entry; a re-run by the same ``actor`` finds its entry and repeats nothing."""
    decision = gate_decision(evaluation, floor=settings.promotion_floor, margin=settings.promotion_margin)
    evaluation = {**evaluation, "trigger": trigger, "data_day": data_day}
    return Registry(settings).record_decision(
        evaluation["candidate_version"], decision, evaluation=evaluation, actor=actor
    )


def _alias_moves(candidate: str, promote: bool) -> list[tuple[str, str | None]]:
    """The candidate becomes challenger; promoted, it becomes champion and the challenger alias goes."""
    moves: list[tuple[str, str | None]] = [(CHALLENGER, candidate)]
    if promote:
        moves += [(CHAMPION, candidate), (CHALLENGER, None)]
    return moves


def _decision_tags(
    kind: str, decided_at: str, decision: GateDecision, window: Any, champion: ModelVersion | None, actor: str
) -> dict[str, Any]:
    """The tags a decision leaves on its candidate."""
    return {
        "decision": kind,
        "decided_at": decided_at,
        "reason": decision.reason,
        "challenger_pr_auc": json_number(decision.challenger_pr_auc),
        "champion_pr_auc": json_number(decision.champion_pr_auc),
        "margin": decision.margin,
        "floor": decision.floor,
        "evaluation_window": window,
        "compared_with_version": champion.version if champion else None,
        "decided_by": actor,
    }


def _challenge_tags(kind: str, decided_at: str, decision: GateDecision, window: Any, candidate: str) -> dict[str, Any]:
    """The tags a decision leaves on the champion it was compared with."""
    return {
        "last_challenge_decision": kind,
        "last_challenge_at": decided_at,
        "last_challenge_by_version": candidate,
        "last_challenge_reason": decision.reason,
        "last_challenge_challenger_pr_auc": json_number(decision.challenger_pr_auc),
        "last_challenge_champion_pr_auc": json_number(decision.champion_pr_auc),
        "last_challenge_margin": decision.margin,
        "last_challenge_floor": decision.floor,
        "last_challenge_evaluation_window": window,
    }


def _decision_event(
    kind: str,
    candidate: ModelVersion,
    champion: ModelVersion | None,
    decision: GateDecision,
    evaluation: dict[str, Any],
    actor: str,
) -> dict[str, Any]:
    """The audit event of a decision (the audit log adds its id, time and model name)."""
    cand = candidate.version
    return {
        "kind": kind,
        "candidate_version": cand,
        "candidate_run_id": candidate.run_id,
        "previous_champion_version": champion.version if champion else None,
        "previous_champion_run_id": champion.run_id if champion else None,
        "champion_version": cand if decision.promote else (champion.version if champion else None),
        "challenger_version": None if decision.promote else cand,
        **{k: v for k, v in decision.to_dict().items() if k != "promote"},
        "evaluation": evaluation,
        "actor": actor,
    }


# ---------------------------------------------------------------------------------------------------------------------
# The registry


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", ""))


def _tag_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:_TAG_VALUE_LIMIT]


AIRFLOW_ACTOR_PREFIX = "airflow:"


def _check_actor(actor: str) -> None:
    if not isinstance(actor, str) or not _ACTOR_RE.match(actor):
        raise ValueError(f"actor must look like 'airflow:retrain/<run_id>' or 'user:alice', got {actor!r}")


class Registry:
    """Champion/challenger aliases of ``settings.model_name``, changed only through audited operations."""

    def __init__(self, settings: Settings, client: MlflowClient | None = None, lake: Lake | None = None) -> None:
        if client is None:
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
        self.settings = settings
        self.name = settings.model_name
        self.client = client
        self.lake = lake if lake is not None else Lake(settings)
        self.audit = AuditLog(self.lake, self.name)

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {self.settings.mlflow_tracking_uri})"

    # -- reads ----------------------------------------------------------------------------------------------------

    def aliases(self) -> dict[str, str]:
        """alias -> version of the registered model ({} when the model is not registered yet)."""
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(self.name).aliases)
        except MlflowException as exc:
            if _error_code(exc) in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
                return {}
            raise

    def _by_alias(self, alias: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException:
            if alias not in self.aliases():  # the alias (or the model) does not exist: not an error
                return None
            raise

    def champion(self) -> ModelVersion | None:
        """The version carrying the champion alias, if any."""
        return self._by_alias(CHAMPION)

    def challenger(self) -> ModelVersion | None:
        """The version carrying the challenger alias, if any."""
        return self._by_alias(CHALLENGER)

    def version(self, version: str | int) -> ModelVersion:
        """One version of the model; :class:`VersionNotFound` (a ValueError) naming it when it does not exist."""
        from mlflow.exceptions import MlflowException

        text = str(version).strip()
        if not text.isdigit():
            raise VersionNotFound(f"model {self.name!r} has no version {version!r} (versions are numbers)")
        try:
            return self.client.get_model_version(self.name, text)
        except MlflowException as exc:
            if _error_code(exc) in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"}:
                raise VersionNotFound(f"model {self.name!r} has no version {text}") from exc
            raise

    def threshold(self, version: ModelVersion) -> float:
        """The decision threshold stored on the version (tag ``threshold``)."""
        raw = (version.tags or {}).get(THRESHOLD_TAG)
        if raw is None:
            raise ValueError(
                f"model {self.name!r} version {version.version} has no {THRESHOLD_TAG!r} tag:"
                " training must store its decision threshold on the version"
            )
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise ValueError(
                f"model {self.name!r} version {version.version}: tag {THRESHOLD_TAG!r}={raw!r} is not a score in [0, 1]"
            )
        return value

    def gate(self, challenger_pr_auc: float, champion_pr_auc: float | None) -> GateDecision:
        """:func:`decide` with the configured floor and margin."""
        return decide(
            challenger_pr_auc,
            champion_pr_auc,
            floor=self.settings.promotion_floor,
            margin=self.settings.promotion_margin,
        )

    # -- audited changes ------------------------------------------------------------------------------------------

    def _move_aliases(self, moves: list[tuple[str, str | None]]) -> None:
        """Apply ``(alias, version)`` moves in order (version None: remove the alias), one call each.

        When a call fails, the moves already applied are undone (best effort) and :class:`RegistryError` is raised.
        """
        before = self.aliases()
        applied: list[str] = []
        for alias, version in moves:
            try:
                self._set_alias(alias, version)
            except Exception as exc:
                undo_failures = self._restore_aliases(before, applied)
                state = (
                    "aliases restored to " + json.dumps(before, sort_keys=True)
                    if not undo_failures
                    else "could NOT restore aliases (" + "; ".join(undo_failures) + "); check the registry"
                )
                target = f"version {version}" if version is not None else "nothing (remove)"
                raise RegistryError(
                    f"model {self.name!r}: moving alias {alias!r} to {target} failed: {exc}; {state};"
                    " nothing was tagged or audited"
                ) from exc
            applied.append(alias)

    def _set_alias(self, alias: str, version: str | None) -> None:
        if version is None:
            self.client.delete_registered_model_alias(self.name, alias)
        else:
            self.client.set_registered_model_alias(self.name, alias, version)

    def _restore_aliases(self, before: dict[str, str], applied: Iterable[str]) -> list[str]:
        failures = []
        for alias in reversed(list(dict.fromkeys(applied))):
            try:
                self._set_alias(alias, before.get(alias))
            except Exception as exc:
                failures.append(f"{alias}: {exc}")
        return failures

    def _tag(self, version: str, tags: dict[str, Any]) -> list[str]:
        """Set tags on a version; the failures (logged, not raised: the aliases have already moved)."""
        failures = []
        for key, value in tags.items():
            if value is None:
                continue
            try:
                self.client.set_model_version_tag(self.name, version, key, _tag_value(value))
            except Exception as exc:
                log.warning("model %s version %s: tag %s not set: %s", self.name, version, key, exc)
                failures.append(f"v{version} {key}: {exc}")
        return failures

    def _append(self, event: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.audit.append(event)
        except Exception as exc:
            raise RegistryError(
                f"model {self.name!r}: aliases were moved (champion={event.get('champion_version')},"
                f" challenger={event.get('challenger_version')}) but the audit entry could not be written: {exc};"
                " alias_moves_outside_platform() reports this move until it is audited"
            ) from exc

    def record_decision(
        self,
        candidate_version: str | int,
        decision: GateDecision,
        *,
        evaluation: dict[str, Any],
        actor: str,
        compared_with: str | int | None = None,
    ) -> dict[str, Any]:
        """Apply a gate decision about ``candidate_version``; returns the audit entry.

        The candidate gets the challenger alias; when ``decision.promote`` the champion alias moves to it and the
        challenger alias is removed (a promoted version is champion only). Otherwise the champion is unchanged and
        the candidate stays challenger. The candidate and the champion it was compared with are tagged, and the
        event is audited as ``promotion`` or ``rejection``. ``evaluation`` is stored as given (data window, rows,
        run ids...); its ``window`` entry is also tagged as ``evaluation_window``.

        Refused (ValueError, nothing written) when the candidate does not exist or is the champion, when the
        decision contradicts :func:`decide` on its own numbers, when it was taken against a champion that is no
        longer there (``champion_pr_auc`` given but no champion, or none given but there is one; with
        ``compared_with``, the champion's version must match), or when a promoted candidate has no threshold tag.
        """
        _check_actor(actor)
        candidate = self.version(candidate_version)
        earlier = self.decision_by(actor, candidate.version) if actor.startswith(AIRFLOW_ACTOR_PREFIX) else None
        if earlier is not None:  # a re-run of the run that decided: the decision stands, nothing moves again
            log.info("version %s: %s already decided by %s at %s; not applied again", candidate.version,
                     earlier["kind"], actor, earlier["at"])  # fmt: skip
            return {**earlier, "replayed": True}
        champion = self._check_decision(candidate, decision, compared_with)
        self._move_aliases(_alias_moves(candidate.version, decision.promote))
        kind = PROMOTION if decision.promote else REJECTION
        decided_at = utc_now().isoformat()
        window = evaluation.get("window")
        tag_errors = self._tag(candidate.version, _decision_tags(kind, decided_at, decision, window, champion, actor))
        if champion is not None:
            tag_errors += self._tag(
                champion.version, _challenge_tags(kind, decided_at, decision, window, candidate.version)
            )
        event = _decision_event(kind, candidate, champion, decision, evaluation, actor)
        if tag_errors:
            event["tag_errors"] = tag_errors
        return self._append(event)

    def _check_decision(
        self, candidate: ModelVersion, decision: GateDecision, compared_with: str | int | None
    ) -> ModelVersion | None:
        """The champion the decision is about, after the checks :meth:`record_decision` promises (ValueError)."""
        cand = candidate.version
        recomputed = decide(
            decision.challenger_pr_auc, decision.champion_pr_auc, floor=decision.floor, margin=decision.margin
        )
        if recomputed.promote != decision.promote:
            raise ValueError(
                f"decision promote={decision.promote} contradicts the gate on its own numbers: {recomputed.reason}"
            )
        champion = self.champion()
        if champion is not None and champion.version == cand:
            raise ValueError(f"model {self.name!r} version {cand} is already the champion: nothing to decide")
        if decision.champion_pr_auc is None and champion is not None:
            raise ValueError(
                f"the decision about version {cand} was taken without a champion, but version {champion.version}"
                " is champion now: evaluate against it again"
            )
        if decision.champion_pr_auc is not None and champion is None:
            raise ValueError(
                f"the decision about version {cand} compared it with a champion, but model {self.name!r} has none now"
            )
        if compared_with is not None and (champion is None or champion.version != str(compared_with)):
            raise ValueError(
                f"the decision about version {cand} was taken against champion version {compared_with}, but the"
                f" champion is now {champion.version if champion else 'none'}: evaluate again"
            )
        if decision.promote:
            self.threshold(candidate)  # a champion without a threshold cannot score
        return champion

    def previous_champion(self) -> str | None:
        """The version that was champion before the current one, according to the audit log.

        When the registry's champion differs from the last audited one (moved outside the platform), that is the
        last audited champion. Rolling back twice therefore goes back and forth; name a version to go further.
        """
        last = last_champion_change(self.audit.entries())
        if last is None:
            return None
        current = self.champion()
        if current is None or current.version != last["champion_version"]:
            return last["champion_version"]
        return last.get("previous_champion_version")

    def rollback(self, to_version: str | int | None = None, *, reason: str, actor: str) -> dict[str, Any]:
        """Move the champion alias to ``to_version`` (default: :meth:`previous_champion`); returns the audit entry.

        Refused (ValueError naming the versions, nothing written) when there is no champion, no previous champion,
        the target does not exist, is already champion or has no threshold tag. If the target carries the
        challenger alias, that alias is removed. Audited as ``rollback``; both versions are tagged. When
        ``actor`` is an Airflow run (``airflow:…``) that rolled back already, its entry is returned with
        ``replayed`` and nothing moves.
        """
        _check_actor(actor)
        if not reason.strip():
            raise ValueError("a rollback needs a reason")
        earlier = None
        if actor.startswith(AIRFLOW_ACTOR_PREFIX):  # a person may roll back several times; a run only once
            earlier = next(
                (e for e in reversed(self.audit.entries()) if e.get("kind") == ROLLBACK and e["actor"] == actor), None
            )
        if earlier is not None:  # a re-run of the run that rolled back: done already, never back and forth
            log.info("rollback by %s already done at %s; not applied again", actor, earlier["at"])
            return {**earlier, "replayed": True}
        current = self.champion()
        if current is None:
            raise ValueError(f"model {self.name!r} has no champion: nothing to roll back")
        if to_version is None:
            to_version = self.previous_champion()
            if to_version is None:
                raise ValueError(
                    f"model {self.name!r}: no previous champion in the audit log (champion is version"
                    f" {current.version}); name the version to roll back to"
                )
        target = self.version(to_version)
        if target.version == current.version:
            raise ValueError(f"model {self.name!r} version {target.version} is already the champion")
        self.threshold(target)

        challenger_before = self.aliases().get(CHALLENGER)
        moves: list[tuple[str, str | None]] = [(CHAMPION, target.version)]
        if challenger_before == target.version:
            moves.append((CHALLENGER, None))
        self._move_aliases(moves)

        at = utc_now().isoformat()
        tag_errors = self._tag(
            target.version,
            {
                "rollback_restored_at": at,
                "rollback_from_version": current.version,
                "rollback_reason": reason,
                "rollback_actor": actor,
            },
        )
        tag_errors += self._tag(
            current.version,
            {
                "rolled_back_at": at,
                "rolled_back_to_version": target.version,
                "rolled_back_reason": reason,
                "rolled_back_actor": actor,
            },
        )
        event: dict[str, Any] = {
            "kind": ROLLBACK,
            "from_version": current.version,
            "from_run_id": current.run_id,
            "to_version": target.version,
            "to_run_id": target.run_id,
            "previous_champion_version": current.version,
            "champion_version": target.version,
            "challenger_version": None if challenger_before == target.version else challenger_before,
            "reason": reason,
            "actor": actor,
        }
        if tag_errors:
            event["tag_errors"] = tag_errors
        return self._append(event)

    # -- history --------------------------------------------------------------------------------------------------

    def history(self) -> list[dict[str, Any]]:
        """The audit entries, oldest first."""
        return self.audit.entries()

    def decision_by(self, actor: str, candidate_version: str | int) -> dict[str, Any] | None:
        """The audited decision ``actor`` took about ``candidate_version``, if any."""
        return decision_by(self.audit.entries(), actor, candidate_version)

    def last_retrain_data_day(self, *, excluding_actor: str | None = None) -> date | None:
        """The data day of the last promotion or rejection (for the retrain cooldown); None if never
        (see :func:`~training_lib.modeling.audit.last_decision_data_day`)."""
        return last_decision_data_day(self.audit.entries(), excluding_actor=excluding_actor)

    def alias_moves_outside_platform(self) -> list[dict[str, Any]]:
        """Aliases whose registry version differs from the last audited one (moved in the MLflow UI, or an
        unaudited change): one description per alias, [] when the registry matches the audit log."""
        audited = audited_aliases(
            self.audit.entries(), {CHAMPION: "champion_version", CHALLENGER: "challenger_version"}
        )
        found = []
        registry = self.aliases()
        for alias, (audited_version, entry) in audited.items():
            actual = registry.get(alias)
            if actual == audited_version:
                continue
            since = f"audit entry {entry['kind']} at {entry['at']}" if entry else "an empty audit log"
            found.append(
                {
                    "alias": alias,
                    "registry_version": actual,
                    "audited_version": audited_version,
                    "audit_id": entry["id"] if entry else None,
                    "audited_at": entry["at"] if entry else None,
                    "description": (
                        f"model {self.name!r}: alias {alias!r} is on version {actual or 'no version'} in the registry"
                        f" but on {audited_version or 'no version'} according to {since}: moved outside the platform"
                    ),
                }
            )
        return found
