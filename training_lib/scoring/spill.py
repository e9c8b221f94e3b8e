"""Cards placed on local disk: every transaction of a card in the same shard and card bucket.

The card number is replaced by its card token before anything is written; the token's hash ``h`` picks the
shard (``h % shards``) and the bucket inside it (``(h // shards) % buckets``). One bucket at a time then fits
in memory however large the day is, and per-card history features stay exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training_lib.config import Settings
from training_lib.lake.layout import VALIDATED_TRANSACTIONS
from training_lib.lake.storage import Lake

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa


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


def spill_by_card(
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
                    name = spill_name(prefix, *divmod(file_id, buckets))
                    writers[file_id] = pa.ipc.new_file(folder / name, table.schema)
                writers[file_id].write_table(table.slice(start, stop - start))
            rows += table.num_rows
    finally:
        for writer in writers.values():
            writer.close()
    return rows


def spill_name(prefix: str, shard: int, bucket: int) -> str:
    return f"{prefix}-{shard:05d}-{bucket:05d}.arrow"


def read_spill(path: Path) -> pa.Table:
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


def spill_inputs(
    settings: Settings, lake: Lake, day: date, folder: Path, *, shards: int, buckets: int, shard: int | None
) -> int:
    """Spill the day (as ``day-…``) and its history days (as ``hist<YYYYMMDD>-…``); returns the day's rows."""
    from training_lib.modeling.features import HISTORY_DAYS, HISTORY_INPUT_COLUMNS, ROW_FEATURE_INPUTS
    from training_lib.privacy import token_key

    key = token_key(settings)
    columns = list(dict.fromkeys([*ROW_FEATURE_INPUTS, *HISTORY_INPUT_COLUMNS, "category"]))
    place = {"shards": shards, "shard": shard}
    rows = spill_by_card(
        lake.iter_partition_batches(VALIDATED_TRANSACTIONS, day, columns=columns), buckets, folder, "day", key, **place
    )
    for earlier in (day - timedelta(days=k) for k in range(HISTORY_DAYS, 0, -1)):
        if lake.partition_exists(VALIDATED_TRANSACTIONS, earlier):
            batches = lake.iter_partition_batches(VALIDATED_TRANSACTIONS, earlier, columns=list(HISTORY_INPUT_COLUMNS))
            # one file set per history day
            spill_by_card(batches, buckets, folder, f"hist{earlier:%Y%m%d}", key, **place)
    return rows
