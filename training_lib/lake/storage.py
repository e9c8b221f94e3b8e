"""The lake: daily partitions of tabular datasets read as one complete version, landing files and reports.

:class:`Lake` is the one way the platform reads and writes its bucket (objects:
:class:`~training_lib.lake.objects.ObjectStore`; keys: :mod:`training_lib.lake.layout`; the commit protocol:
:class:`~training_lib.lake.partitions.PartitionWriter`). Readers only read what a manifest lists, so they never
see half a partition or two versions; readers may be many.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from training_lib.lake.layout import DAY_FOLDER_RE, dataset_root, is_hidden, partition_prefix, report_key
from training_lib.lake.objects import LakeError, LakeKeyError
from training_lib.lake.partitions import PartitionWriter

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 64 * 1024
_READ_ATTEMPTS = 5  # manifest reloads when a concurrent re-publish removed the parts a reader was reading


class PartitionNotFound(LakeKeyError):
    """A partition has no manifest (never published); a :class:`LookupError`."""


class PartitionChanged(LakeError):
    """A streaming reader lost its version to a concurrent re-publish after it had yielded rows."""


class Lake(PartitionWriter):
    """The platform bucket: its objects, landing files, atomically published partitions and reports."""

    # -- landing ------------------------------------------------------------------------------------------------------

    # -- landing ------------------------------------------------------------------------------------------------------

    def landing_files(self, dataset: str, day: date) -> list[str]:
        """Keys delivered under ``<dataset>/dt=D/``, without markers and hidden names (``_…``, ``.…``), sorted."""
        prefix = partition_prefix(dataset_root(dataset), day) + "/"
        return [key for key in self.list_keys(prefix) if not is_hidden(key[len(prefix) :])]

    def list_days(self, dataset: str) -> list[date]:
        """Days with any object under ``<dataset>/dt=D/`` (e.g. landing folders), sorted."""
        days = set()
        for common, is_prefix in self._list(dataset_root(dataset) + "/dt=", delimiter="/"):
            match = DAY_FOLDER_RE.search(common.rstrip("/"))
            if is_prefix and match:
                days.add(date.fromisoformat(match.group(1)))
        return sorted(days)

    # -- partition reads -----------------------------------------------------------------------------------------------

    def _manifest_or_raise(self, dataset: str, day: date) -> dict[str, Any]:
        manifest = self.partition_manifest(dataset, day)
        if manifest is None:
            key = self.manifest_key(dataset, day)
            raise PartitionNotFound(f"partition not published: {self.uri(key)} does not exist")
        return manifest

    def _reload_after_missing_part(
        self, dataset: str, day: date, manifest: dict[str, Any], missing: LakeKeyError
    ) -> dict[str, Any]:
        """The newer manifest after a part vanished (concurrent re-publish); an error if the version is the same."""
        current = self._manifest_or_raise(dataset, day)
        if current["version"] == manifest["version"]:
            raise LakeError(
                f"partition {self.uri(self.manifest_key(dataset, day))} version {manifest['version']} is corrupt: "
                f"{missing}"
            ) from missing
        return current

    def read_partition(self, dataset: str, day: date, columns: Sequence[str] | None = None) -> pa.Table:
        """Exactly the files of the manifest in force, as one table (always one complete version).

        :class:`PartitionNotFound` (naming ``s3://bucket/<prefix>/_manifest.json``) when never published.
        If a concurrent re-publish deletes the parts being read, the new manifest is read and the read restarts.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        manifest = self._manifest_or_raise(dataset, day)
        for _ in range(_READ_ATTEMPTS):
            try:
                tables = [
                    pq.read_table(pa.BufferReader(self.get_bytes(key)), columns=_columns(columns))
                    for key in manifest["files"]
                ]
            except LakeKeyError as missing:
                manifest = self._reload_after_missing_part(dataset, day, manifest, missing)
                continue
            return pa.concat_tables(tables) if len(tables) != 1 else tables[0]
        raise LakeError(f"{self.uri(self.manifest_key(dataset, day))} changed {_READ_ATTEMPTS} times while reading")

    def read_partitions(
        self, dataset: str, days: Iterable[date], columns: Sequence[str] | None = None, *, strict: bool = False
    ) -> pa.Table:
        """The partitions of ``days`` concatenated (each day once, in the given order).

        Unpublished days are skipped, or raise :class:`PartitionNotFound` with ``strict=True``. No partition at
        all: an empty table without columns.
        """
        import pyarrow as pa

        tables = []
        for day in dict.fromkeys(days):
            try:
                tables.append(self.read_partition(dataset, day, columns))
            except PartitionNotFound:
                if strict:
                    raise
        if not tables:
            return pa.table({})
        return pa.concat_tables(tables, promote_options="default")

    def iter_partition_batches(
        self, dataset: str, day: date, columns: Sequence[str] | None = None, batch_size: int = DEFAULT_BATCH_ROWS
    ) -> Iterator[pa.RecordBatch]:
        """Record batches of the partition, part by part and row group by row group (bounded memory).

        One part file is held in memory at a time. A concurrent re-publish before the first batch restarts on
        the new version; after rows were yielded it raises :class:`PartitionChanged` (restart the consumer).
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        manifest = self._manifest_or_raise(dataset, day)
        yielded = False
        for _ in range(_READ_ATTEMPTS):
            try:
                for key in manifest["files"]:
                    parquet = pq.ParquetFile(pa.BufferReader(self.get_bytes(key)))
                    for batch in parquet.iter_batches(batch_size=batch_size, columns=_columns(columns)):
                        yielded = True
                        yield batch
                return
            except LakeKeyError as missing:
                if yielded:
                    raise PartitionChanged(
                        f"{self.uri(self.manifest_key(dataset, day))} was re-published while version "
                        f"{manifest['version']} was being read: {missing}"
                    ) from missing
                manifest = self._reload_after_missing_part(dataset, day, manifest, missing)
        raise LakeError(f"{self.uri(self.manifest_key(dataset, day))} changed {_READ_ATTEMPTS} times while reading")

    # -- reports ------------------------------------------------------------------------------------------------------

    def report_key(self, dataset: str, day: date, name: str) -> str:
        """``<dataset>/dt=D/<name>`` (:func:`training_lib.lake.layout.report_key`)."""
        return report_key(dataset, day, name)

    def put_report(self, dataset: str, day: date, name: str, data: bytes | str, content_type: str | None = None) -> str:
        """Write a report object (text is UTF-8); content type guessed from ``name`` when not given. Its key."""
        key = self.report_key(dataset, day, name)
        if content_type is None:
            guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
            content_type = f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed
        self.put_bytes(key, data.encode() if isinstance(data, str) else data, content_type)
        return key

    def report_url(self, dataset: str, day: date, name: str, *, expires_in: int | None = None) -> str:
        """``s3://`` URI of the report, or a presigned HTTP URL valid ``expires_in`` seconds."""
        key = self.report_key(dataset, day, name)
        return self.uri(key) if expires_in is None else self.presigned_url(key, expires_in)


def _columns(columns: Sequence[str] | None) -> list[str] | None:
    return None if columns is None else list(columns)
