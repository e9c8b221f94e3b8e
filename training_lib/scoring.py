"""Batch scoring of one validated day with the champion, in bounded memory, published atomically.

1. The champion is resolved once per run from ``models:/<name>@champion`` (never cached across runs);
   its name and version are on every output row; the scoring run id and time are in the partition's
   manifest (not in the rows, so that re-scoring a day with the same champion gives identical rows).
2. The day and its ``HISTORY_DAYS`` earlier days are streamed from S3 batch by batch and spilled to
   local Parquet files, one per *card bucket* (hash of the card number): every transaction of a card
   lands in the same bucket, so per-card history features are exact, and memory holds one bucket at a
   time however large the day is (``FRAUD_SCORING_BUCKET_ROWS``).
3. Each bucket: shared features (``features.build_features``) → ``predict_proba`` → prediction rows with
   a card token (keyed hash) instead of the card number. Part files are staged, then the manifest
   commit publishes the partition and ``_SUCCESS`` is written; a failed run leaves nothing visible. A
   re-run with the same champion produces the same bytes, so the commit keeps the partition's version
   (the lake is unchanged); a re-run with another champion replaces it.
4. A per-day summary (rows, alerts, alert rate, score histogram, model version) goes to
   ``reports/scoring/dt=D/summary.json``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training_lib.config import Settings
from training_lib.storage import PREDICTIONS, REPORTS_SCORING, VALIDATED_TRANSACTIONS, Lake, partition_prefix

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

log = logging.getLogger(__name__)

SUCCESS_MARKER = "_SUCCESS"
HISTOGRAM_BINS = 20


class NoChampion(RuntimeError):
    """No model version carries the champion alias yet."""


@dataclass
class Champion:
    name: str
    version: str
    run_id: str
    threshold: float
    model: Any  # the sklearn pipeline (features -> XGBoost)


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


def load_champion(settings: Settings) -> Champion:
    """Resolve ``@champion`` now and load that exact version (the run then sticks to it)."""
    import mlflow.sklearn

    from training_lib.registry import Registry

    registry = Registry(settings)
    version = registry.champion()
    if version is None:
        raise NoChampion(f"no version of {settings.model_name!r} has the alias 'champion' yet: run the retrain DAG")
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    model = mlflow.sklearn.load_model(f"models:/{settings.model_name}/{version.version}")
    return Champion(settings.model_name, str(version.version), version.run_id, registry.threshold(version), model)


def decisions(scores: np.ndarray, threshold: float) -> np.ndarray:
    """1 where the score reaches the model's stored threshold."""
    import numpy as np

    return (scores >= threshold).astype(np.int8)


def _bucket_ids(cards: pa.ChunkedArray | pa.Array, buckets: int) -> np.ndarray:
    import numpy as np
    import pandas as pd

    values = np.asarray(cards.to_pandas(), dtype=object)
    return (pd.util.hash_array(values, categorize=False) % np.uint64(buckets)).astype(np.int64)


def _spill(batches: Iterator[pa.RecordBatch], buckets: int, folder: Path, prefix: str, key: bytes) -> int:
    """Write every batch's rows into ``<folder>/<prefix>-<bucket>.arrow`` by card bucket; returns rows.

    The card number is replaced by its card token before anything is written: local files never hold a
    PAN, even when a killed task leaves them behind (the token identifies the card for its history just as
    well). Uncompressed Arrow IPC: the spill is read back once, right away, so writing speed is what counts.
    """
    import numpy as np
    import pyarrow as pa

    writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
    rows = 0
    try:
        for batch in batches:
            table = pa.Table.from_batches([batch])
            position = table.schema.get_field_index("cc_num")
            tokens = pa.array(_tokens(table.column(position).to_pandas(), key), pa.string())
            table = table.set_column(position, "cc_num", tokens)
            ids = _bucket_ids(table.column("cc_num"), buckets)
            order = np.argsort(ids, kind="stable")
            table, ids = table.take(order), ids[order]
            edges = np.flatnonzero(np.diff(ids)) + 1
            for start, stop in zip(np.r_[0, edges], np.r_[edges, len(ids)], strict=True):
                if stop <= start:
                    continue
                bucket = int(ids[start])
                if bucket not in writers:
                    writers[bucket] = pa.ipc.new_file(folder / f"{prefix}-{bucket:05d}.arrow", table.schema)
                writers[bucket].write_table(table.slice(start, stop - start))
            rows += table.num_rows
    finally:
        for writer in writers.values():
            writer.close()
    return rows


def _read_spill(path: Path) -> pa.Table:
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def _tokens(card_numbers: Any, key: bytes) -> np.ndarray:
    """Card tokens, one HMAC per distinct card (a card appears many times a day)."""
    import numpy as np
    import pandas as pd

    from training_lib.privacy import card_tokens

    codes, uniques = pd.factorize(card_numbers.astype(str), sort=False)
    return np.asarray(card_tokens(list(uniques), key), dtype=object)[codes]


