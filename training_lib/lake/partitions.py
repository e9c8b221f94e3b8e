"""The partition commit protocol: stage part files, combine staged shards, commit one manifest.

A partition ``<dataset>/dt=D`` is the set of Parquet part files its ``_manifest.json`` lists. Parts with a
fresh version id are written first (:meth:`PartitionWriter.stage_partition`), then the manifest in a single
PUT (the commit point, :meth:`PartitionWriter.commit_partition`), then the parts no manifest refers to are
deleted. Several tasks may stage versions of it (parallel shards, joined by
:meth:`PartitionWriter.combine_staged`).

S3 enforces one committer at a time: the manifest is written with ``If-Match`` on the ETag of the manifest that
was read (``If-None-Match: *`` for a first publish), so of two concurrent commits exactly one wins; the other
gets :class:`LakeConflict` (or, if the winner committed the very same content, the winner's manifest) and its
parts are deleted. Part names carry the writer's scope (:func:`training_lib.config.writer_scope`: one Airflow
DAG run), so a commit deletes only parts the previous manifest listed, its own run's leftovers, and orphans
older than ``FRAUD_ORPHAN_GRACE_HOURS`` — never what a concurrent run has staged.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from training_lib.config import writer_scope
from training_lib.lake.layout import MANIFEST_KEY_RE, dataset_root, manifest_key, partition_prefix
from training_lib.lake.objects import LakeConflict, LakeError, ObjectStore

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
ROW_GROUP_ROWS = 128 * 1024  # rows per Parquet row group: the unit a streaming reader holds at most
DICTIONARY_SAMPLE_ROWS = 10_000  # the rows that decide which columns are dictionary-encoded


# part-<UTC timestamp>-<writer scope>-<random>-<index>.parquet (parts written before scopes have no scope)
PART_SCOPE_RE = re.compile(r"part-\d{8}T\d{12}Z-([0-9a-f]{8})-[0-9a-f]{8}-\d{5}\.parquet")


def _new_version(scope: str | None = None) -> str:
    """A sortable, unique partition version: UTC timestamp (microseconds), the writer's scope, a random suffix."""
    middle = f"{scope}-" if scope else ""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{middle}{secrets.token_hex(4)}"


def part_scope(key: str) -> str | None:
    """The writer scope a part file's name carries (``None`` for a name without one)."""
    match = PART_SCOPE_RE.fullmatch(key.rsplit("/", 1)[-1])
    return match.group(1) if match else None


