"""Batch scoring of one validated day with the champion, sharded by card, published atomically as one partition.

1. **Plan** (:func:`plan_scoring`): the champion is resolved once per run from ``models:/<name>@champion``
   (never cached across runs) and the day is split into ``shards`` = ceil(rows / ``FRAUD_SCORING_SHARD_ROWS``),
   at most ``FRAUD_SCORING_MAX_SHARDS``; one JSON spec per shard (the list a DAG maps over). Every shard
   then loads exactly ``models:/<name>/<version>`` of the plan, so all shards use the same model even if
   the alias moves mid-run. The model name and version are on every output row; the scoring run id and
   time are in the partition's manifest (not in the rows, so that re-scoring a day with the same champion
   gives identical rows).
2. **Shard** (:func:`score_shard`): the day and its ``HISTORY_DAYS`` earlier days are streamed from S3
   batch by batch; the card number is replaced by its card token (keyed hash) and the token's hash ``h``
   picks the shard (``h % shards``) and the *card bucket* inside it (``(h // shards) % buckets``). Rows of
   the shard are spilled to local Arrow files, one per bucket: every transaction of a card lands in the
   same shard and bucket, so per-card history features are exact, and memory holds one bucket at a time
   however large the day is (``FRAUD_SCORING_BUCKET_ROWS``). Each bucket: shared features
   (``features.build_features``) → ``predict_proba`` → prediction rows. The shard's part files are
   *staged* (invisible to readers).
3. **Commit** (:func:`commit_scoring`): checks that every shard is there exactly once and that the
   predictions add up to the validated rows, combines the staged shards in shard order into one manifest
   (``Lake.combine_staged``), commits it and writes ``_SUCCESS``; a failed or incomplete run leaves
   nothing visible. A re-run with the same champion produces the same bytes, so the commit keeps the
   partition's version (the lake is unchanged); a re-run with another champion replaces it.
4. A per-day summary (rows, alerts, alert rate, score histogram, model version, shards) goes to
   ``reports/scoring/dt=D/summary.json``.

:func:`score_day` runs plan → every shard → commit in one process (spilling the inputs once for all shards).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training_lib.config import Settings
from training_lib.lake.layout import PREDICTIONS, REPORTS_SCORING, VALIDATED_TRANSACTIONS, partition_prefix
from training_lib.lake.storage import Lake

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

log = logging.getLogger(__name__)

SUCCESS_MARKER = "_SUCCESS"
HISTOGRAM_BINS = 20


class NoChampion(RuntimeError):
    """No model version carries the champion alias yet."""


class IncompleteScoring(RuntimeError):
    """The shard results do not make up the planned day (missing, repeated or foreign shards, row count)."""


@dataclass
class Champion:
    """One exact model version as a scoring run uses it."""

    name: str
    version: str
    run_id: str
    threshold: float
    model: Any  # the sklearn pipeline (features -> XGBoost); None until loaded
    fitted_through: str | None = None  # the last day the version was fitted on (ISO), None when unknown


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


def _resolve_champion(settings: Settings) -> Champion:
    """``@champion`` now, with its stored threshold and last fitted day; the model is not loaded."""
    from training_lib.modeling.aliases import fitted_through
    from training_lib.modeling.registry import Registry

    registry = Registry(settings)
    version = registry.champion()
    if version is None:
        raise NoChampion(f"no version of {settings.model_name!r} has the alias 'champion' yet: run the retrain DAG")
    through = fitted_through(version)
    return Champion(
        settings.model_name, str(version.version), version.run_id, registry.threshold(version), None,
        through.isoformat() if through else None,
    )  # fmt: skip


def _champion_of_plan(settings: Settings, spec: dict[str, Any]) -> Champion:
    """Exactly the version a plan's spec names, loaded."""
    name, version = spec["model_name"], spec["model_version"]
    model = _load_model(settings, name, version)
    return Champion(name, version, spec["model_run_id"], spec["threshold"], model, spec.get("model_fitted_through"))


