"""Tables and key listings the lake tests build and inspect."""

from __future__ import annotations

from datetime import date, datetime

import pyarrow as pa

from training_lib.lake.layout import partition_prefix
from training_lib.lake.storage import Lake

BUCKET = "lake-test"
DAY = date(2024, 3, 1)


def make_table(n: int, start: int = 0, tag: str = "v1") -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table(
        {
            "trans_num": pa.array([f"{tag}-{i:08d}" for i in ids], pa.string()),
            "amt": pa.array([i * 1.25 for i in ids], pa.float64()),
            "city_pop": pa.array(ids, pa.int64()),
            "ts": pa.array([datetime(2024, 3, 1, i % 24, i % 60) for i in ids], pa.timestamp("us", tz="UTC")),
            "is_fraud": pa.array([None if i % 7 == 0 else i % 2 for i in ids], pa.int8()),
        }
    )


def prefix_keys(lake: Lake, dataset: str, day: date = DAY) -> list[str]:
    return lake.list_keys(partition_prefix(dataset, day) + "/")


def part_keys(lake: Lake, dataset: str, day: date = DAY) -> list[str]:
    return [k for k in prefix_keys(lake, dataset, day) if k.rsplit("/", 1)[1].startswith("part-")]
