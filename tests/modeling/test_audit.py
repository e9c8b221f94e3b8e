"""The audit log: appends S3 refuses to overwrite (moto's S3 server), and what it says (pure, over its entries)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from support import drop_bucket, moto_settings

from training_lib.config import Settings
from training_lib.lake.objects import LakeError
from training_lib.lake.storage import Lake
from training_lib.modeling import audit
from training_lib.modeling.audit import (
    AuditLog,
    audited_aliases,
    decision_by,
    last_champion_change,
    last_decision_data_day,
)

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


# ---- appends that S3 enforces (moto's S3 server)


@pytest.fixture
def audit_settings(moto_endpoint: str) -> Iterator[Settings]:
    settings = moto_settings(moto_endpoint, "audit-test")
    yield settings
    drop_bucket(settings)


def _same_key_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two appends land on one key (same time, same id): the collision the key scheme makes unlikely."""
    monkeypatch.setattr(audit, "utc_now", lambda: datetime(2026, 1, 5, 1, 0, tzinfo=UTC))
    monkeypatch.setattr(audit.uuid, "uuid4", lambda: uuid.UUID(int=7))


def test_of_two_appends_on_one_key_exactly_one_wins(audit_settings: Settings, monkeypatch) -> None:
    _same_key_every_time(monkeypatch)
    first = AuditLog(Lake(audit_settings), "fraud-detector")
    second = AuditLog(Lake(audit_settings), "fraud-detector")
    stored = first.append({"kind": "promotion", "candidate_version": "3"})

    with pytest.raises(LakeError, match=r"refusing to overwrite audit entry .* another writer holds it"):
        second.append({"kind": "rollback", "champion_version": "2"})
    assert first.entries() == [stored]


def test_a_retried_append_of_the_same_entry_succeeds_once(audit_settings: Settings, monkeypatch) -> None:
    _same_key_every_time(monkeypatch)
    event = {"kind": "promotion", "candidate_version": "3"}
    stored = AuditLog(Lake(audit_settings), "fraud-detector").append(event)

    again = AuditLog(Lake(audit_settings), "fraud-detector").append(event)  # its first answer got lost

    assert again == stored
    assert AuditLog(Lake(audit_settings), "fraud-detector").entries() == [stored]
