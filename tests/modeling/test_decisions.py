"""What a registry change writes, built before anything is written (pure: no MLflow, no lake)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from training_lib.modeling.aliases import CHALLENGER, CHAMPION
from training_lib.modeling.decisions import (
    check_actor,
    check_decision,
    decision_alias_moves,
    decision_event,
    rollback_alias_moves,
    rollback_event,
    rollback_tags,
)
from training_lib.modeling.gate import GateDecision, decide


def version(number: str) -> SimpleNamespace:
    return SimpleNamespace(version=number, run_id=f"run-{number}")


def gate(challenger: float, champion: float | None) -> GateDecision:
    return decide(challenger, champion, floor=0.5, margin=0.01)


def test_actors_name_their_kind() -> None:
    check_actor("airflow:retrain/manual__2026-01-01")
    check_actor("user:ana")
    for bad in ("ana", "user:", ":ana", "user: ana", ""):
        with pytest.raises(ValueError, match="actor must look like"):
            check_actor(bad)


def test_a_promotion_moves_the_candidate_to_champion_and_drops_the_challenger_alias() -> None:
    assert decision_alias_moves("7", promote=True) == [(CHALLENGER, "7"), (CHAMPION, "7"), (CHALLENGER, None)]
    assert decision_alias_moves("7", promote=False) == [(CHALLENGER, "7")]


def test_decisions_that_no_longer_fit_the_registry_are_refused() -> None:
    candidate, champion = version("3"), version("2")
    check_decision("m", candidate, gate(0.9, 0.8), champion, compared_with="2")  # fits: no error
    forged = GateDecision(
        promote=True, reason="forged", challenger_pr_auc=0.7, champion_pr_auc=0.8, margin=0.01, floor=0.5
    )
    cases = [
        (forged, champion, None, "contradicts the gate"),
        (gate(0.9, 0.8), version("3"), None, "already the champion"),
        (gate(0.9, None), champion, None, "taken without a champion"),
        (gate(0.9, 0.8), None, None, "has none now"),
        (gate(0.9, 0.8), champion, "1", "against champion version 1, but the champion is now 2"),
    ]
    for decision, current, compared_with, message in cases:
        with pytest.raises(ValueError, match=message):
            check_decision("m", candidate, decision, current, compared_with)


def test_the_decision_event_names_both_versions_and_the_resulting_aliases() -> None:
    promoted = decision_event(version("3"), version("2"), gate(0.9, 0.8), {"window": "a..b"}, "user:ana")
    assert (promoted["kind"], promoted["champion_version"], promoted["challenger_version"]) == ("promotion", "3", None)
    assert promoted["previous_champion_version"] == "2" and promoted["candidate_run_id"] == "run-3"
    assert "promote" not in promoted and promoted["evaluation"] == {"window": "a..b"}
    rejected = decision_event(version("3"), version("2"), gate(0.805, 0.8), {}, "user:ana")
    assert (rejected["kind"], rejected["champion_version"], rejected["challenger_version"]) == ("rejection", "2", "3")
    first = decision_event(version("1"), None, gate(0.9, None), {}, "user:ana")
    assert (first["kind"], first["previous_champion_version"], first["champion_version"]) == ("promotion", None, "1")


def test_a_rollback_to_the_challenger_takes_its_alias_away() -> None:
    assert rollback_alias_moves("2", challenger="2") == [(CHAMPION, "2"), (CHALLENGER, None)]
    assert rollback_alias_moves("2", challenger="4") == [(CHAMPION, "2")]
    event = rollback_event(version("3"), version("2"), "2", "bad alerts", "user:ana")
    assert (event["from_version"], event["to_version"], event["challenger_version"]) == ("3", "2", None)
    assert rollback_event(version("3"), version("2"), "4", "r", "user:ana")["challenger_version"] == "4"
    tags = rollback_tags("2026-01-01T00:00:00+00:00", "3", "2", "bad alerts", "user:ana")
    assert list(tags) == ["2", "3"]  # the restored version is tagged first
    assert tags["2"]["rollback_from_version"] == "3" and tags["3"]["rolled_back_to_version"] == "2"
