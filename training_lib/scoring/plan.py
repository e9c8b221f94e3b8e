"""The scoring plan of a day: the champion resolved once and one JSON spec per card shard."""

from __future__ import annotations

import logging
import math
from datetime import UTC, date, datetime
from typing import Any

from training_lib.config import Settings
from training_lib.lake.layout import VALIDATED_TRANSACTIONS, partition_prefix
from training_lib.lake.storage import Lake
from training_lib.scoring.champion import Champion, resolve_champion

log = logging.getLogger(__name__)


class IncompleteScoring(RuntimeError):
    """The shard results do not make up the planned day (missing, repeated or foreign shards, row count)."""


def manifest_metadata(spec: dict[str, Any]) -> dict[str, Any]:
    """Provenance of the predictions partition (in the manifest, not in the rows)."""
    return {
        "model_name": spec["model_name"],
        "model_version": spec["model_version"],
        "model_fitted_through": spec.get("model_fitted_through"),
        "scoring_run_id": spec["run_id"],
        "scored_at": spec["scored_at"],
    }


def plan_scoring(
    settings: Settings, day: date, run_id: str, *, lake: Lake | None = None, champion: Champion | None = None
) -> list[dict[str, Any]]:
    """One JSON-serialisable spec per shard of ``day``: the list a DAG maps ``score_shard`` over.

    Resolves ``@champion`` once (name, version, run id, threshold; the model is not loaded here), unless
    ``champion`` is given. ``shards`` = ceil(rows / ``scoring_shard_rows``) within [1, ``scoring_max_shards``];
    ``buckets`` per shard keeps each bucket near ``scoring_bucket_rows``. :class:`LookupError` when the
    day has no validated partition.
    """
    lake = lake or Lake(settings)
    manifest = lake.partition_manifest(VALIDATED_TRANSACTIONS, day)
    if manifest is None:
        raise LookupError(
            f"no validated partition for {day}: {lake.uri(partition_prefix(VALIDATED_TRANSACTIONS, day))}"
        )
    resolved = champion or resolve_champion(settings)
    name, version, fitted_through = resolved.name, resolved.version, resolved.fitted_through
    if fitted_through is not None and fitted_through >= day.isoformat():
        log.warning(
            "%s: %s v%s was fitted on days through %s, this day included: its realized quality will not be"
            " measured on this day (in-sample)", day, name, version, fitted_through,
        )  # fmt: skip
    rows = int(manifest["rows"])
    shards = max(1, min(math.ceil(rows / settings.scoring_shard_rows), settings.scoring_max_shards))
    buckets = max(1, math.ceil(rows / shards / max(1, settings.scoring_bucket_rows)))
    scored_at = datetime.now(UTC).isoformat(timespec="seconds")
    log.info("%s: %d validated rows -> %d shard(s) of %d bucket(s), %s v%s", day, rows, shards, buckets, name, version)
    return [
        {
            "day": day.isoformat(),
            "run_id": run_id,
            "scored_at": scored_at,
            "shard": shard,
            "shards": shards,
            "buckets": buckets,
            "model_name": name,
            "model_version": str(version),
            "model_run_id": resolved.run_id,
            "model_fitted_through": fitted_through,
            "threshold": float(resolved.threshold),
            "validated_rows": rows,
            "validated_version": manifest["version"],  # every shard must read this very version
        }
        for shard in range(shards)
    ]
