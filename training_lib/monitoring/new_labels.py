"""The labels retrain signal: how many labels matured after the champion's training cut-off."""

from __future__ import annotations

from datetime import date
from typing import Any

from training_lib.config import Settings
from training_lib.lake.layout import LABELS
from training_lib.lake.storage import Lake
from training_lib.modeling.aliases import LABELS_THROUGH_TAG


def champion_labels_through(settings: Settings) -> date | None:
    """The last label day the champion was trained with (model version tag), or None without a champion."""
    from training_lib.modeling.registry import Registry

    version = Registry(settings).champion()
    tag = (version.tags or {}).get(LABELS_THROUGH_TAG) if version is not None else None
    return date.fromisoformat(tag) if tag else None


def new_labels_status(settings: Settings, day: date) -> dict[str, Any]:
    """Labels stored after the champion's training cut-off, up to ``day``; enough to retrain?"""
    lake = Lake(settings)
    since = champion_labels_through(settings)
    days = [d for d in lake.list_partitions(LABELS) if d <= day and (since is None or d > since)]
    count = sum((lake.partition_manifest(LABELS, d) or {}).get("rows", 0) for d in days)
    return {
        "day": day.isoformat(),
        "count": count,
        "since": since.isoformat() if since else None,
        "min_new_labels": settings.min_new_labels,
        "enough": count >= settings.min_new_labels,
    }