def _score_buckets(folder: Path, buckets: int, champion: Champion) -> Iterator[pa.Table]:
    import pyarrow as pa

    from training_lib.features import FEATURE_COLUMNS, build_features, validated_frame

    schema = prediction_schema()
    for bucket in range(buckets):
        target_path = folder / f"day-{bucket:05d}.arrow"
        if not target_path.exists():
            continue
        target_table = _read_spill(target_path)
        target = validated_frame(target_table, target_table.column_names)
        history_paths = sorted(folder.glob(f"hist*-{bucket:05d}.arrow"))
        history = None
        if history_paths:
            history_table = pa.concat_tables([_read_spill(path) for path in history_paths])
            history = validated_frame(history_table, history_table.column_names)
        features = build_features(target, history)
        scores = champion.model.predict_proba(features[list(FEATURE_COLUMNS)])[:, 1]
        n = len(target)
        yield pa.table(
            {
                "trans_num": pa.array(target["trans_num"].astype(str).to_numpy(), pa.string()),
                "card_token": pa.array(target["cc_num"].astype(str).to_numpy(), pa.string()),  # spilled as tokens
                "amt": pa.array(target["amt"].to_numpy(dtype="float64"), pa.float64()),
                "category": pa.array(target["category"].astype(str).to_numpy(), pa.string()),
                "score": pa.array(scores, pa.float64()),
                "decision": pa.array(decisions(scores, champion.threshold), pa.int8()),
                "model_name": pa.array([champion.name] * n, pa.string()),
                "model_version": pa.array([champion.version] * n, pa.string()),
            },
            schema=schema,
        )


class DaySummary:
    """Rows, alerts, alert rate and a score histogram, accumulated table by table (constant memory)."""

    def __init__(self, day: date, champion: Champion) -> None:
        import numpy as np

        self.day, self.champion = day, champion
        self.counts = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
        self.rows = self.alerts = 0

    def add(self, table: pa.Table) -> None:
        import numpy as np

        self.counts += np.histogram(table.column("score").to_numpy(), bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0]
        self.rows += table.num_rows
        self.alerts += int(table.column("decision").to_numpy().sum())

    def result(self) -> dict[str, Any]:
        import numpy as np

        return {
            "day": self.day.isoformat(),
            "rows": self.rows,
            "alerts": self.alerts,
            "alert_rate": self.alerts / self.rows if self.rows else 0.0,
            "score_histogram": {
                "bins": np.linspace(0, 1, HISTOGRAM_BINS + 1).round(3).tolist(),
                "counts": self.counts.tolist(),
            },
            "model_name": self.champion.name,
            "model_version": self.champion.version,
            "model_run_id": self.champion.run_id,
            "threshold": self.champion.threshold,
        }


def score_day(
    settings: Settings, day: date, run_id: str, *, lake: Lake | None = None, champion: Champion | None = None
) -> dict[str, Any]:
    """Score the validated partition of ``day`` into ``predictions/dt=D/``; returns the day's summary."""
    from training_lib.features import HISTORY_DAYS, HISTORY_INPUT_COLUMNS, ROW_FEATURE_INPUTS
    from training_lib.privacy import token_key

    lake = lake or Lake(settings)
    started = time.perf_counter()
    manifest = lake.partition_manifest(VALIDATED_TRANSACTIONS, day)
    if manifest is None:
        raise LookupError(
            f"no validated partition for {day}: {lake.uri(partition_prefix(VALIDATED_TRANSACTIONS, day))}"
        )
    champion = champion or load_champion(settings)
    buckets = max(1, math.ceil(manifest["rows"] / settings.scoring_bucket_rows))
    columns = list(dict.fromkeys([*ROW_FEATURE_INPUTS, *HISTORY_INPUT_COLUMNS, "category"]))
    folder = Path(tempfile.mkdtemp(prefix=f"score-{day.isoformat()}-"))
    scored_at = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        key = token_key(settings)
        rows = _spill(
            lake.iter_partition_batches(VALIDATED_TRANSACTIONS, day, columns=columns), buckets, folder, "day", key
        )
        history_days = [day - timedelta(days=k) for k in range(HISTORY_DAYS, 0, -1)]
        for earlier in history_days:
            if lake.partition_exists(VALIDATED_TRANSACTIONS, earlier):
                history = list(HISTORY_INPUT_COLUMNS)
                batches = lake.iter_partition_batches(VALIDATED_TRANSACTIONS, earlier, columns=history)
                _spill(batches, buckets, folder, f"hist{earlier:%Y%m%d}", key)  # one file set per history day
        summary_of = DaySummary(day, champion)

        def produce() -> Iterator[pa.Table]:
            for table in _score_buckets(folder, buckets, champion):
                summary_of.add(table)
                yield table

        staged = lake.stage_partition(
            PREDICTIONS,
            day,
            produce(),
            schema=prediction_schema(),
            # provenance lives in the manifest, not in the rows: re-scoring a day gives identical rows
            metadata={
                "model_name": champion.name,
                "model_version": champion.version,
                "scoring_run_id": run_id,
                "scored_at": scored_at,
            },
        )
        if staged["rows"] != rows:  # pragma: no cover - invariant: one prediction per validated row
            raise RuntimeError(f"{day}: {rows} validated rows but {staged['rows']} predictions; nothing published")
        summary = summary_of.result()
        committed = lake.commit_partition(staged)
        lake.put_bytes(f"{partition_prefix(PREDICTIONS, day)}/{SUCCESS_MARKER}", b"")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    summary.update(
        {
            "scoring_run_id": run_id,
            "partition_version": committed["version"],
            "partition_unchanged": committed["version"] != staged["version"],
            "buckets": buckets,
            "seconds": round(time.perf_counter() - started, 2),
            "uri": lake.uri(partition_prefix(PREDICTIONS, day) + "/"),
        }
    )
    lake.put_report(REPORTS_SCORING, day, "summary.json", json.dumps(summary, indent=2))
    log.info(
        "%s: scored %d rows with %s v%s in %.1fs: %d alerts (%.2f%%)",
        day, summary["rows"], champion.name, champion.version, summary["seconds"], summary["alerts"],
        100 * summary["alert_rate"],
    )  # fmt: skip
    return summary
