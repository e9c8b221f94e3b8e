"""Champion/challenger in the MLflow model registry: decisions applied, aliases moved and audited, rollback.

The registry state is two **aliases** on the registered model (stages are deprecated and never used):

* ``champion``: the version batch scoring loads (``models:/<name>@champion``);
* ``challenger``: the latest candidate that did not beat the champion (removed when a candidate is promoted).

The gate is pure (``modeling.gate``: :func:`decide`, :func:`gate_decision`), so is what a change writes
(``modeling.decisions``); MLflow reads and raw alias moves are ``modeling.aliases.RegisteredModel``.
:meth:`Registry.record_decision` applies a decision to the registry and ``modeling.audit.AuditLog`` keeps one
JSON object per event under ``audit/registry/<model>/`` in the lake, never overwritten.
:meth:`Registry.rollback` moves the champion back (by default to the champion before the current one,
according to the audit log).

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

import logging
from datetime import date
from typing import TYPE_CHECKING, Any

from training_lib.config import Settings
from training_lib.lake.storage import Lake
from training_lib.modeling.aliases import CHALLENGER, CHAMPION, RegisteredModel, RegistryError
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
from training_lib.modeling.decisions import (
    AIRFLOW_ACTOR_PREFIX,
    challenge_tags,
    check_actor,
    check_decision,
    decision_alias_moves,
    decision_event,
    decision_tags,
    rollback_alias_moves,
    rollback_event,
    rollback_tags,
)
from training_lib.modeling.gate import GateDecision, decide, gate_decision

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)


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


class Registry(RegisteredModel):
    """Champion/challenger aliases of ``settings.model_name``, changed only through audited operations."""

    def __init__(self, settings: Settings, client: MlflowClient | None = None, lake: Lake | None = None) -> None:
        super().__init__(settings, client)
        self.lake = lake if lake is not None else Lake(settings)
        self.audit = AuditLog(self.lake, self.name)

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {self.settings.mlflow_tracking_uri})"

    def gate(self, challenger_pr_auc: float, champion_pr_auc: float | None) -> GateDecision:
        """:func:`decide` with the configured floor and margin."""
        return decide(
            challenger_pr_auc,
            champion_pr_auc,
            floor=self.settings.promotion_floor,
            margin=self.settings.promotion_margin,
        )

    # -- audited changes ------------------------------------------------------------------------------------------

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
        check_actor(actor)
        candidate = self.version(candidate_version)
        earlier = self._earlier_decision(actor, candidate.version)
        if earlier is not None:  # a re-run of the run that decided: the decision stands, nothing moves again
            return earlier
        champion = self.champion()
        check_decision(self.name, candidate, decision, champion, compared_with)
        if decision.promote:
            self.threshold(candidate)  # a champion without a threshold cannot score
        self._move_aliases(decision_alias_moves(candidate.version, decision.promote))  # 1. aliases
        tag_errors = self._tag_decision(candidate, champion, decision, evaluation, actor)  # 2. tags
        return self._audit(decision_event(candidate, champion, decision, evaluation, actor), tag_errors)  # 3. audit

    def _earlier_decision(self, actor: str, candidate: str) -> dict[str, Any] | None:
        """The entry of an Airflow run that decided about ``candidate`` already, marked ``replayed``."""
        earlier = self.decision_by(actor, candidate) if actor.startswith(AIRFLOW_ACTOR_PREFIX) else None
        if earlier is None:
            return None
        log.info("version %s: %s already decided by %s at %s; not applied again", candidate, earlier["kind"],
                 actor, earlier["at"])  # fmt: skip
        return {**earlier, "replayed": True}

    def _tag_decision(
        self,
        candidate: ModelVersion,
        champion: ModelVersion | None,
        decision: GateDecision,
        evaluation: dict[str, Any],
        actor: str,
    ) -> list[str]:
        """Tag the candidate with the decision and the champion with the challenge; the tag failures."""
        kind = PROMOTION if decision.promote else REJECTION
        decided_at, window = utc_now().isoformat(), evaluation.get("window")
        failures = self._tag(candidate.version, decision_tags(kind, decided_at, decision, window, champion, actor))
        if champion is not None:
            failures += self._tag(
                champion.version, challenge_tags(kind, decided_at, decision, window, candidate.version)
            )
        return failures

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
        check_actor(actor)
        if not reason.strip():
            raise ValueError("a rollback needs a reason")
        earlier = self._earlier_rollback(actor)
        if earlier is not None:  # a re-run of the run that rolled back: done already, never back and forth
            return earlier
        current, target = self._rollback_versions(to_version)
        challenger = self.aliases().get(CHALLENGER)
        self._move_aliases(rollback_alias_moves(target.version, challenger))  # 1. aliases
        at = utc_now().isoformat()
        tags = rollback_tags(at, current.version, target.version, reason, actor)
        tag_errors = [failure for version, values in tags.items() for failure in self._tag(version, values)]  # 2.
        return self._audit(rollback_event(current, target, challenger, reason, actor), tag_errors)  # 3. audit

    def _earlier_rollback(self, actor: str) -> dict[str, Any] | None:
        """The entry of an Airflow run that rolled back already, marked ``replayed`` (a person may roll back
        several times; a run only once)."""
        if not actor.startswith(AIRFLOW_ACTOR_PREFIX):
            return None
        entries = reversed(self.audit.entries())
        earlier = next((e for e in entries if e.get("kind") == ROLLBACK and e["actor"] == actor), None)
        if earlier is None:
            return None
        log.info("rollback by %s already done at %s; not applied again", actor, earlier["at"])
        return {**earlier, "replayed": True}

    def _rollback_versions(self, to_version: str | int | None) -> tuple[ModelVersion, ModelVersion]:
        """(current champion, rollback target), after the checks :meth:`rollback` promises (ValueError)."""
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
        return current, target

    def _audit(self, event: dict[str, Any], tag_errors: list[str]) -> dict[str, Any]:
        """Append the event (with its ``tag_errors``, if any): the last write of every change."""
        if tag_errors:
            event = {**event, "tag_errors": tag_errors}
        try:
            return self.audit.append(event)
        except Exception as exc:
            raise RegistryError(
                f"model {self.name!r}: aliases were moved (champion={event.get('champion_version')},"
                f" challenger={event.get('challenger_version')}) but the audit entry could not be written: {exc};"
                " alias_moves_outside_platform() reports this move until it is audited"
            ) from exc

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
