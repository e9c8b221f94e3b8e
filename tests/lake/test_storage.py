"""The lake against a real S3 HTTP API (moto's server on a free port): objects, landing, atomic partitions."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import date, datetime

import pyarrow as pa
import pytest
from support import drop_bucket, moto_settings

from training_lib.config import Settings, load_settings
from training_lib.lake.layout import partition_prefix
from training_lib.lake.objects import LakeError, LakeKeyError
from training_lib.lake.storage import Lake, PartitionChanged, PartitionNotFound

BUCKET = "lake-test"
DAY = date(2024, 3, 1)


@pytest.fixture(scope="module")
def settings(moto_endpoint: str) -> Iterator[Settings]:
    settings = moto_settings(moto_endpoint, BUCKET)
    yield settings
    drop_bucket(settings)


@pytest.fixture
def lake(settings: Settings) -> Lake:
    return Lake(settings)


@pytest.fixture
def dataset() -> str:
    """A dataset prefix of its own for every test."""
    return f"t-{uuid.uuid4().hex[:8]}/validated/transactions"


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


# -- objects -----------------------------------------------------------------------------------------------------------


def test_objects_round_trip_list_paginated_and_delete(lake: Lake, dataset: str) -> None:
    keys = [f"{dataset}/obj/{name}" for name in ("c", "a", "b", "d", "e")]
    for key in keys:
        lake.put_bytes(key, key.encode(), "text/plain")
    assert lake.get_bytes(keys[0]) == keys[0].encode()
    assert lake.exists(keys[1]) and not lake.exists(f"{dataset}/obj/zzz")
    assert lake.list_keys(f"{dataset}/obj/", page_size=2) == sorted(keys)

    lake.put_json(f"{dataset}/x.json", {"a": [1, 2], "é": None})
    assert lake.get_json(f"{dataset}/x.json") == {"a": [1, 2], "é": None}
    assert lake.get_json(f"{dataset}/missing.json", missing_ok=True) is None

    assert lake.delete_prefix(f"{dataset}/obj/") == 5
    assert lake.list_keys(f"{dataset}/obj/") == []
    with pytest.raises(ValueError, match="empty prefix"):
        lake.delete_prefix("/")


def test_missing_objects_and_buckets_are_named(lake: Lake, settings: Settings, dataset: str) -> None:
    key = f"{dataset}/nothing.bin"
    with pytest.raises(LakeKeyError, match=re.escape(f"s3://{BUCKET}/{key}")) as missing:
        lake.get_bytes(key)
    assert isinstance(missing.value, KeyError)
    with pytest.raises(LakeKeyError, match=re.escape(f"s3://{BUCKET}/{key}")):
        lake.get_json(key)

    other = Lake(load_settings({**settings.env(), "FRAUD_BUCKET": "no-such-bucket-here"}))
    with pytest.raises(LakeError, match=re.escape("s3://no-such-bucket-here/a/b")):
        other.get_bytes("a/b")


def test_landing_files_skip_markers_and_hidden_names(lake: Lake, dataset: str) -> None:
    prefix = partition_prefix(dataset, DAY)
    for name in ("b.parquet", "a.csv", "_SUCCESS", ".part.tmp", "_temporary/x.csv", "sub/c.csv", "sub/.hidden"):
        lake.put_bytes(f"{prefix}/{name}", b"x")
    lake.put_bytes(f"{partition_prefix(dataset, date(2024, 3, 2))}/other.csv", b"x")
    assert lake.landing_files(dataset, DAY) == [f"{prefix}/a.csv", f"{prefix}/b.parquet", f"{prefix}/sub/c.csv"]
    assert lake.landing_files(dataset, date(2024, 3, 3)) == []
    assert lake.list_days(dataset) == [DAY, date(2024, 3, 2)]
    assert lake.list_partitions(dataset) == []  # landing folders have no manifest


# -- partitions --------------------------------------------------------------------------------------------------------


def test_publish_then_read_gives_the_same_table_and_manifest(lake: Lake, dataset: str) -> None:
    table = make_table(500)
    manifest = lake.publish_partition(dataset, DAY, table, metadata={"source": "unit", "quarantined": 3})
    prefix = partition_prefix(dataset, DAY)

    read = lake.read_partition(dataset, DAY)
    assert read.schema.equals(table.schema)
    assert read.equals(table)
    assert lake.read_partition(dataset, DAY, columns=["amt", "trans_num"]).column_names == ["amt", "trans_num"]

    assert manifest == lake.partition_manifest(dataset, DAY)
    assert re.fullmatch(r"\d{8}T\d{12}Z-[0-9a-f]{8}", manifest["version"])
    assert manifest["files"] == [f"{prefix}/part-{manifest['version']}-00000.parquet"]
    assert manifest["rows"] == 500
    assert manifest["columns"] == table.column_names
    assert manifest["schema"]["ts"] == "timestamp[us, tz=UTC]"
    assert manifest["metadata"] == {"source": "unit", "quarantined": 3}
    assert datetime.fromisoformat(manifest["published_at"]).tzinfo is not None
    assert prefix_keys(lake, dataset) == sorted([*manifest["files"], f"{prefix}/_manifest.json"])

    assert lake.partition_exists(dataset, DAY)
    assert not lake.partition_exists(dataset, date(2024, 3, 2))
    assert lake.list_partitions(dataset) == [DAY]


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


def test_stale_manifest_reader_never_mixes_versions(lake: Lake, dataset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    v1 = pa.concat_tables([make_table(100), make_table(100, start=100)])
    v2 = make_table(120, tag="v2")
    lake.publish_partition(dataset, DAY, [make_table(100), make_table(100, start=100)])
    stale = lake.partition_manifest(dataset, DAY)
    lake.publish_partition(dataset, DAY, v2)
    assert not any(lake.exists(key) for key in stale["files"])  # the old version is gone

    # a reader that fetched the manifest before the re-publish ends up with the complete new version
    real = Lake.partition_manifest
    calls: list[int] = []

    def manifest_fetched_before_publish(self: Lake, ds: str, day: date) -> dict | None:
        calls.append(1)
        return stale if len(calls) == 1 else real(self, ds, day)

    monkeypatch.setattr(Lake, "partition_manifest", manifest_fetched_before_publish)
    assert lake.read_partition(dataset, DAY).equals(v2)
    assert len(calls) == 2
    monkeypatch.undo()

    # a streaming reader that already yielded old rows refuses to continue with another version
    lake.publish_partition(dataset, DAY, [make_table(100), make_table(100, start=100)])
    batches = lake.iter_partition_batches(dataset, DAY, batch_size=100)
    first = next(batches)
    assert first.column("trans_num")[0].as_py() == "v1-00000000"
    lake.publish_partition(dataset, DAY, v2)
    with pytest.raises(PartitionChanged, match="re-published"):
        list(batches)
    assert lake.read_partition(dataset, DAY).equals(v2)
    assert not lake.read_partition(dataset, DAY).equals(v1)


def test_concurrent_readers_always_see_one_whole_version(lake: Lake, dataset: str) -> None:
    versions = {"a": make_table(300, tag="a"), "b": pa.concat_tables([make_table(150, tag="b")] * 3)}
    lake.publish_partition(dataset, DAY, versions["a"])
    stop = threading.Event()
    seen: list[str] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(12):
                tag = "b" if i % 2 == 0 else "a"
                tables = [versions[tag].slice(0, 150), versions[tag].slice(150)]
                lake.publish_partition(dataset, DAY, tables)
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def reader() -> None:
        try:
            while not stop.is_set():
                read = lake.read_partition(dataset, DAY)
                tags = set(read.column("trans_num").to_pylist())
                tag = next(iter(tags)).split("-")[0]
                assert read.equals(versions[tag]), f"read {read.num_rows} rows mixing {sorted(tags)[:3]}"
                seen.append(tag)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert seen
    assert lake.read_partition(dataset, DAY).equals(versions["a"])
    assert len(part_keys(lake, dataset)) == 2


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


def test_partition_not_found_names_the_manifest(lake: Lake, dataset: str) -> None:
    expected = f"s3://{BUCKET}/{dataset}/dt=2024-03-01/_manifest.json"
    with pytest.raises(PartitionNotFound, match=re.escape(expected)) as missing:
        lake.read_partition(dataset, DAY)
    assert isinstance(missing.value, LookupError)
    with pytest.raises(PartitionNotFound, match=re.escape(expected)):
        list(lake.iter_partition_batches(dataset, DAY))
    assert lake.partition_manifest(dataset, DAY) is None


def test_read_partitions_concatenates_existing_days(lake: Lake, dataset: str) -> None:
    d1, d2, d3 = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)
    lake.publish_partition(dataset, d1, make_table(10))
    lake.publish_partition(dataset, d3, make_table(5, start=10))
    read = lake.read_partitions(dataset, [d1, d2, d3, d1], columns=["city_pop"])
    assert read.column("city_pop").to_pylist() == list(range(15))
    with pytest.raises(PartitionNotFound, match="dt=2024-03-02"):
        lake.read_partitions(dataset, [d1, d2], strict=True)
    assert lake.read_partitions(dataset, [d2]).num_rows == 0
    assert lake.list_partitions(dataset) == [d1, d3]


def test_iter_partition_batches_returns_all_rows_in_bounded_batches(lake: Lake, dataset: str) -> None:
    tables = [make_table(1000, start=i * 1000) for i in range(3)]
    lake.publish_partition(dataset, DAY, iter(tables))
    batches = list(lake.iter_partition_batches(dataset, DAY, batch_size=256))
    assert all(b.num_rows <= 256 for b in batches)
    assert sum(b.num_rows for b in batches) == 3000
    assert pa.Table.from_batches(batches).equals(pa.concat_tables(tables))
    only = list(lake.iter_partition_batches(dataset, DAY, columns=["city_pop"], batch_size=1000))
    assert only[0].schema.names == ["city_pop"]
    assert pa.Table.from_batches(only).column("city_pop").to_pylist() == list(range(3000))


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


# -- reports -----------------------------------------------------------------------------------------------------------


def test_reports_are_written_with_content_type_and_linkable(lake: Lake, dataset: str) -> None:
    reports = dataset.replace("validated/transactions", "reports/drift")
    key = lake.put_report(reports, DAY, "report.html", "<html>drift ✓</html>")
    assert key == f"{reports}/dt=2024-03-01/report.html"
    head = lake.client.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentType"] == "text/html; charset=utf-8"
    json_key = lake.put_report(reports, DAY, "summary.json", b"{}", "application/json")
    assert lake.get_json(json_key) == {}

    assert lake.report_url(reports, DAY, "report.html") == f"s3://{BUCKET}/{key}"
    url = lake.report_url(reports, DAY, "report.html", expires_in=300)
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (a presigned URL of the test server)
        assert response.read().decode() == "<html>drift ✓</html>"
    with pytest.raises(ValueError, match="not a report name"):
        lake.put_report(reports, DAY, "../escape.html", "x")


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
