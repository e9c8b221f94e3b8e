"""When a retrain may run: the day of data it answers and the cooldown, counted in days of data."""

from __future__ import annotations

from datetime import date

from training_lib.config import Settings
from training_lib.lake.layout import VALIDATED_TRANSACTIONS
from training_lib.lake.storage import Lake


def cooldown_remaining(last_data_day: date | None, data_day: date | None, days: int) -> int:
    """Days of data a retrain must still wait (0 when it may run).

    The cooldown counts in data time, not wall-clock time: a backfill replaying a month in minutes retrains
    as often as the same month did live, and a drift that persists day after day retrains once per ``days``.
    """
    if last_data_day is None or data_day is None:
        return 0
    return max(0, (last_data_day - data_day).days + days)


PERFORMANCE = "performance"  # the reason of a drift_detected event that realized quality emitted


def cooldown_days(settings: Settings, reasons: set[str]) -> tuple[str, int]:
    """(setting, days) of the cooldown that applies to a retrain triggered for ``reasons``.

    A retrain that realized quality triggered (reason ``performance``: the champion got measurably worse on
    matured labels) waits only ``FRAUD_PERFORMANCE_COOLDOWN_DAYS`` (default 1: once per day of data): a drift
    that started the same change days earlier, before its labels matured, retrained on data that could not
    show the change, and its cooldown must not hold back the retrain that can. Every other trigger (drift,
    new labels, manual) waits ``FRAUD_RETRAIN_COOLDOWN_DAYS``. Both count days of data since the last decision.
    """
    if PERFORMANCE in reasons:
        return "FRAUD_PERFORMANCE_COOLDOWN_DAYS", settings.performance_cooldown_days
    return "FRAUD_RETRAIN_COOLDOWN_DAYS", settings.retrain_cooldown_days


def retrain_data_day(settings: Settings, triggering_days: list[str]) -> date | None:
    """The day of data a retrain answers: the newest day its triggering Asset events carry, else (a manual
    run) the newest validated day in the lake; None when there is no data yet."""
    if triggering_days:
        return max(date.fromisoformat(day) for day in triggering_days)
    validated = Lake(settings).list_partitions(VALIDATED_TRANSACTIONS)
    return max(validated) if validated else None
