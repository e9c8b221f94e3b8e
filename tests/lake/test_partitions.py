"""The partition commit protocol against moto's S3 server: staged parts invisible, one manifest PUT, no orphans."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lake_tables import DAY, make_table, part_keys, prefix_keys

from training_lib.lake.objects import LakeError
from training_lib.lake.partitions import _dictionary_columns, _to_parquet
from training_lib.lake.storage import Lake, PartitionNotFound


def test_republish_replaces_the_partition(lake: Lake, dataset: str) -> None:
    first = lake.publish_partition(dataset, DAY, [make_table(100), make_table(100, start=100)])
    assert len(first["files"]) == 2
    second_table = make_table(150, tag="v2")
    second = lake.publish_partition(dataset, DAY, iter([second_table]))

    assert second["version"] != first["version"]
    assert part_keys(lake, dataset) == second["files"]
    assert not any(lake.exists(key) for key in first["files"])
    read = lake.read_partition(dataset, DAY)
    assert read.num_rows == 150
    assert read.equals(second_table)
    assert lake.list_partitions(dataset) == [DAY]


def test_failing_iterator_commits_nothing_and_leaves_no_orphans(lake: Lake, dataset: str) -> None:
    old_table = make_table(80)
    lake.publish_partition(dataset, DAY, old_table)
    manifest_before = lake.partition_manifest(dataset, DAY)
    keys_before = prefix_keys(lake, dataset)

    def failing() -> Iterator[pa.Table]:
        yield make_table(50, tag="new")
        yield make_table(50, start=50, tag="new")
        raise RuntimeError("source broke mid-way")

    with pytest.raises(RuntimeError, match="source broke mid-way"):
        lake.publish_partition(dataset, DAY, failing())

    assert lake.partition_manifest(dataset, DAY) == manifest_before
    assert prefix_keys(lake, dataset) == keys_before
    assert lake.read_partition(dataset, DAY).equals(old_table)

    # a first publish that fails leaves nothing behind at all
    new_day = date(2024, 3, 5)
    with pytest.raises(RuntimeError):
        lake.publish_partition(dataset, new_day, failing())
    assert prefix_keys(lake, dataset, new_day) == []
    assert not lake.partition_exists(dataset, new_day)


def test_schema_mismatch_is_refused_before_commit(lake: Lake, dataset: str) -> None:
    bad = make_table(10).drop_columns(["amt"])
    with pytest.raises(ValueError, match="amt"):
        lake.publish_partition(dataset, DAY, [make_table(10), bad])
    assert prefix_keys(lake, dataset) == []

    # with a schema, tables are conformed: columns selected in order and cast
    schema = pa.schema([("city_pop", pa.int32()), ("trans_num", pa.string())])
    lake.publish_partition(dataset, DAY, make_table(10), schema=schema)
    read = lake.read_partition(dataset, DAY)
    assert read.schema.equals(schema)
    assert read.column("city_pop").to_pylist() == list(range(10))


def test_empty_partition_with_schema(lake: Lake, dataset: str) -> None:
    schema = make_table(1).schema
    manifest = lake.publish_partition(dataset, DAY, [], schema=schema)
    assert manifest["rows"] == 0 and len(manifest["files"]) == 1
    read = lake.read_partition(dataset, DAY)
    assert read.num_rows == 0
    assert read.schema.equals(schema)
    assert sum(b.num_rows for b in lake.iter_partition_batches(dataset, DAY)) == 0

    # zero-row tables carry their own schema; zero tables without a schema are refused, nothing written
    other = date(2024, 3, 9)
    assert lake.publish_partition(dataset, other, make_table(0))["rows"] == 0
    assert lake.read_partition(dataset, other).schema.equals(schema)
    with pytest.raises(ValueError, match="needs a schema"):
        lake.publish_partition(dataset, date(2024, 3, 10), iter([]))
    assert prefix_keys(lake, dataset, date(2024, 3, 10)) == []


def test_large_partition_from_an_iterator_of_tables(lake: Lake, dataset: str) -> None:
    chunks, rows = 8, 25_000

    def chunked() -> Iterator[pa.Table]:
        for i in range(chunks):
            yield make_table(rows, start=i * rows)

    manifest = lake.publish_partition(dataset, DAY, chunked())
    assert manifest["rows"] == chunks * rows
    assert len(manifest["files"]) == chunks
    assert [k.rsplit("-", 1)[1] for k in manifest["files"]] == [f"{i:05d}.parquet" for i in range(chunks)]
    read = lake.read_partition(dataset, DAY, columns=["city_pop"])
    assert read.num_rows == chunks * rows
    assert pa.compute.sum(read.column("city_pop")).as_py() == sum(range(chunks * rows))


def test_staged_version_is_invisible_until_committed(lake: Lake, dataset: str) -> None:
    lake.publish_partition(dataset, DAY, make_table(3, tag="old"))
    staged = lake.stage_partition(dataset, DAY, make_table(5, tag="new"), metadata={"run": "r1"})
    json.dumps(staged)  # travels between tasks as XCom
    assert lake.read_partition(dataset, DAY).num_rows == 3  # readers still see the old version
    manifest = lake.commit_partition(staged)
    assert manifest["version"] == staged["version"] and manifest["published_at"]
    assert lake.read_partition(dataset, DAY).num_rows == 5
    assert part_keys(lake, dataset) == sorted(staged["files"])


def test_commit_of_a_version_whose_parts_are_gone_fails_clearly(lake: Lake, dataset: str) -> None:
    staged = lake.stage_partition(dataset, DAY, make_table(2, tag="a"))
    lake.publish_partition(dataset, DAY, make_table(4, tag="b"))  # another run published the day meanwhile
    with pytest.raises(LakeError, match="stage again"):
        lake.commit_partition(staged)
    assert lake.read_partition(dataset, DAY).num_rows == 4


def test_republishing_identical_content_keeps_the_version_and_bytes(lake: Lake, dataset: str) -> None:
    tables = [make_table(100), make_table(50, start=100)]
    first = lake.publish_partition(dataset, DAY, tables)
    before = {key: lake.get_bytes(key) for key in first["files"]}
    again = lake.publish_partition(dataset, DAY, iter(tables), metadata={"run": "second"})
    assert again == first  # same version, same manifest (the first run's metadata and published_at)
    assert lake.partition_manifest(dataset, DAY) == first
    assert part_keys(lake, dataset) == first["files"]  # the re-run's staged parts were discarded
    assert {key: lake.get_bytes(key) for key in first["files"]} == before
    changed = lake.publish_partition(dataset, DAY, [make_table(100), make_table(51, start=100)])
    assert changed["version"] != first["version"] and changed["content_sha256"] != first["content_sha256"]


def test_combined_shards_commit_as_one_partition_in_order(lake: Lake, dataset: str) -> None:
    shards = [make_table(4, start=0, tag="s0"), make_table(0, tag="s1"), make_table(6, start=10, tag="s2")]
    staged = [lake.stage_partition(dataset, DAY, table, metadata={"shard": i}) for i, table in enumerate(shards)]
    combined = lake.combine_staged(staged, metadata={"run": "r1"})
    json.dumps(combined)  # travels between tasks as XCom
    assert combined["files"] == [key for item in staged for key in item["files"]]
    assert combined["rows"] == 10 and combined["metadata"] == {"run": "r1"}
    assert combined["version"] not in {item["version"] for item in staged}
    assert combined["columns"] == staged[0]["columns"] and combined["schema"] == staged[0]["schema"]
    with pytest.raises(PartitionNotFound):  # combining writes nothing
        lake.read_partition(dataset, DAY)
    manifest = lake.commit_partition(combined)
    assert manifest["version"] == combined["version"]
    assert lake.read_partition(dataset, DAY)["trans_num"].to_pylist() == [
        *make_table(4, tag="s0")["trans_num"].to_pylist(),
        *make_table(6, start=10, tag="s2")["trans_num"].to_pylist(),
    ]
    assert part_keys(lake, dataset) == sorted(combined["files"])


def test_combined_fingerprint_follows_content_and_order(lake: Lake, dataset: str) -> None:
    def stage(*tags: str) -> list[dict]:
        return [lake.stage_partition(dataset, DAY, make_table(3, tag=tag)) for tag in tags]

    first = lake.combine_staged(stage("a", "b"))
    same = lake.combine_staged(stage("a", "b"), metadata={"run": "again"})
    assert same["content_sha256"] == first["content_sha256"] and same["version"] != first["version"]
    assert lake.combine_staged(stage("b", "a"))["content_sha256"] != first["content_sha256"]
    assert lake.combine_staged(stage("a", "c"))["content_sha256"] != first["content_sha256"]
    assert lake.combine_staged(stage("a"))["content_sha256"] != first["content_sha256"]
    committed = lake.commit_partition(first)
    again = lake.commit_partition(lake.combine_staged(stage("a", "b")))  # a re-run with equal content
    assert again == committed and lake.partition_manifest(dataset, DAY) == committed
    assert part_keys(lake, dataset) == sorted(first["files"])  # every other staged part was discarded


def test_combining_mismatching_staged_versions_is_refused(lake: Lake, dataset: str) -> None:
    staged = lake.stage_partition(dataset, DAY, make_table(3))
    other_schema = lake.stage_partition(dataset, DAY, make_table(3).drop_columns(["amt"]))
    other_day = lake.stage_partition(dataset, date(2024, 3, 2), make_table(3))
    with pytest.raises(ValueError, match="schema"):
        lake.combine_staged([staged, other_schema])
    with pytest.raises(ValueError, match=r"dt=2024-03-02"):
        lake.combine_staged([staged, other_day])
    with pytest.raises(ValueError, match="repeats part file"):
        lake.combine_staged([staged, staged])
    with pytest.raises(ValueError, match="at least one"):
        lake.combine_staged([])
    lake.discard_staged(staged)
    assert not any(lake.exists(key) for key in staged["files"])


def test_only_repetitive_columns_are_dictionary_encoded_and_odd_types_keep_the_default() -> None:
    n = 5_000
    table = pa.table(
        {
            "trans_num": [f"t{i:08d}" for i in range(n)],  # all distinct: no dictionary
            "category": ["grocery_pos", "travel"] * (n // 2),
            "score": [i / n for i in range(n)],
            "empty": pa.nulls(n),  # no distinct count for the null type: the writer's default
            "tags": pa.array([["a"]] * n, pa.list_(pa.string())),
        }
    )
    assert _dictionary_columns(table) == ["category", "empty", "tags"]
    assert _dictionary_columns(table.slice(0, 1)) == ["empty", "tags"]  # one row: nothing repeats
    assert _dictionary_columns(table.slice(0, 0)) == table.column_names
    assert pq.read_table(pa.BufferReader(_to_parquet(table))).equals(table)  # every type still round-trips
