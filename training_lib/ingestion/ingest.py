"""Daily ingestion steps, one function per DAG task: validate and publish transactions, store labels.

Each step takes the settings and the logical day, talks to the lake, and returns a small JSON-able dict
(it travels as XCom and becomes Asset-event extra). No Airflow imports: the DAG files call these.
"""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from training_lib.config import Settings
from training_lib.lake.layout import (
    LABELS,
    LANDING_LABELS,
    LANDING_TRANSACTIONS,
    QUARANTINE_LABELS,
    QUARANTINE_TRANSACTIONS,
    REPORTS_QUALITY,
    VALIDATED_TRANSACTIONS,
)
from training_lib.lake.storage import Lake

log = logging.getLogger(__name__)


class NoLandingData(RuntimeError):
    """Nothing has landed for the day; the message names the prefix that was searched."""


def _landing(lake: Lake, dataset: str, day: date) -> list[tuple[str, bytes]]:
    keys = lake.landing_files(dataset, day)
    if not keys:
        raise NoLandingData(f"no files under {lake.uri(f'{dataset}/dt={day.isoformat()}/')}")
    return [(key, lake.get_bytes(key)) for key in keys]


def _lookback(lake: Lake, dataset: str, day: date, days: int) -> list[date]:
    first = day - timedelta(days=days)
    return [d for d in lake.list_partitions(dataset) if first <= d < day]


def earlier_trans_nums(lake: Lake, day: date, lookback_days: int) -> set[str]:
    """trans_num values of validated days before ``day`` (within the lookback)."""
    days = _lookback(lake, VALIDATED_TRANSACTIONS, day, lookback_days)
    if not days:
        return set()
    table = lake.read_partitions(VALIDATED_TRANSACTIONS, days, columns=["trans_num"])
    return set(table.column("trans_num").to_pylist())


# --------------------------------------------------------------------------- transactions


def publish_quality_report(lake: Lake, day: date, summary: dict[str, Any], docs_dir: Path | None) -> str:
    """``reports/quality/dt=D/summary.json`` and the GX Data Docs site under ``data_docs/``.

    The day's site is replaced, not merged: pages of an earlier validation of the day (GX names them by run
    time) are deleted once the new site is up, so a re-run leaves one site describing the latest validation."""
    from training_lib.ingestion.expectations import data_docs_files

    if docs_dir is not None:
        written = {
            lake.put_report(REPORTS_QUALITY, day, f"data_docs/{relative}", path.read_bytes())
            for relative, path in data_docs_files(docs_dir)
        }
        stale = lake.list_keys(lake.report_key(REPORTS_QUALITY, day, "data_docs/"))
        lake.delete_keys([key for key in stale if key not in written])
    return lake.put_report(REPORTS_QUALITY, day, "summary.json", json.dumps(summary, indent=2, default=str))


