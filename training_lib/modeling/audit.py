"""The registry's audit log: append-only, one JSON object per event under ``audit/registry/<model>/`` in the
lake, never overwritten; and the kinds of event the registry writes there."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from training_lib.lake.layout import AUDIT_REGISTRY
from training_lib.lake.objects import LakeConflict, LakeError
from training_lib.lake.storage import Lake

log = logging.getLogger(__name__)

PROMOTION = "promotion"
REJECTION = "rejection"
ROLLBACK = "rollback"
DECISION_KINDS = (PROMOTION, REJECTION)

_RESERVED_KEYS = ("at", "id", "model")


def utc_now() -> datetime:
    return datetime.now(UTC)


class AuditLog:
    """Append-only: one JSON object per event under ``audit/registry/<model>/<UTC timestamp>-<uuid>.json``.

    An object is never overwritten: keys are unique (timestamp + random uuid) and :meth:`append` writes with
    ``If-None-Match: *``, so S3 itself refuses a key that exists, even to a concurrent writer. Keys sort
    chronologically; within one process timestamps strictly increase.
    """

    def __init__(self, lake: Lake, model_name: str) -> None:
        if not model_name.strip():
            raise ValueError("model name must not be empty")
        self.lake = lake
        self.model_name = model_name
        self.prefix = f"{AUDIT_REGISTRY}/{quote(model_name, safe='-_.')}/"
        self._last_at: datetime | None = None

    def __repr__(self) -> str:
        return f"AuditLog({self.lake.uri(self.prefix)})"

    def _next_time(self) -> datetime:
        now = utc_now()
        if self._last_at is not None and now <= self._last_at:
            now = self._last_at + timedelta(microseconds=1)
        self._last_at = now
        return now

    def append(self, event: dict[str, Any]) -> dict[str, Any]:
        """Store ``event`` plus ``at`` (UTC ISO), ``id`` and ``model``; returns the stored entry."""
        if not isinstance(event.get("kind"), str) or not event["kind"]:
            raise ValueError(f"an audit event needs a 'kind' string, got {event.get('kind')!r}")
        clash = sorted(set(_RESERVED_KEYS) & set(event))
        if clash:
            raise ValueError(f"audit event keys {clash} are set by the audit log")
        at = self._next_time()
        entry_id = uuid.uuid4().hex
        entry = {"at": at.isoformat(), "id": entry_id, "model": self.model_name, **event}
        json.dumps(entry, allow_nan=False)  # fail before writing anything that would not read back as JSON
        key = f"{self.prefix}{at:%Y%m%dT%H%M%S%fZ}-{entry_id}.json"
        try:
            self.lake.put_json(key, entry, if_none_match=True)
        except LakeConflict as exc:
            if self.lake.get_json(key, missing_ok=True) == entry:  # our own PUT, retried after a lost answer
                return entry
            raise LakeError(f"refusing to overwrite audit entry {self.lake.uri(key)}: another writer holds it") from exc
        return entry

    def keys(self) -> list[str]:
        return [key for key in self.lake.list_keys(self.prefix) if key.endswith(".json")]

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, oldest first."""
        return [self.lake.get_json(key) for key in self.keys()]

    def last(self, kind: str | None = None) -> dict[str, Any] | None:
        """The newest entry (of ``kind``, if given)."""
        for key in reversed(self.keys()):
            entry = self.lake.get_json(key)
            if kind is None or entry.get("kind") == kind:
                return entry
        return None


# ---- what the log says (pure: over :meth:`AuditLog.entries`, oldest first)


def decision_by(entries: list[dict[str, Any]], actor: str, candidate_version: str | int) -> dict[str, Any] | None:
    """The newest decision ``actor`` took about ``candidate_version``, if any."""
    for entry in reversed(entries):
        if (
            entry.get("kind") in DECISION_KINDS
            and entry.get("actor") == actor
            and str(entry.get("candidate_version")) == str(candidate_version)
        ):
            return entry
    return None


def last_decision_data_day(entries: list[dict[str, Any]], *, excluding_actor: str | None = None) -> date | None:
    """The data day of the newest promotion or rejection; None if none.

    Decisions carry ``evaluation.data_day`` (see ``train.retrain_data_day``); one without it counts on the day
    it was recorded. ``excluding_actor``: ignore that actor's decisions (a re-run of a retrain run is not
    inside its own cooldown)."""
    for entry in reversed(entries):
        if entry.get("kind") in DECISION_KINDS and (excluding_actor is None or entry.get("actor") != excluding_actor):
            recorded = (entry.get("evaluation") or {}).get("data_day")
            return date.fromisoformat(recorded) if recorded else datetime.fromisoformat(entry["at"]).date()
    return None


def last_champion_change(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest entry that moved the champion to another version (promotion or rollback), if any."""
    changes = [
        e
        for e in entries
        if e.get("champion_version") and e.get("champion_version") != e.get("previous_champion_version")
    ]
    return changes[-1] if changes else None


def audited_aliases(
    entries: list[dict[str, Any]], fields: dict[str, str]
) -> dict[str, tuple[str | None, dict[str, Any] | None]]:
    """Per alias, (version, entry) of the newest entry that set its field (``fields``: alias -> entry field);
    (None, None) when no entry did."""
    out: dict[str, tuple[str | None, dict[str, Any] | None]] = {}
    for alias, field_name in fields.items():
        entry = next((e for e in reversed(entries) if field_name in e), None)
        out[alias] = (entry[field_name] if entry else None, entry)
    return out
