"""What the audit log says, read from its entries (pure: no lake, no MLflow)."""

from __future__ import annotations

from datetime import date

from training_lib.modeling.audit import audited_aliases, decision_by, last_champion_change, last_decision_data_day

ENTRIES = [
    {"kind": "promotion", "at": "2026-01-05T01:00:00+00:00", "actor": "airflow:retrain/a", "candidate_version": "1",
     "champion_version": "1", "previous_champion_version": None, "challenger_version": None,
     "evaluation": {"data_day": "2026-01-04"}},
    {"kind": "rejection", "at": "2026-01-09T01:00:00+00:00", "actor": "airflow:retrain/b", "candidate_version": "2",
     "champion_version": "1", "previous_champion_version": "1", "challenger_version": "2", "evaluation": {}},
    {"kind": "rollback", "at": "2026-01-10T01:00:00+00:00", "actor": "user:ana", "champion_version": "1",
     "previous_champion_version": "1"},
]  # fmt: skip


def test_the_decision_of_an_actor_about_a_version() -> None:
    assert decision_by(ENTRIES, "airflow:retrain/b", 2)["kind"] == "rejection"
    assert decision_by(ENTRIES, "airflow:retrain/b", "1") is None
    assert decision_by(ENTRIES, "user:ana", "1") is None  # a rollback is not a decision


def test_the_last_decision_counts_on_its_data_day_or_else_the_day_it_was_recorded() -> None:
    assert last_decision_data_day(ENTRIES) == date(2026, 1, 9)  # the rejection has no data day
    assert last_decision_data_day(ENTRIES, excluding_actor="airflow:retrain/b") == date(2026, 1, 4)
    assert last_decision_data_day([]) is None


def test_the_last_champion_change_skips_entries_that_kept_the_champion() -> None:
    assert last_champion_change(ENTRIES)["candidate_version"] == "1"
    assert last_champion_change(ENTRIES[1:]) is None


def test_audited_aliases_are_the_newest_entry_that_set_each() -> None:
    audited = audited_aliases(ENTRIES, {"champion": "champion_version", "challenger": "challenger_version"})
    assert audited["champion"] == ("1", ENTRIES[2])
    assert audited["challenger"] == ("2", ENTRIES[1])
    assert audited_aliases([], {"champion": "champion_version"}) == {"champion": (None, None)}