def validate_transactions_day(settings: Settings, day: date) -> dict[str, Any]:
    """Run the quality suite over the day's landing files; stage (not publish) both partitions.

    Writes the quality report first, so a day held back by the gate still explains itself. Above the
    quarantine-share limit the quarantined rows are published (row, file, line and reason, for whoever fixes
    the feed), no validated row is, and :class:`~training_lib.ingestion.quality.QualityGateError` says so.
    """
    import shutil

    from training_lib.ingestion.expectations import temporary_docs_dir
    from training_lib.ingestion.quality import enforce_quarantine_limit, exceeds_quarantine_limit, validate_transactions
    from training_lib.ingestion.quarantine import quarantine_arrow
    from training_lib.ingestion.schema import to_validated_arrow

    lake = Lake(settings)
    files = _landing(lake, LANDING_TRANSACTIONS, day)
    docs_dir = temporary_docs_dir()
    try:
        outcome = validate_transactions(
            files, day, earlier_trans_nums(lake, day, settings.dedup_lookback_days), docs_dir=docs_dir
        )
        summary = outcome.summary(limit=settings.quarantine_share_limit)
        summary["held_back"] = exceeds_quarantine_limit(outcome, settings.quarantine_share_limit)
        publish_quality_report(lake, day, summary, docs_dir)
    finally:
        shutil.rmtree(docs_dir, ignore_errors=True)
    log.info(
        "%s: %d rows in %d file(s): %d validated, %d quarantined (%.2f%%)",
        day,
        outcome.rows_in,
        len(files),
        len(outcome.validated),
        len(outcome.quarantined),
        100 * outcome.quarantine_share,
    )
    source = {"files": [name for name, _ in files], "rows_in": outcome.rows_in}
    if summary["held_back"]:
        quarantine = quarantine_arrow(outcome.quarantined)
        lake.publish_partition(QUARANTINE_TRANSACTIONS, day, quarantine, metadata={**source, "held_back": True})
        where = lake.uri(f"{QUARANTINE_TRANSACTIONS}/dt={day.isoformat()}/")
        enforce_quarantine_limit(outcome, settings.quarantine_share_limit, quarantine_uri=where)
    staged_validated = lake.stage_partition(
        VALIDATED_TRANSACTIONS, day, to_validated_arrow(outcome.validated), metadata=source
    )
    staged_quarantine = lake.stage_partition(
        QUARANTINE_TRANSACTIONS, day, quarantine_arrow(outcome.quarantined), metadata=source
    )
    return {
        "day": day.isoformat(),
        "rows_in": outcome.rows_in,
        "validated": len(outcome.validated),
        "quarantined": len(outcome.quarantined),
        "quarantine_share": summary["quarantine_share"],
        "reasons": summary["reasons"],
        "staged": {"validated": staged_validated, "quarantine": staged_quarantine},
    }


def publish_transactions_day(settings: Settings, validation: dict[str, Any]) -> dict[str, Any]:
    """Commit the staged partitions (quarantine first, so validated rows never appear without it)."""
    lake = Lake(settings)
    quarantine = lake.commit_partition(validation["staged"]["quarantine"])
    validated = lake.commit_partition(validation["staged"]["validated"])
    return {
        "dt": validation["day"],
        "rows": validated["rows"],
        "quarantined": quarantine["rows"],
        "version": validated["version"],
        "uri": lake.uri(f"{VALIDATED_TRANSACTIONS}/dt={validation['day']}/"),
    }


# --------------------------------------------------------------------------- labels


def stored_labels(lake: Lake, day: date, lookback_days: int) -> dict[str, int]:
    days = _lookback(lake, LABELS, day, lookback_days)
    if not days:
        return {}
    table = lake.read_partitions(LABELS, days, columns=["trans_num", "is_fraud"])
    return dict(zip(table.column("trans_num").to_pylist(), table.column("is_fraud").to_pylist(), strict=True))


def ingest_labels_day(settings: Settings, day: date) -> dict[str, Any]:
    """Validate the day's label files and publish ``labels/dt=D`` and ``quarantine/labels/dt=D``."""
    import pyarrow as pa

    from training_lib.ingestion.quality import validate_labels
    from training_lib.ingestion.quarantine import quarantine_arrow
    from training_lib.ingestion.schema import label_arrow_schema

    lake = Lake(settings)
    files = _landing(lake, LANDING_LABELS, day)
    window = settings.label_window_days
    known = earlier_trans_nums(lake, day + timedelta(days=1), window)
    outcome = validate_labels(files, day, known, stored_labels(lake, day, window))
    schema = label_arrow_schema()
    labels = pa.Table.from_pandas(outcome.validated[list(schema.names)], schema=schema, preserve_index=False)
    source = {"files": [name for name, _ in files]}
    lake.publish_partition(QUARANTINE_LABELS, day, quarantine_arrow(outcome.quarantined), metadata=source)
    manifest = lake.publish_partition(LABELS, day, labels, metadata=source)
    summary = outcome.summary()
    summary["frauds"] = int(outcome.validated["is_fraud"].sum()) if len(outcome.validated) else 0
    summary["version"] = manifest["version"]
    log.info(
        "%s: %d labels stored (%d fraud), %d quarantined",
        day,
        summary["validated"],
        summary["frauds"],
        summary["quarantined"],
    )
    return summary
