"""Cards placed on local disk: every transaction of a card in the same shard and card bucket.

The card number is replaced by its card token before anything is written; the token's hash ``h`` picks the
shard (``h % shards``) and the bucket inside it (``(h // shards) % buckets``). One bucket at a time then fits
in memory however large the day is, and per-card history features stay exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

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
    placer: CardPlacer | None = None,
) -> int:
    """Write the batches' rows into ``<folder>/<prefix>-<shard>-<bucket>.arrow`` by card; returns rows written.

    Only the rows of ``shard`` are kept when it is given (else every shard's). The card number is replaced
    by its card token before anything is written: local files never hold a PAN, even when a killed task
    leaves them behind (the token identifies the card for its history just as well). Uncompressed Arrow
    IPC: the spill is read back once, right away, so writing speed is what counts. ``placer`` (made from
    ``key`` when not given) remembers the cards it has seen: pass one placer to every call of a run.
    """
    import numpy as np
    import pyarrow as pa

    placer = placer or CardPlacer(key)
    if placer.key != key:
        raise ValueError("spill_by_card: the card placer was made with another token key")
    writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
    rows = 0
    try:
        for batch in batches:
            table = pa.Table.from_batches([batch])
            position = table.schema.get_field_index("cc_num")
            tokens, hashes = placer.place(table.column(position))
            table = table.set_column(position, "cc_num", tokens)
            shard_ids, bucket_ids = assign_cards(hashes, shards, buckets)
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


class CardPlacer:
    """Card number -> (card token, card hash), one HMAC and one hash per distinct card of a run.

    A card appears many times a day and again in every history day: the answers are remembered, up to
    ``limit`` cards (then forgotten and computed again, so memory stays bounded on any day). Equal to
    :func:`training_lib.privacy.card_tokens` and :func:`card_hashes` of those tokens, value by value; a
    missing card number stays missing (its hash is that of a missing token).
    """

    def __init__(self, key: bytes, limit: int = 200_000) -> None:  # ~300 B a card: ~60 MB at most
        self.key, self.limit = key, limit
        self._known: dict[str, tuple[str, int]] = {}

    def place(self, card_numbers: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
        """(tokens as an Arrow string array, uint64 hashes) of the card numbers, in their order."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        from training_lib.privacy import card_tokens

        if isinstance(card_numbers, pa.ChunkedArray):  # (pa.chunked_array([chunked]) would go through Python)
            card_numbers = card_numbers.combine_chunks()
        encoded = pc.dictionary_encode(card_numbers.cast(pa.string()))
        distinct = encoded.dictionary.to_pylist()
        new = [number for number in distinct if number not in self._known]
        if len(self._known) + len(new) > self.limit:
            self._known.clear()
            new = distinct
        fresh: dict[str, tuple[str, int]] = {}
        if new:
            tokens = card_tokens(new, self.key)
            fresh = dict(zip(new, zip(tokens, card_hashes(tokens).tolist(), strict=True), strict=True))
            if len(fresh) <= self.limit:  # a batch with more distinct cards than that is not remembered
                self._known.update(fresh)
        token_of = [fresh[number] if number in fresh else self._known[number] for number in distinct]
        tokens = pa.array([token for token, _ in token_of], pa.string())
        hashes = np.fromiter((hash_ for _, hash_ in token_of), dtype=np.uint64, count=len(token_of))
        indices = encoded.indices
        if indices.null_count:  # missing card numbers: a missing token, hashed like one
            missing = card_hashes([None])[0]
            positions = indices.fill_null(len(distinct)).to_numpy()
            tokens = pa.concat_arrays([tokens, pa.nulls(1, pa.string())])
            hashes = np.append(hashes, missing)
        else:
            positions = indices.to_numpy()
        return tokens.take(pa.array(positions)), hashes[positions]


def spill_inputs(
    settings: Settings, lake: Lake, day: date, folder: Path, *, shards: int, buckets: int, shard: int | None
) -> int:
    """Spill the day (as ``day-…``) and its history days (as ``hist<YYYYMMDD>-…``); returns the day's rows."""
    from training_lib.modeling.features import HISTORY_DAYS, HISTORY_INPUT_COLUMNS, ROW_FEATURE_INPUTS
    from training_lib.privacy import token_key

    key = token_key(settings)
    columns = list(dict.fromkeys([*ROW_FEATURE_INPUTS, *HISTORY_INPUT_COLUMNS, "category"]))
    place = {"shards": shards, "shard": shard, "placer": CardPlacer(key)}  # one placer: each card hashed once
    rows = spill_by_card(
        lake.iter_partition_batches(VALIDATED_TRANSACTIONS, day, columns=columns), buckets, folder, "day", key, **place
    )
    for earlier in (day - timedelta(days=k) for k in range(HISTORY_DAYS, 0, -1)):
        if lake.partition_exists(VALIDATED_TRANSACTIONS, earlier):
            batches = lake.iter_partition_batches(VALIDATED_TRANSACTIONS, earlier, columns=list(HISTORY_INPUT_COLUMNS))
            # one file set per history day
            spill_by_card(batches, buckets, folder, f"hist{earlier:%Y%m%d}", key, **place)
    return rows
