"""The promotion gate, pure: :func:`decide` on two PR-AUCs with a floor and a margin, :func:`gate_decision` on
a retrain's evaluation (no comparable day keeps the champion). No MLflow, no lake."""

from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_EPSILON = 1e-12  # float noise: 0.80 + 0.01 is 0.8100000000000001, yet 0.81 meets a margin of 0.01


@dataclass(frozen=True)
class GateDecision:
    """The outcome of the promotion gate, with the numbers it was taken on."""

    promote: bool
    reason: str
    challenger_pr_auc: float
    champion_pr_auc: float | None
    floor: float
    margin: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reason": self.reason,
            "challenger_pr_auc": json_number(self.challenger_pr_auc),
            "champion_pr_auc": json_number(self.champion_pr_auc),
            "floor": self.floor,
            "margin": self.margin,
        }


def decide(challenger_pr_auc: float, champion_pr_auc: float | None, *, floor: float, margin: float) -> GateDecision:
    """Promote only if the challenger reaches ``floor`` and (there is no champion or it beats it by ``margin``).

    Pure. A NaN or infinite PR-AUC (challenger or champion) never promotes; "beats by the margin" tolerates
    float noise (1e-12), so 0.81 against 0.80 meets a margin of 0.01.
    """
    challenger_pr_auc = as_float(challenger_pr_auc)
    champion_pr_auc = None if champion_pr_auc is None else as_float(champion_pr_auc)

    def verdict(promote: bool, reason: str) -> GateDecision:
        return GateDecision(promote, reason, challenger_pr_auc, champion_pr_auc, floor, margin)

    if not finite(challenger_pr_auc):
        return verdict(False, f"challenger PR-AUC is {challenger_pr_auc}: not a usable metric")
    if challenger_pr_auc < floor - _EPSILON:
        return verdict(False, f"challenger PR-AUC {challenger_pr_auc:.3f} is below the floor {floor:.3f}")
    if champion_pr_auc is None:
        return verdict(
            True, f"first model: challenger PR-AUC {challenger_pr_auc:.3f} >= floor {floor:.3f} (no champion)"
        )
    if not finite(champion_pr_auc):
        return verdict(False, f"champion PR-AUC is {champion_pr_auc}: cannot compare, keeping the champion")
    gain = challenger_pr_auc - champion_pr_auc
    if gain >= margin - _EPSILON:
        return verdict(
            True,
            f"challenger PR-AUC {challenger_pr_auc:.3f} beats champion {champion_pr_auc:.3f}"
            f" by {gain:.3f} >= margin {margin:.3f}",
        )
    return verdict(
        False,
        f"challenger PR-AUC {challenger_pr_auc:.3f} vs champion {champion_pr_auc:.3f}:"
        f" gain {gain:.3f} < margin {margin:.3f}",
    )


def gate_decision(evaluation: dict[str, Any], *, floor: float, margin: float) -> GateDecision:
    """:func:`decide` on an evaluation (``train.evaluate_candidates``); no comparable day keeps the champion.

    Pure. With a champion but no day that neither model was fitted on, there is no evidence either way: the
    candidate is rejected (champion PR-AUC recorded as NaN) with a reason that says so."""
    challenger, champion = evaluation.get("candidate_pr_auc"), evaluation.get("champion_pr_auc")
    if evaluation.get("comparable", True):
        return decide(challenger, champion, floor=floor, margin=margin)
    if not evaluation.get("rows"):
        why = (
            f"no matured day after version {evaluation.get('champion_version')}'s training window (through "
            f"{evaluation.get('champion_fitted_through')}) among the test days: no evidence, keeping the champion"
        )
    else:
        why = f"the {evaluation['rows']} test rows both models may be judged on hold a single class: no evidence"
    champion_number = math.nan if evaluation.get("champion_version") else None
    return GateDecision(
        False, why, as_float(challenger if challenger is not None else math.nan), champion_number, floor, margin
    )


def finite(value: float | None) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def as_float(value: Any) -> Any:
    """numpy scalars and ints as plain floats (JSON, formatting); anything else unchanged (and refused later)."""
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else value


def json_number(value: float | None) -> float | str | None:
    """JSON has no NaN: non-finite numbers are stored as strings ("nan", "inf")."""
    if value is None or finite(value):
        return value
    return str(value)
