"""The partition commit protocol: stage part files, combine staged shards, commit one manifest.

A partition ``<dataset>/dt=D`` is the set of Parquet part files its ``_manifest.json`` lists. Parts with a
fresh version id are written first (:meth:`PartitionWriter.stage_partition`), then the manifest in a single
PUT (the commit point, :meth:`PartitionWriter.commit_partition`), then the parts no manifest refers to are
deleted. One committer per partition at a time (one Airflow task per dataset and day); several tasks may stage
versions of it (parallel shards, joined by :meth:`PartitionWriter.combine_staged`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import secrets
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from training_lib.lake.layout import MANIFEST_KEY_RE, MANIFEST_NAME, dataset_root, manifest_key, partition_prefix
from training_lib.lake.objects import LakeError, ObjectStore

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
ROW_GROUP_ROWS = 128 * 1024  # rows per Parquet row group: the unit a streaming reader holds at most


def _new_version() -> str:
    """A sortable, unique partition version: UTC timestamp (microseconds) + random suffix."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"


class PartitionWriter(ObjectStore):
    """Manifests and the commit protocol of the daily partitions (read by :class:`training_lib.lake.storage.Lake`)."""

    def manifest_key(self, dataset: str, day: date) -> str:
        """``<dataset>/dt=D/_manifest.json``: the commit point of the partition."""
        return manifest_key(dataset, day)

    def partition_manifest(self, dataset: str, day: date) -> dict[str, Any] | None:
        """The manifest in force, or ``None`` when the partition was never published."""
        return self.get_json(self.manifest_key(dataset, day), missing_ok=True)

    def partition_exists(self, dataset: str, day: date) -> bool:
        """Whether the partition has a manifest."""
        return self.exists(self.manifest_key(dataset, day))

    def list_partitions(self, dataset: str) -> list[date]:
        """Days of ``dataset`` that have a manifest, sorted."""
        root = dataset_root(dataset) + "/"
        days = set()
        for key in self.list_keys(root + "dt="):
            match = MANIFEST_KEY_RE.fullmatch(key[len(root) :])
            if match:
                days.add(date.fromisoformat(match.group(1)))
        return sorted(days)

    def publish_partition(
        self,
        dataset: str,
        day: date,
        tables: pa.Table | pa.RecordBatch | Iterable[pa.Table | pa.RecordBatch],
        *,
        schema: pa.Schema | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Atomically (re)place the partition ``<dataset>/dt=D`` with ``tables``; returns the new manifest.

        Each table becomes ``part-<version>-<i:05d>.parquet`` (an iterator is consumed one table at a time);
        ``_manifest.json`` is written last, in one PUT: the commit. Then parts of the partition that the new
        manifest does not list (older versions, leftovers of failed attempts) are deleted. If anything fails
        before the commit, the parts of this attempt are deleted (best effort), the previous version stays in
        force and the exception propagates. With ``schema`` every table is conformed to it (columns selected
        and cast); without, all tables must share the first one's schema. Zero tables or rows publish a valid
        empty partition (one empty part file), which needs ``schema`` when there are no tables at all.
        This is :meth:`stage_partition` followed by :meth:`commit_partition`.
        """
        return self.commit_partition(self.stage_partition(dataset, day, tables, schema=schema, metadata=metadata))

    def stage_partition(
        self,
        dataset: str,
        day: date,
        tables: pa.Table | pa.RecordBatch | Iterable[pa.Table | pa.RecordBatch],
        *,
        schema: pa.Schema | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write the part files of a new version, invisible to readers; returns the manifest to commit.

        The returned dict is JSON-serialisable (it can travel between tasks). Nothing is visible until
        :meth:`commit_partition`; uncommitted parts are removed by the next commit of that day.
        """
        import pyarrow as pa

        prefix = partition_prefix(dataset_root(dataset), day)
        meta = dict(metadata or {})
        json.dumps(meta)  # fail on unserialisable metadata before anything is written
        version = _new_version()
        written: list[str] = []
        content = hashlib.sha256()  # over the part files' bytes, in order: equal content, equal fingerprint
        rows = 0
        target = schema

        def write(table: pa.Table) -> None:
            key = f"{prefix}/part-{version}-{len(written):05d}.parquet"
            data = _to_parquet(table)
            self.put_bytes(key, data, PARQUET_CONTENT_TYPE)
            content.update(hashlib.sha256(data).digest())
            written.append(key)

        source: Iterable[Any] = [tables] if isinstance(tables, pa.Table | pa.RecordBatch) else tables
        try:
            for item in source:
                table = pa.Table.from_batches([item]) if isinstance(item, pa.RecordBatch) else item
                if not isinstance(table, pa.Table):
                    raise TypeError(f"publish_partition expects pyarrow Tables, got {type(table).__name__}")
                table = _conform(table, target, prefix)
                target = table.schema
                if table.num_rows:
                    write(table)
                    rows += table.num_rows
            if not written:
                if target is None:
                    raise ValueError(f"publishing an empty partition {self.uri(prefix)} needs a schema")
                write(target.empty_table())
        except BaseException:
            self._discard(written)
            raise
        assert target is not None
        return {
            "version": version,
            "dataset": dataset_root(dataset),
            "day": day.isoformat(),
            "files": list(written),
            "rows": rows,
            "columns": list(target.names),
            "schema": {field.name: str(field.type) for field in target},
            "content_sha256": content.hexdigest(),
            "published_at": None,
            "metadata": meta,
        }

    def combine_staged(self, staged: list[dict[str, Any]], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        """One manifest to commit from several staged versions of the same partition (e.g. parallel shards).

        Files are concatenated in the given order and rows summed; every staged version must be of the same
        dataset and day with the same columns and schema. The result has a new version id and
        ``content_sha256`` = SHA-256 over the staged versions' content hashes in order, so equal content gives
        an equal fingerprint (and :meth:`commit_partition` keeps an unchanged partition as it is). Nothing is
        written: this only builds the manifest.
        """
        return combine_staged_manifests(staged, metadata)

    def discard_staged(self, staged: dict[str, Any]) -> None:
        """Delete the part files of a staged version that will not be committed (best effort).

        Never call it with a committed manifest: its parts are the partition's content.
        """
        self._discard(list(staged["files"]))

    def commit_partition(self, staged: dict[str, Any]) -> dict[str, Any]:
        """Make a staged version the partition's content: one manifest PUT, then old parts are deleted.

        Idempotent: when the partition already holds exactly this content (same part bytes, e.g. a re-run of
        the same day), the staged parts are discarded and the current version stays, untouched.
        """
        dataset, day = staged["dataset"], date.fromisoformat(staged["day"])
        prefix = partition_prefix(dataset, day)
        current = self.partition_manifest(dataset, day)
        if current and staged.get("content_sha256") and current.get("content_sha256") == staged["content_sha256"]:
            self._discard([key for key in staged["files"] if key not in set(current["files"])])
            self._discard(self._parts(prefix, keep=set(current["files"])))  # leftovers of failed attempts
            log.info("%s: content unchanged, version %s kept", self.uri(prefix), current["version"])
            return current
        missing = [key for key in staged["files"] if not self.exists(key)]
        if missing:
            raise LakeError(
                f"cannot commit {self.uri(prefix)} version {staged['version']}: staged file(s) "
                f"{[self.uri(k) for k in missing[:3]]} are gone (another run published this day); stage again"
            )
        manifest = {
            **staged,
            "published_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        try:
            self.put_json(f"{prefix}/{MANIFEST_NAME}", manifest)  # the commit point
        except BaseException:
            if not self._committed(dataset, day, manifest["version"]):
                self._discard(list(manifest["files"]))
            raise
        self._discard(self._parts(prefix, keep=set(manifest["files"])))
        log.info(
            "published %s: version %s, %d rows in %d file(s)",
            self.uri(prefix),
            manifest["version"],
            manifest["rows"],
            len(manifest["files"]),
        )
        return manifest

    def _committed(self, dataset: str, day: date, version: str) -> bool:
        """Whether a manifest PUT that raised (e.g. a timeout) took effect after all; unknown counts as yes."""
        try:
            current = self.partition_manifest(dataset, day)
        except Exception:
            return True  # keep the parts: deleting parts a manifest refers to would break the partition
        return current is not None and current.get("version") == version

    def _parts(self, prefix: str, keep: set[str]) -> list[str]:
        """Part files directly under the partition folder that are not in ``keep``."""
        folder = prefix + "/"
        return [
            key
            for key in self.list_keys(folder + "part-")
            if key.endswith(".parquet") and "/" not in key[len(folder) :] and key not in keep
        ]

    def _discard(self, keys: list[str]) -> None:
        """Best-effort deletion of unreferenced parts: a failure is logged, the next publish retries."""
        if not keys:
            return
        try:
            self.delete_keys(keys)
        except Exception as exc:  # orphans are invisible to readers; never mask the real outcome
            log.warning("could not delete %d unreferenced part(s) such as %s: %s", len(keys), self.uri(keys[0]), exc)


def combine_staged_manifests(staged: list[dict[str, Any]], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest :meth:`PartitionWriter.combine_staged` builds (pure: nothing is read or written)."""
    if not staged:
        raise ValueError("combine_staged needs at least one staged version")
    meta = dict(metadata or {})
    json.dumps(meta)
    first = staged[0]
    content = hashlib.sha256()
    files: list[str] = []
    for i, item in enumerate(staged):
        where = f"staged version {i} ({item.get('version')})"
        if (item["dataset"], item["day"]) != (first["dataset"], first["day"]):
            raise ValueError(
                f"{where} is of {item['dataset']}/dt={item['day']}, not {first['dataset']}/dt={first['day']}"
            )
        if item["columns"] != first["columns"] or item["schema"] != first["schema"]:
            raise ValueError(f"{where} has schema {item['schema']}, not {first['schema']} of staged version 0")
        if not item.get("content_sha256"):
            raise ValueError(f"{where} has no content_sha256")
        duplicated = set(files) & set(item["files"])
        if duplicated:
            raise ValueError(f"{where} repeats part file(s) {sorted(duplicated)[:3]}")
        content.update(bytes.fromhex(item["content_sha256"]))
        files += item["files"]
    return {
        "version": _new_version(),
        "dataset": first["dataset"],
        "day": first["day"],
        "files": files,
        "rows": sum(int(item["rows"]) for item in staged),
        "columns": list(first["columns"]),
        "schema": dict(first["schema"]),
        "content_sha256": content.hexdigest(),
        "published_at": None,
        "metadata": meta,
    }


def _conform(table: pa.Table, schema: pa.Schema | None, where: str) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types (or unchanged when no schema yet)."""
    if schema is None:
        return table
    if table.schema.equals(schema, check_metadata=False):
        return table.replace_schema_metadata(schema.metadata)
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise ValueError(f"table for {where} lacks column(s) {missing} of the partition schema")
    try:
        return table.select(schema.names).cast(schema)
    except (ValueError, TypeError, NotImplementedError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"table for {where} does not fit the partition schema: {exc}") from exc


def _to_parquet(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=ROW_GROUP_ROWS, compression="zstd")
    return buffer.getvalue()
