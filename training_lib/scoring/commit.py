"""The commit of a scoring run: every shard there once, the predictions adding up, one partition published."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from training_lib.config import Settings
from training_lib.lake.layout import PREDICTIONS, REPORTS_SCORING, partition_prefix
from training_lib.lake.storage import Lake
from training_lib.scoring.plan import IncompleteScoring, manifest_metadata
from training_lib.scoring.shard import HISTOGRAM_BINS

log = logging.getLogger(__name__)

SUCCESS_MARKER = "_SUCCESS"


def _check_shards(specs: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results in shard order, or :class:`IncompleteScoring` naming what does not add up."""
    if not specs:
        raise IncompleteScoring("empty scoring plan: nothing to commit")
    plan = specs[0]
    day, n = plan["day"], int(plan["shards"])
    same = (
        "day", "run_id", "scored_at", "shards", "buckets", "model_name", "model_version", "validated_rows",
        "validated_version",
    )  # fmt: skip
    if sorted(spec["shard"] for spec in specs) != list(range(n)) or any(
        spec[field] != plan[field] for spec in specs for field in same
    ):
        raise IncompleteScoring(f"{day}: the specs are not one plan of {n} shard(s); nothing published")
    by_shard: dict[Any, dict[str, Any]] = {}
    for result in results:
        shard = result.get("shard")
        if shard in by_shard:
            raise IncompleteScoring(f"{day}: shard {shard} of {n} is there twice; nothing published")
        by_shard[shard] = result
    missing = [shard for shard in range(n) if shard not in by_shard]
    foreign = sorted(str(shard) for shard in by_shard if shard not in range(n))
    if missing or foreign:
        raise IncompleteScoring(
            f"{day}: shard(s) {missing} of {n} missing"
            + (f", unknown shard(s) {foreign}" if foreign else "")
            + "; nothing published"
        )
    expected = manifest_metadata(plan)
    for shard in range(n):
        result, staged = by_shard[shard], by_shard[shard]["staged"]
        provenance = {field: staged.get("metadata", {}).get(field) for field in expected}
        if (staged["dataset"], staged["day"]) != (PREDICTIONS, day) or provenance != expected:
            raise IncompleteScoring(
                f"{day}: shard {shard} was staged for {staged['dataset']}/dt={staged['day']} by {provenance},"
                f" not by this plan {expected}; nothing published"
            )
        if result["rows"] != staged["rows"]:
            raise IncompleteScoring(f"{day}: shard {shard} reports {result['rows']} rows, staged {staged['rows']}")
    rows = {shard: by_shard[shard]["rows"] for shard in range(n)}
    if sum(rows.values()) != plan["validated_rows"]:
        raise IncompleteScoring(
            f"{day}: the shards hold {sum(rows.values())} predictions (per shard {rows}) but the day has"
            f" {plan['validated_rows']} validated rows; nothing published"
        )
    return [by_shard[shard] for shard in range(n)]


def commit_scoring(
    settings: Settings,
    specs: Sequence[dict[str, Any]],
    shard_results: Sequence[dict[str, Any]],
    *,
    lake: Lake | None = None,
) -> dict[str, Any]:
    """Publish the staged shards of a plan as one ``predictions/dt=D/`` partition; returns the day's summary.

    Every shard 0..n-1 must be there exactly once, staged by this plan, and the predictions must add up to
    the plan's validated rows: else :class:`IncompleteScoring` and nothing is published (the staged parts
    stay invisible until the next commit of the day removes them).
    """
    return commit_shards(lake or Lake(settings), list(specs), list(shard_results), started=None)


def commit_shards(
    lake: Lake, specs: list[dict[str, Any]], shard_results: list[dict[str, Any]], *, started: float | None
) -> dict[str, Any]:
    import numpy as np

    ordered = _check_shards(specs, shard_results)
    plan = min(specs, key=lambda spec: spec["shard"])
    day = date.fromisoformat(plan["day"])
    combined = lake.combine_staged([result["staged"] for result in ordered], metadata=manifest_metadata(plan))
    committed = lake.commit_partition(combined)
    lake.put_bytes(f"{partition_prefix(PREDICTIONS, day)}/{SUCCESS_MARKER}", b"")
    rows = sum(result["rows"] for result in ordered)
    alerts = sum(result["alerts"] for result in ordered)
    counts = np.sum([result["histogram_counts"] for result in ordered], axis=0, dtype=np.int64)
    if started is None:  # across processes: wall time since the plan
        seconds = (datetime.now(UTC) - datetime.fromisoformat(plan["scored_at"])).total_seconds()
    else:
        seconds = time.perf_counter() - started
    summary = {
        "day": day.isoformat(),
        "rows": rows,
        "alerts": alerts,
        "alert_rate": alerts / rows if rows else 0.0,
        "score_histogram": {
            "bins": np.linspace(0, 1, HISTOGRAM_BINS + 1).round(3).tolist(),
            "counts": counts.tolist(),
        },
        "model_name": plan["model_name"],
        "model_version": plan["model_version"],
        "model_run_id": plan["model_run_id"],
        "threshold": plan["threshold"],
        "scoring_run_id": plan["run_id"],
        "partition_version": committed["version"],
        "partition_unchanged": committed["version"] != combined["version"],
        "buckets": plan["buckets"] * plan["shards"],
        "shards": plan["shards"],
        "seconds": round(seconds, 2),
        "uri": lake.uri(partition_prefix(PREDICTIONS, day) + "/"),
    }
    lake.put_report(REPORTS_SCORING, day, "summary.json", json.dumps(summary, indent=2))
    log.info(
        "%s: scored %d rows in %d shard(s) with %s v%s in %.1fs: %d alerts (%.2f%%)",
        day, rows, plan["shards"], plan["model_name"], plan["model_version"], summary["seconds"], alerts,
        100 * summary["alert_rate"],
    )  # fmt: skip
    return summary
