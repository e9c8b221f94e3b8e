"""What a registry change writes, built before anything is written (pure: no MLflow, no lake).

A gate decision or a rollback is three things, applied by :class:`~training_lib.modeling.registry.Registry` in
this order: alias moves, version tags, one audit event. This module builds each of them from the versions
involved and refuses (ValueError, nothing written) a decision that no longer fits the registry.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from training_lib.modeling.aliases import CHALLENGER, CHAMPION
from training_lib.modeling.audit import PROMOTION, REJECTION, ROLLBACK
from training_lib.modeling.gate import GateDecision, decide, json_number

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

AIRFLOW_ACTOR_PREFIX = "airflow:"  # an Airflow run decides once: its re-run finds its entry and repeats nothing
_ACTOR_RE = re.compile(r"^[A-Za-z][\w.-]*:\S.*$")

AliasMoves = list[tuple[str, str | None]]  # (alias, version) in order; version None removes the alias


def check_actor(actor: str) -> None:
    """ValueError unless ``actor`` reads ``<kind>:<who>`` (``airflow:retrain/<run_id>``, ``user:alice``)."""
    if not isinstance(actor, str) or not _ACTOR_RE.match(actor):
        raise ValueError(f"actor must look like 'airflow:retrain/<run_id>' or 'user:alice', got {actor!r}")


# -- gate decisions ----------------------------------------------------------------------------------------------------


def check_decision(
    model: str,
    candidate: ModelVersion,
    decision: GateDecision,
    champion: ModelVersion | None,
    compared_with: str | int | None,
) -> None:
    """ValueError when ``decision`` about ``candidate`` does not fit the registry's current ``champion``.

    Refused: a decision that contradicts :func:`decide` on its own numbers, a candidate that is the champion,
    a decision taken without a champion when there is one now (or against one when there is none), and, with
    ``compared_with``, a champion whose version changed since.
    """
    cand = candidate.version
    recomputed = decide(
        decision.challenger_pr_auc, decision.champion_pr_auc, floor=decision.floor, margin=decision.margin
    )
    if recomputed.promote != decision.promote:
        raise ValueError(
            f"decision promote={decision.promote} contradicts the gate on its own numbers: {recomputed.reason}"
        )
    if champion is not None and champion.version == cand:
        raise ValueError(f"model {model!r} version {cand} is already the champion: nothing to decide")
    if decision.champion_pr_auc is None and champion is not None:
        raise ValueError(
            f"the decision about version {cand} was taken without a champion, but version {champion.version}"
            " is champion now: evaluate against it again"
        )
    if decision.champion_pr_auc is not None and champion is None:
        raise ValueError(
            f"the decision about version {cand} compared it with a champion, but model {model!r} has none now"
        )
    if compared_with is not None and (champion is None or champion.version != str(compared_with)):
        raise ValueError(
            f"the decision about version {cand} was taken against champion version {compared_with}, but the"
            f" champion is now {champion.version if champion else 'none'}: evaluate again"
        )


def decision_alias_moves(candidate: str, promote: bool) -> AliasMoves:
    """The candidate becomes challenger; promoted, it becomes champion and the challenger alias goes."""
    moves: AliasMoves = [(CHALLENGER, candidate)]
    if promote:
        moves += [(CHAMPION, candidate), (CHALLENGER, None)]
    return moves


def decision_tags(
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


def challenge_tags(kind: str, decided_at: str, decision: GateDecision, window: Any, candidate: str) -> dict[str, Any]:
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


def decision_event(
    candidate: ModelVersion,
    champion: ModelVersion | None,
    decision: GateDecision,
    evaluation: dict[str, Any],
    actor: str,
) -> dict[str, Any]:
    """The audit event of a decision, ``promotion`` or ``rejection`` (the audit log adds its id, time, model)."""
    cand = candidate.version
    return {
        "kind": PROMOTION if decision.promote else REJECTION,
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


# -- rollbacks ---------------------------------------------------------------------------------------------------------


def rollback_alias_moves(target: str, challenger: str | None) -> AliasMoves:
    """The champion alias moves to ``target``; a target that was challenger loses that alias."""
    moves: AliasMoves = [(CHAMPION, target)]
    if challenger == target:
        moves.append((CHALLENGER, None))
    return moves


def rollback_tags(at: str, current: str, target: str, reason: str, actor: str) -> dict[str, dict[str, Any]]:
    """version -> the tags a rollback leaves on it: the restored ``target`` and the replaced ``current``."""
    return {
        target: {
            "rollback_restored_at": at,
            "rollback_from_version": current,
            "rollback_reason": reason,
            "rollback_actor": actor,
        },
        current: {
            "rolled_back_at": at,
            "rolled_back_to_version": target,
            "rolled_back_reason": reason,
            "rolled_back_actor": actor,
        },
    }


def rollback_event(
    current: ModelVersion, target: ModelVersion, challenger: str | None, reason: str, actor: str
) -> dict[str, Any]:
    """The audit event of a rollback from the ``current`` champion to ``target``."""
    return {
        "kind": ROLLBACK,
        "from_version": current.version,
        "from_run_id": current.run_id,
        "to_version": target.version,
        "to_run_id": target.run_id,
        "previous_champion_version": current.version,
        "champion_version": target.version,
        "challenger_version": None if challenger == target.version else challenger,
        "reason": reason,
        "actor": actor,
    }