class PartitionWriter(ObjectStore):
    """Manifests and the commit protocol of the daily partitions (read by :class:`training_lib.lake.storage.Lake`).

    ``scope`` names this writer in its part files (default: :func:`training_lib.config.writer_scope`).
    """

    scope: str | None = None

    def writer_scope(self) -> str:
        """This writer's scope: ``scope`` when set, else the DAG run's (or the process's)."""
        return self.scope or writer_scope()

    def manifest_key(self, dataset: str, day: date) -> str:
        """``<dataset>/dt=D/_manifest.json``: the commit point of the partition."""
        return manifest_key(dataset, day)

    def partition_manifest(self, dataset: str, day: date) -> dict[str, Any] | None:
        """The manifest in force, or ``None`` when the partition was never published."""
        return self.get_json(self.manifest_key(dataset, day), missing_ok=True)

    def partition_exists(self, dataset: str, day: date) -> bool:
        """Whether the partition has a manifest."""
        return self.exists(self.manifest_key(dataset, day))

    def list_partitions(self, dataset: str, since: date | None = None) -> list[date]:
        """Days of ``dataset`` that have a manifest, sorted; only days from ``since`` on when given (listed from
        there, so the cost does not grow with the days before it)."""
        root = dataset_root(dataset) + "/"
        start_after = f"{root}dt={since.isoformat()}" if since else None  # that day's keys sort right after it
        days = set()
        for key in self.list_keys(root + "dt=", start_after=start_after):
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
        version = _new_version(self.writer_scope())
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
        return combine_staged_manifests(staged, metadata, scope=self.writer_scope())

    def discard_staged(self, staged: dict[str, Any]) -> None:
        """Delete the part files of a staged version that will not be committed (best effort).

        Never call it with a committed manifest: its parts are the partition's content.
        """
        self._discard(list(staged["files"]))

    def commit_partition(self, staged: dict[str, Any]) -> dict[str, Any]:
        """Make a staged version the partition's content: one conditional manifest PUT, then a sweep.

        Idempotent: when the partition already holds exactly this content (same part bytes, e.g. a re-run of
        the same day), the staged parts are discarded and the current version stays, untouched. When another
        writer commits first (S3 refuses the conditional PUT): its manifest if it holds the same content, else
        :class:`LakeConflict`; either way this attempt's parts are deleted and readers never saw them.
        """
        dataset, day = staged["dataset"], date.fromisoformat(staged["day"])
        prefix = partition_prefix(dataset, day)
        key = self.manifest_key(dataset, day)
        current, etag = self.get_json_tagged(key)
        if current and staged.get("content_sha256") and current.get("content_sha256") == staged["content_sha256"]:
            self._discard([part for part in staged["files"] if part not in set(current["files"])])
            self._sweep(prefix, keep=set(current["files"]), replaced=set())
            log.info("%s: content unchanged, version %s kept", self.uri(prefix), current["version"])
            return current
        self._check_committable(prefix, staged)
        manifest = {
            **staged,
            "published_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        try:
            self.put_json(key, manifest, if_match=etag, if_none_match=etag is None)  # the commit point
        except LakeConflict:
            return self._lost_race(staged, key, read=current)
        except BaseException:
            if not self._committed(dataset, day, manifest["version"]):
                self._discard(list(manifest["files"]))
            raise
        self._sweep(prefix, keep=set(manifest["files"]), replaced=set(current["files"]) if current else set())
        log.info(
            "published %s: version %s, %d rows in %d file(s)",
            self.uri(prefix),
            manifest["version"],
            manifest["rows"],
            len(manifest["files"]),
        )
        return manifest

    def _check_committable(self, prefix: str, staged: dict[str, Any]) -> None:
        """Refuse a staged version whose parts are gone, or so old that a sweep may take them meanwhile."""
        modified = dict(self.list_modified(prefix + "/part-"))
        missing = [part for part in staged["files"] if part not in modified]
        if missing:
            raise LakeError(
                f"cannot commit {self.uri(prefix)} version {staged['version']}: staged file(s) "
                f"{[self.uri(k) for k in missing[:3]]} are gone (another run published this day); stage again"
            )
        oldest = min((modified[part] for part in staged["files"]), default=None)
        limit = timedelta(hours=self.settings.orphan_grace_hours / 2)
        if oldest is not None and datetime.now(UTC) - oldest > limit:
            raise LakeError(
                f"cannot commit {self.uri(prefix)} version {staged['version']}: its parts were staged at "
                f"{oldest:%Y-%m-%d %H:%M} UTC, more than half of "
                f"FRAUD_ORPHAN_GRACE_HOURS={self.settings.orphan_grace_hours:g} ago"
                " (another commit may sweep them as orphans meanwhile); stage again"
            )

    def _lost_race(self, staged: dict[str, Any], key: str, read: dict[str, Any] | None) -> dict[str, Any]:
        """Another writer committed between our read and our PUT: keep its version, delete our parts."""
        winner = self.get_json(key, missing_ok=True) or {}
        ours = [part for part in staged["files"] if part not in set(winner.get("files", []))]
        self._discard(ours)
        if staged.get("content_sha256") and winner.get("content_sha256") == staged["content_sha256"]:
            log.info("%s: another writer committed the same content first (%s)", self.uri(key), winner["version"])
            return winner
        read_version = (read or {}).get("version", "none (first publish)")
        raise LakeConflict(
            f"cannot commit {self.uri(key)} version {staged['version']}: another writer committed version "
            f"{winner.get('version')} after this one read version {read_version}; nothing of this attempt is "
            "visible and its parts are deleted: re-run to stage on the new state"
        )

    def _committed(self, dataset: str, day: date, version: str) -> bool:
        """Whether a manifest PUT that raised (e.g. a timeout) took effect after all; unknown counts as yes."""
        try:
            current = self.partition_manifest(dataset, day)
        except Exception:
            return True  # keep the parts: deleting parts a manifest refers to would break the partition
        return current is not None and current.get("version") == version

    def _sweep(self, prefix: str, keep: set[str], replaced: set[str]) -> None:
        """After a commit: delete unreferenced parts that were replaced, are this run's, or are orphans.

        A part of another writer's scope younger than the grace period may be staged for a commit in flight:
        it stays (a later commit sweeps it once it is an orphan).
        """
        folder = prefix + "/"
        scope = self.writer_scope()
        cutoff = datetime.now(UTC) - timedelta(hours=self.settings.orphan_grace_hours)
        doomed = [
            key
            for key, modified in self.list_modified(folder + "part-")
            if key.endswith(".parquet")
            and "/" not in key[len(folder) :]
            and key not in keep
            and (key in replaced or part_scope(key) == scope or modified < cutoff)
        ]
        self._discard(doomed)

    def _discard(self, keys: list[str]) -> None:
        """Best-effort deletion of unreferenced parts: a failure is logged, the next publish retries."""
        if not keys:
            return
        try:
            self.delete_keys(keys)
        except Exception as exc:  # orphans are invisible to readers; never mask the real outcome
            log.warning("could not delete %d unreferenced part(s) such as %s: %s", len(keys), self.uri(keys[0]), exc)


def combine_staged_manifests(
    staged: list[dict[str, Any]], metadata: dict[str, Any] | None = None, *, scope: str | None = None
) -> dict[str, Any]:
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
        "version": _new_version(scope),
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


def _dictionary_columns(table: pa.Table, sample_rows: int = DICTIONARY_SAMPLE_ROWS) -> list[str]:
    """Columns worth dictionary-encoding: at most half of the values distinct in the first ``sample_rows``.

    Ids, scores and amounts are nearly all distinct: a dictionary for them is built and then abandoned by the
    writer (it costs the most of a write, and makes the file larger). A column whose values cannot be counted
    (null, nested or dictionary types) keeps the writer's default. Deterministic for the same table.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    sample = table.slice(0, sample_rows)

    def repetitive(name: str) -> bool:
        try:
            return pc.count_distinct(sample.column(name)).as_py() <= sample.num_rows // 2
        except pa.ArrowNotImplementedError:
            return True

    return [name for name in table.column_names if not sample.num_rows or repetitive(name)]


def _to_parquet(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(
        table, buffer, row_group_size=ROW_GROUP_ROWS, compression="zstd", use_dictionary=_dictionary_columns(table)
    )
    return buffer.getvalue()
