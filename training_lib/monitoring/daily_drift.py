"""The daily drift check: choose the reference, run the Evidently report, persist it in ``reports/drift/``.

The reference is the champion's (logged with the model at training), or, before the first model, a
bootstrap sample of the first validated days, frozen once ``drift_reference_days`` of them exist.
Computing the report is :mod:`training_lib.monitoring.drift`'s; this module only picks inputs and stores.
"""

from __future__ import annotations

import io
import json
import logging
from datetime import date
from typing import Any

from training_lib.config import Settings
from training_lib.lake.layout import REPORTS_DRIFT, VALIDATED_TRANSACTIONS
from training_lib.lake.storage import Lake, PartitionNotFound
from training_lib.modeling.reference import CHAMPION_REFERENCE_ARTIFACT, build_reference
from training_lib.monitoring.drift import run_drift_report

log = logging.getLogger(__name__)

BOOTSTRAP_REFERENCE_KEY = "reference/drift/bootstrap.parquet"


def champion_reference(settings: Settings) -> tuple[Any, dict[str, Any]] | None:
    """The drift reference sample logged with the champion model, if there is a champion."""
    import tempfile

    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from training_lib.modeling.registry import Registry

    version = Registry(settings).champion()
    if version is None:
        return None
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(version.run_id, CHAMPION_REFERENCE_ARTIFACT, folder)
        except MlflowException:
            log.warning(
                "champion v%s has no %s; using the bootstrap reference", version.version, CHAMPION_REFERENCE_ARTIFACT
            )
            return None
        frame = pd.read_parquet(path)
    return frame, {"source": "champion", "model_version": version.version, "run_id": version.run_id}


def bootstrap_reference(settings: Settings, lake: Lake, day: date) -> tuple[Any, dict[str, Any]] | None:
    """Before the first model: the first validated days (frozen once ``drift_reference_days`` exist).

    A day inside or before the frozen window is compared with the validated days before it, as on its first
    run, so re-running an early day (a backfill) gives the same report instead of one against its own data."""
    import pandas as pd

    frozen = lake.get_json(BOOTSTRAP_REFERENCE_KEY + ".json", missing_ok=True)
    if frozen and day.isoformat() > max(frozen["days"]):  # the JSON is written after the Parquet
        frame = pd.read_parquet(io.BytesIO(lake.get_bytes(BOOTSTRAP_REFERENCE_KEY)))
        return frame, {"source": "bootstrap", **frozen}
    earlier = [d for d in lake.list_partitions(VALIDATED_TRANSACTIONS) if d < day][: settings.drift_reference_days]
    if not earlier:
        return None
    frames = [lake.read_partition(VALIDATED_TRANSACTIONS, d).to_pandas() for d in earlier]
    reference = build_reference(frames)
    info: dict[str, Any] = {"days": [d.isoformat() for d in earlier], "rows": len(reference)}
    if len(earlier) == settings.drift_reference_days:
        info["frozen"] = True
        if not frozen:
            buffer = io.BytesIO()
            reference.to_parquet(buffer, index=False)
            lake.put_bytes(BOOTSTRAP_REFERENCE_KEY, buffer.getvalue())
            lake.put_json(BOOTSTRAP_REFERENCE_KEY + ".json", info)
    return reference, {"source": "bootstrap", **info}


def drift_day(settings: Settings, day: date) -> dict[str, Any]:
    """Evidently drift report of the validated day against the reference; HTML + JSON in reports/drift."""
    lake = Lake(settings)
    try:
        current = lake.read_partition(VALIDATED_TRANSACTIONS, day).to_pandas()
    except PartitionNotFound as exc:
        raise RuntimeError(f"{day}: no validated partition to check for drift ({exc})") from exc
    found = champion_reference(settings) or bootstrap_reference(settings, lake, day)
    if found is None:
        summary = {
            "day": day.isoformat(),
            "status": "no_reference",
            "drift_detected": False,
            "share": 0.0,
            "threshold": settings.drift_threshold,
            "drifted_columns": [],
            "note": "first validated day: it becomes part of the reference",
        }
        lake.put_report(REPORTS_DRIFT, day, "summary.json", json.dumps(summary, indent=2))
        return summary
    reference, reference_info = found
    result = run_drift_report(current, reference, settings.drift_threshold, day=day)
    summary = {**result.summary, "status": "computed", "reference": reference_info}
    summary["report_uri"] = lake.put_report(REPORTS_DRIFT, day, "report.html", result.html, "text/html")
    lake.put_report(REPORTS_DRIFT, day, "summary.json", json.dumps(summary, indent=2, default=str))
    log.info(
        "%s: drift share %.2f (threshold %.2f), drifted: %s",
        day,
        summary["share"],
        settings.drift_threshold,
        summary["drifted_columns"],
    )
    return summary