def _load_model(settings: Settings, name: str, version: str) -> Any:
    """Exactly ``models:/<name>/<version>`` (never an alias)."""
    import mlflow.sklearn

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return mlflow.sklearn.load_model(f"models:/{name}/{version}")


def load_champion(settings: Settings) -> Champion:
    """Resolve ``@champion`` now and load that exact version (the run then sticks to it)."""
    champion = _resolve_champion(settings)
    champion.model = _load_model(settings, champion.name, champion.version)
    return champion


def decisions(scores: np.ndarray, threshold: float) -> np.ndarray:
    """1 where the score reaches the model's stored threshold."""
    import numpy as np

    return (scores >= threshold).astype(np.int8)


def card_hashes(cards: pa.ChunkedArray | pa.Array | Sequence[str]) -> np.ndarray:
    """``pd.util.hash_array`` of the card tokens (uint64): the one hash that places a card."""
    import numpy as np
    import pandas as pd

    values = cards.to_pandas() if hasattr(cards, "to_pandas") else list(cards)
    return pd.util.hash_array(np.asarray(values, dtype=object), categorize=False)


def assign_cards(hashes: np.ndarray, shards: int, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """(shard, bucket within the shard) per card hash: ``h % shards`` and ``(h // shards) % buckets``.

    With ``shards == 1`` the buckets are ``h % buckets``, the unsharded layout.
    """
    import numpy as np

    hashes = np.asarray(hashes, dtype=np.uint64)
    n = np.uint64(shards)
    return (hashes % n).astype(np.int64), ((hashes // n) % np.uint64(buckets)).astype(np.int64)


def _spill(
    batches: Iterator[pa.RecordBatch],
    buckets: int,
    folder: Path,
    prefix: str,
    key: bytes,
    *,
    shards: int = 1,
    shard: int | None = None,
) -> int:
    """Write the batches' rows into ``<folder>/<prefix>-<shard>-<bucket>.arrow`` by card; returns rows written.

    Only the rows of ``shard`` are kept when it is given (else every shard's). The card number is replaced
    by its card token before anything is written: local files never hold a PAN, even when a killed task
    leaves them behind (the token identifies the card for its history just as well). Uncompressed Arrow
    IPC: the spill is read back once, right away, so writing speed is what counts.
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
            shard_ids, bucket_ids = assign_cards(card_hashes(table.column("cc_num")), shards, buckets)
            if shard is not None:
                keep = shard_ids == shard
                table, shard_ids, bucket_ids = table.filter(pa.array(keep)), shard_ids[keep], bucket_ids[keep]
            ids = shard_ids * buckets + bucket_ids
            order = np.argsort(ids, kind="stable")
            table, ids = table.take(order), ids[order]
            edges = np.flatnonzero(np.diff(ids)) + 1
            for start, stop in zip(np.r_[0, edges], np.r_[edges, len(ids)], strict=True):
                if stop <= start:
                    continue
                file_id = int(ids[start])
                if file_id not in writers:
                    name = _spill_name(prefix, *divmod(file_id, buckets))
                    writers[file_id] = pa.ipc.new_file(folder / name, table.schema)
                writers[file_id].write_table(table.slice(start, stop - start))
            rows += table.num_rows
    finally:
        for writer in writers.values():
            writer.close()
    return rows


def _spill_name(prefix: str, shard: int, bucket: int) -> str:
    return f"{prefix}-{shard:05d}-{bucket:05d}.arrow"


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


def _spill_inputs(
    settings: Settings, lake: Lake, day: date, folder: Path, *, shards: int, buckets: int, shard: int | None
) -> int:
    """Spill the day (as ``day-…``) and its history days (as ``hist<YYYYMMDD>-…``); returns the day's rows."""
    from training_lib.modeling.features import HISTORY_DAYS, HISTORY_INPUT_COLUMNS, ROW_FEATURE_INPUTS
    from training_lib.privacy import token_key

    key = token_key(settings)
    columns = list(dict.fromkeys([*ROW_FEATURE_INPUTS, *HISTORY_INPUT_COLUMNS, "category"]))
    place = {"shards": shards, "shard": shard}
    rows = _spill(
        lake.iter_partition_batches(VALIDATED_TRANSACTIONS, day, columns=columns), buckets, folder, "day", key, **place
    )
    for earlier in (day - timedelta(days=k) for k in range(HISTORY_DAYS, 0, -1)):
        if lake.partition_exists(VALIDATED_TRANSACTIONS, earlier):
            batches = lake.iter_partition_batches(VALIDATED_TRANSACTIONS, earlier, columns=list(HISTORY_INPUT_COLUMNS))
            _spill(batches, buckets, folder, f"hist{earlier:%Y%m%d}", key, **place)  # one file set per history day
    return rows


def _score_buckets(folder: Path, shard: int, buckets: int, champion: Champion) -> Iterator[pa.Table]:
    import pyarrow as pa

    from training_lib.modeling.features import FEATURE_COLUMNS, build_features, validated_frame

    schema = prediction_schema()
    for bucket in range(buckets):
        target_path = folder / _spill_name("day", shard, bucket)
        if not target_path.exists():
            continue
        target_table = _read_spill(target_path)
        target = validated_frame(target_table, target_table.column_names)
        history_paths = sorted(folder.glob(_spill_name("hist*", shard, bucket)))
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


def _manifest_metadata(spec: dict[str, Any]) -> dict[str, Any]:
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
    resolved = champion or _resolve_champion(settings)
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


def _stage_shard(lake: Lake, folder: Path, spec: dict[str, Any], champion: Champion) -> dict[str, Any]:
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
        metadata={**_manifest_metadata(spec), "shard": spec["shard"], "shards": spec["shards"]},
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
        champion = _champion_of_plan(settings, spec)
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
        rows = _spill_inputs(settings, lake, day, folder, shards=spec["shards"], buckets=spec["buckets"], shard=shard)
        result = _stage_shard(lake, folder, spec, champion)
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
    expected = _manifest_metadata(plan)
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
    return _commit(lake or Lake(settings), list(specs), list(shard_results), started=None)


def _commit(
    lake: Lake, specs: list[dict[str, Any]], shard_results: list[dict[str, Any]], *, started: float | None
) -> dict[str, Any]:
    import numpy as np

    ordered = _check_shards(specs, shard_results)
    plan = min(specs, key=lambda spec: spec["shard"])
    day = date.fromisoformat(plan["day"])
    combined = lake.combine_staged([result["staged"] for result in ordered], metadata=_manifest_metadata(plan))
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


def score_day(
    settings: Settings, day: date, run_id: str, *, lake: Lake | None = None, champion: Champion | None = None
) -> dict[str, Any]:
    """Score the validated partition of ``day`` into ``predictions/dt=D/``; returns the day's summary.

    Plan, every shard in turn, commit, in this process: the inputs are spilled once for all shards. A
    failure removes the shards staged so far (nothing visible changes).
    """
    lake = lake or Lake(settings)
    started = time.perf_counter()
    specs = plan_scoring(settings, day, run_id, lake=lake, champion=champion)
    plan = specs[0]
    if champion is None:
        champion = _champion_of_plan(settings, plan)
    folder = Path(tempfile.mkdtemp(prefix=f"score-{day.isoformat()}-"))
    results: list[dict[str, Any]] = []
    try:
        rows = _spill_inputs(settings, lake, day, folder, shards=plan["shards"], buckets=plan["buckets"], shard=None)
        for spec in specs:
            results.append(_stage_shard(lake, folder, spec, champion))
        if sum(result["rows"] for result in results) != rows:  # pragma: no cover - one prediction per row
            raise RuntimeError(f"{day}: {rows} validated rows but {sum(r['rows'] for r in results)} predictions")
    except BaseException:
        for result in results:
            lake.discard_staged(result["staged"])
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return _commit(lake, specs, results, started=started)
