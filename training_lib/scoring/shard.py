"""One shard of a plan: its spilled card buckets scored bucket by bucket, its part files staged (invisible)."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training_lib.config import Settings
from training_lib.lake.layout import PREDICTIONS, VALIDATED_TRANSACTIONS
from training_lib.lake.storage import Lake
from training_lib.scoring.champion import Champion, champion_of_plan, decisions
from training_lib.scoring.plan import IncompleteScoring, manifest_metadata
from training_lib.scoring.spill import read_spill, spill_inputs, spill_name

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

HISTOGRAM_BINS = 20


def prediction_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("trans_num", pa.string()),
            ("card_token", pa.string()),
            ("amt", pa.float64()),
            ("category", pa.string()),
            ("score", pa.float64()),
            ("decision", pa.int8()),
            ("model_name", pa.string()),
            ("model_version", pa.string()),
        ]
    )


def _score_buckets(folder: Path, shard: int, buckets: int, champion: Champion) -> Iterator[pa.Table]:
    import pyarrow as pa

    from training_lib.modeling.features import FEATURE_COLUMNS, build_features, feature_frame
    from training_lib.scoring.predict import fraud_scorer

    schema = prediction_schema()
    score = fraud_scorer(champion.model)  # once per shard: the model's layout is inspected once
    for bucket in range(buckets):
        target_path = folder / spill_name("day", shard, bucket)
        if not target_path.exists():
            continue
        target_table = read_spill(target_path)
        target = feature_frame(target_table)
        history_paths = sorted(folder.glob(spill_name("hist*", shard, bucket)))
        history = None
        if history_paths:
            history = feature_frame(pa.concat_tables([read_spill(path) for path in history_paths]))
        features = build_features(target, history)
        scores = score(features[list(FEATURE_COLUMNS)])
        n = len(target)
        spilled = target_table.select(["trans_num", "cc_num", "amt", "category"])  # rows in the frame's order
        yield pa.table(
            [
                *spilled.columns,  # cc_num was spilled as the card token
                pa.array(scores, pa.float64()),
                pa.array(decisions(scores, champion.threshold), pa.int8()),
                pa.repeat(pa.scalar(champion.name, pa.string()), n),
                pa.repeat(pa.scalar(str(champion.version), pa.string()), n),
            ],
            schema=schema,
        )


class _Tally:
    """Rows, alerts and score histogram counts, accumulated table by table (constant memory)."""

    def __init__(self) -> None:
        import numpy as np

        self.counts = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
        self.rows = self.alerts = 0

    def add(self, table: pa.Table) -> None:
        import numpy as np

        self.counts += np.histogram(table.column("score").to_numpy(), bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0]
        self.rows += table.num_rows
        self.alerts += int(table.column("decision").to_numpy().sum())


def stage_shard(lake: Lake, folder: Path, spec: dict[str, Any], champion: Champion) -> dict[str, Any]:
    """Score the spilled buckets of one shard and stage its part files; the shard's result."""
    tally = _Tally()

    def produce() -> Iterator[pa.Table]:
        for table in _score_buckets(folder, spec["shard"], spec["buckets"], champion):
            tally.add(table)
            yield table

    staged = lake.stage_partition(
        PREDICTIONS,
        date.fromisoformat(spec["day"]),
        produce(),
        schema=prediction_schema(),
        metadata={**manifest_metadata(spec), "shard": spec["shard"], "shards": spec["shards"]},
    )
    return {
        "shard": spec["shard"],
        "shards": spec["shards"],
        "rows": tally.rows,
        "alerts": tally.alerts,
        "histogram_counts": [int(count) for count in tally.counts],
        "staged": staged,
    }


def score_shard(
    settings: Settings, spec: dict[str, Any], *, lake: Lake | None = None, champion: Champion | None = None
) -> dict[str, Any]:
    """Score the cards of one shard of a plan and stage (not publish) its part files.

    Loads exactly ``models:/<name>/<version>`` of the plan (``champion`` injects a loaded model, e.g. in
    tests; it must be that version). Returns a JSON-serialisable result for :func:`commit_scoring`:
    ``shard``, ``shards``, ``rows``, ``alerts``, ``histogram_counts``, ``seconds`` and the ``staged`` manifest.
    """
    lake = lake or Lake(settings)
    started = time.perf_counter()
    day, shard = date.fromisoformat(spec["day"]), int(spec["shard"])
    if champion is None:
        champion = champion_of_plan(settings, spec)
    elif (champion.name, champion.version) != (spec["model_name"], spec["model_version"]):
        raise ValueError(
            f"shard {shard} of {day} is planned with {spec['model_name']} v{spec['model_version']},"
            f" not {champion.name} v{champion.version}"
        )
    current = lake.partition_manifest(VALIDATED_TRANSACTIONS, day) or {}
    if current.get("version") != spec["validated_version"]:
        raise IncompleteScoring(
            f"{day} shard {shard}: the validated partition is version {current.get('version')}, the plan read "
            f"{spec['validated_version']} (re-validated during the run): re-run the day to plan again"
        )
    folder = Path(tempfile.mkdtemp(prefix=f"score-{day.isoformat()}-s{shard:05d}-"))
    try:
        rows = spill_inputs(settings, lake, day, folder, shards=spec["shards"], buckets=spec["buckets"], shard=shard)
        result = stage_shard(lake, folder, spec, champion)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if result["rows"] != rows:  # pragma: no cover - invariant: one prediction per validated row
        lake.discard_staged(result["staged"])
        raise RuntimeError(f"{day} shard {shard}: {rows} validated rows but {result['rows']} predictions")
    result["seconds"] = round(time.perf_counter() - started, 2)
    log.info(
        "%s shard %d/%d: staged %d rows in %d file(s) in %.1fs",
        day, shard, spec["shards"], rows, len(result["staged"]["files"]), result["seconds"],
    )  # fmt: skip
    return result
