"""Batch scoring of one validated day with the champion, sharded by card, published atomically as one partition.

The steps, one module each (the ``batch_score`` DAG maps them over shards; :func:`score_day` runs them in one
process):

1. **Plan** (``scoring.plan.plan_scoring``): the champion is resolved once per run from
   ``models:/<name>@champion`` (never cached across runs; ``scoring.champion``) and the day is split into
   ``shards`` = ceil(rows / ``FRAUD_SCORING_SHARD_ROWS``), at most ``FRAUD_SCORING_MAX_SHARDS``; one JSON spec
   per shard (the list a DAG maps over). Every shard then loads exactly ``models:/<name>/<version>`` of the
   plan, so all shards use the same model even if the alias moves mid-run. The model name and version are on
   every output row; the scoring run id and time are in the partition's manifest (not in the rows, so that
   re-scoring a day with the same champion gives identical rows).
2. **Shard** (``scoring.shard.score_shard``): the day and its ``HISTORY_DAYS`` earlier days are streamed from
   S3 batch by batch; ``scoring.spill`` replaces the card number by its card token (keyed hash) and the
   token's hash ``h`` picks the shard (``h % shards``) and the *card bucket* inside it
   (``(h // shards) % buckets``). Rows of the shard are spilled to local Arrow files, one per bucket: every
   transaction of a card lands in the same shard and bucket, so per-card history features are exact, and
   memory holds one bucket at a time however large the day is (``FRAUD_SCORING_BUCKET_ROWS``). Each bucket:
   shared features (``features.build_features``) → the model's scores (``scoring.predict``) → prediction
   rows. The shard's part files are *staged* (invisible to readers).
3. **Commit** (``scoring.commit.commit_scoring``): checks that every shard is there exactly once and that the
   predictions add up to the validated rows, combines the staged shards in shard order into one manifest
   (``Lake.combine_staged``), commits it and writes ``_SUCCESS``; a failed or incomplete run leaves
   nothing visible. A re-run with the same champion produces the same bytes, so the commit keeps the
   partition's version (the lake is unchanged); a re-run with another champion replaces it.
4. A per-day summary (rows, alerts, alert rate, score histogram, model version, shards) goes to
   ``reports/scoring/dt=D/summary.json``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from training_lib.config import Settings
from training_lib.lake.storage import Lake
from training_lib.scoring.champion import Champion, champion_of_plan
from training_lib.scoring.commit import commit_shards
from training_lib.scoring.plan import plan_scoring
from training_lib.scoring.shard import stage_shard
from training_lib.scoring.spill import spill_inputs


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
        champion = champion_of_plan(settings, plan)
    folder = Path(tempfile.mkdtemp(prefix=f"score-{day.isoformat()}-"))
    results: list[dict[str, Any]] = []
    try:
        rows = spill_inputs(settings, lake, day, folder, shards=plan["shards"], buckets=plan["buckets"], shard=None)
        for spec in specs:
            results.append(stage_shard(lake, folder, spec, champion))
        if sum(result["rows"] for result in results) != rows:  # pragma: no cover - one prediction per row
            raise RuntimeError(f"{day}: {rows} validated rows but {sum(r['rows'] for r in results)} predictions")
    except BaseException:
        for result in results:
            lake.discard_staged(result["staged"])
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return commit_shards(lake, specs, results, started=started)
