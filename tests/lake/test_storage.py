"""The lake's reads against moto's S3 server: landing files, complete versions under concurrent re-publish, reports."""

from __future__ import annotations

import re
import threading
import urllib.request
from datetime import date, datetime

import pyarrow as pa
import pytest
from lake_tables import BUCKET, DAY, make_table, part_keys, prefix_keys

from training_lib.lake.layout import partition_prefix
from training_lib.lake.storage import Lake, PartitionChanged, PartitionNotFound


def test_landing_files_skip_markers_and_hidden_names(lake: Lake, dataset: str) -> None:
    prefix = partition_prefix(dataset, DAY)
    for name in ("b.parquet", "a.csv", "_SUCCESS", ".part.tmp", "_temporary/x.csv", "sub/c.csv", "sub/.hidden"):
        lake.put_bytes(f"{prefix}/{name}", b"x")
    lake.put_bytes(f"{partition_prefix(dataset, date(2024, 3, 2))}/other.csv", b"x")
    assert lake.landing_files(dataset, DAY) == [f"{prefix}/a.csv", f"{prefix}/b.parquet", f"{prefix}/sub/c.csv"]
    assert lake.landing_files(dataset, date(2024, 3, 3)) == []
    assert lake.list_days(dataset) == [DAY, date(2024, 3, 2)]
    assert lake.list_partitions(dataset) == []  # landing folders have no manifest


def test_publish_then_read_gives_the_same_table_and_manifest(lake: Lake, dataset: str) -> None:
    table = make_table(500)
    manifest = lake.publish_partition(dataset, DAY, table, metadata={"source": "unit", "quarantined": 3})
    prefix = partition_prefix(dataset, DAY)

    read = lake.read_partition(dataset, DAY)
    assert read.schema.equals(table.schema)
    assert read.equals(table)
    assert lake.read_partition(dataset, DAY, columns=["amt", "trans_num"]).column_names == ["amt", "trans_num"]

    assert manifest == lake.partition_manifest(dataset, DAY)
    assert re.fullmatch(rf"\d{{8}}T\d{{12}}Z-{lake.writer_scope()}-[0-9a-f]{{8}}", manifest["version"])
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


def test_list_partitions_since_lists_from_that_day_on(lake: Lake, dataset: str) -> None:
    days = [date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1), date(2024, 3, 10), date(2024, 11, 2)]
    for k, day in enumerate(days):
        lake.publish_partition(dataset, day, make_table(3, start=3 * k))
    assert lake.list_partitions(dataset, since=date(2024, 2, 29)) == days[1:]  # the day itself included
    assert lake.list_partitions(dataset, since=date(2024, 3, 2)) == days[3:]  # from a day without a partition
    assert lake.list_partitions(dataset, since=date(2024, 1, 1)) == lake.list_partitions(dataset) == days
    assert lake.list_partitions(dataset, since=date(2024, 11, 3)) == []
    # S3 starts the listing there: the keys of earlier days are not even returned
    after = lake.list_keys(dataset + "/dt=", start_after=f"{dataset}/dt=2024-03-10")
    assert after and all("dt=2024-03-10/" in key or "dt=2024-11-02/" in key for key in after)


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
