"""S3 access for the platform: clients built from settings (moto, MinIO or AWS alike) and the lake layout.

:class:`Lake` is the one way the platform reads and writes its bucket. Daily partitions of tabular
datasets are published atomically: Parquet part files with a fresh version id first, then
``<prefix>/_manifest.json`` in a single PUT (the commit point), then the parts no manifest refers to are
deleted. Readers only read what a manifest lists, so they never see half a partition or two versions.
One committer per partition at a time (one Airflow task per dataset and day); several tasks may stage versions
of it (parallel shards, joined by :meth:`Lake.combine_staged`); readers may be many.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import mimetypes
import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from training_lib.config import Settings, load_settings

if TYPE_CHECKING:
    import pyarrow as pa
    from mypy_boto3_s3 import S3Client  # pragma: no cover
else:
    S3Client = Any

log = logging.getLogger(__name__)

# Lake layout: every dataset is partitioned by day as <dataset>/dt=YYYY-MM-DD/.
LANDING_TRANSACTIONS = "landing/transactions"  # files as delivered (CSV in the Kaggle layout or Parquet)
LANDING_LABELS = "landing/labels"  # label files as delivered
VALIDATED_TRANSACTIONS = "validated/transactions"  # rows that passed the quality suite (Parquet)
QUARANTINE_TRANSACTIONS = "quarantine/transactions"  # rows that failed, as text, with the reason
LABELS = "labels"  # the label store: confirmed labels per confirmation day
QUARANTINE_LABELS = "quarantine/labels"
REPORTS_QUALITY = "reports/quality"  # GX Data Docs + JSON summary per day
REPORTS_DRIFT = "reports/drift"  # Evidently HTML + JSON summary per day
PREDICTIONS = "predictions"  # batch scores per day: one row per validated transaction, card tokens only
REPORTS_SCORING = "reports/scoring"  # per-day scoring summary
REPORTS_PERFORMANCE = "reports/performance"  # realized quality once a scored day's labels matured
AUDIT_REGISTRY = "audit/registry"  # append-only log of champion/challenger decisions: one object per event
LAKE_DATASETS = (
    LANDING_TRANSACTIONS,
    LANDING_LABELS,
    VALIDATED_TRANSACTIONS,
    QUARANTINE_TRANSACTIONS,
    LABELS,
    QUARANTINE_LABELS,
    REPORTS_QUALITY,
    REPORTS_DRIFT,
)


def partition_prefix(dataset: str, day: date) -> str:
    """``<dataset>/dt=YYYY-MM-DD`` (no trailing slash)."""
    return f"{dataset}/dt={day.isoformat()}"


def s3_client(settings: Settings | None = None) -> S3Client:
    """A boto3 S3 client for the configured endpoint, region and (optional) explicit keys.

    Timeouts and attempts come from the settings (``FRAUD_S3_*``): a server that accepts connections but
    never answers (hung, frozen) fails the request after ``max_attempts * read_timeout`` plus backoff, so
    the task fails and Airflow retries it, instead of the task hanging."""
    import boto3
    from botocore.config import Config

    settings = settings or load_settings()
    key, secret = settings.s3_credentials()
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.aws_region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(
            retries={"total_max_attempts": settings.s3_max_attempts, "mode": "standard"},
            connect_timeout=settings.s3_connect_timeout_s,
            read_timeout=settings.s3_read_timeout_s,
        ),
    )


def ensure_bucket(settings: Settings | None = None) -> None:
    """Create the platform bucket when it does not exist (idempotent)."""
    from botocore.exceptions import ClientError

    settings = settings or load_settings()
    client = s3_client(settings)
    try:
        client.head_bucket(Bucket=settings.bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket", "NotFound"}:
            raise
        client.create_bucket(Bucket=settings.bucket)


# ---------------------------------------------------------------------------------------------------------------------
# The lake: objects, landing files, atomically published Parquet partitions, reports.

MANIFEST_NAME = "_manifest.json"
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
ROW_GROUP_ROWS = 128 * 1024  # rows per Parquet row group: the unit iter_partition_batches reads at most
DEFAULT_BATCH_ROWS = 64 * 1024
_READ_ATTEMPTS = 5  # manifest reloads when a concurrent re-publish removed the parts a reader was reading
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_DAY_RE = re.compile(r"dt=(\d{4}-\d{2}-\d{2})$")
_MANIFEST_RE = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/" + re.escape(MANIFEST_NAME))


class LakeError(Exception):
    """An S3 operation on the lake failed; the message names ``s3://bucket/key``."""


class LakeKeyError(LakeError, KeyError):
    """The object does not exist; the message names ``s3://bucket/key``."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PartitionNotFound(LakeKeyError):
    """A partition has no manifest (never published); a :class:`LookupError`."""


class PartitionChanged(LakeError):
    """A streaming reader lost its version to a concurrent re-publish after it had yielded rows."""


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _dataset(dataset: str) -> str:
    cleaned = dataset.strip("/")
    if not cleaned or ".." in cleaned.split("/"):
        raise ValueError(f"not a lake dataset prefix: {dataset!r}")
    return cleaned


def _new_version() -> str:
    """A sortable, unique partition version: UTC timestamp (microseconds) + random suffix."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"


def _hidden(relative_key: str) -> bool:
    """A marker, temporary or hidden object: some path component starts with ``_`` or ``.``, or a folder key."""
    return relative_key.endswith("/") or any(part.startswith(("_", ".")) for part in relative_key.split("/"))


class Lake:
    """The platform bucket: objects, landing files, atomically published partitions and reports."""

    def __init__(self, settings: Settings | None = None, client: S3Client | None = None) -> None:
        self.settings = settings or load_settings()
        self.client: S3Client = client if client is not None else s3_client(self.settings)

    @property
    def bucket(self) -> str:
        return self.settings.bucket

    def __repr__(self) -> str:
        return f"Lake(s3://{self.bucket}, endpoint={self.settings.s3_endpoint_url or 'aws'})"

    def uri(self, key: str) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{key}"

    def _fail(self, operation: str, key: str, exc: Exception) -> LakeError:
        code = _error_code(exc)
        if code in _MISSING_CODES:
            return LakeKeyError(f"{self.uri(key)} does not exist ({operation})")
        return LakeError(f"S3 {operation} {self.uri(key)} failed: {exc}")

    # -- objects ------------------------------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Write one object in a single PUT (atomic: readers see the old or the new object, never a mix)."""
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {"ContentType": content_type} if content_type else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("PUT", key, exc) from exc

    def get_bytes(self, key: str) -> bytes:
        """The object's content; :class:`LakeKeyError` naming ``s3://bucket/key`` when it does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("GET", key, exc) from exc

    def exists(self, key: str) -> bool:
        """Whether the object exists (HEAD)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                return False
            raise self._fail("HEAD", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("HEAD", key, exc) from exc
        return True

    def list_keys(self, prefix: str, *, page_size: int = 1000) -> list[str]:
        """Every key starting with ``prefix`` (a raw prefix: end it with ``/`` for a folder), sorted."""
        return sorted(key for key, _ in self._list(prefix, page_size=page_size))

    def _list(self, prefix: str, *, delimiter: str | None = None, page_size: int = 1000) -> Iterator[tuple[str, bool]]:
        """(key, is_common_prefix) pairs under ``prefix``, all pages."""
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                **kwargs, PaginationConfig={"PageSize": page_size}
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"], False
                for common in page.get("CommonPrefixes", []):
                    yield common["Prefix"], True
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("LIST", prefix, exc) from exc

    def delete_keys(self, keys: Iterable[str]) -> int:
        """Delete the given keys (1000 per request); the number of keys deleted."""
        from botocore.exceptions import BotoCoreError, ClientError

        batch: list[str] = []
        deleted = 0

        def flush() -> None:
            nonlocal deleted
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            except (ClientError, BotoCoreError) as exc:
                raise self._fail("DELETE", batch[0], exc) from exc
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise LakeError(
                    f"S3 DELETE {self.uri(first.get('Key', '?'))} failed: {first.get('Code')} {first.get('Message')}"
                    f" ({len(errors)} of {len(batch)} keys not deleted)"
                )
            deleted += len(batch)
            batch.clear()

        for key in keys:
            batch.append(key)
            if len(batch) == 1000:
                flush()
        if batch:
            flush()
        return deleted

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix`` (must not be empty); the number of keys deleted."""
        if not prefix.strip("/"):
            raise ValueError("refusing to delete with an empty prefix (the whole bucket)")
        return self.delete_keys(self.list_keys(prefix))

    def put_json(self, key: str, obj: Any) -> None:
        """Write ``obj`` as UTF-8 JSON in a single PUT."""
        data = json.dumps(obj, indent=2, ensure_ascii=False).encode()
        self.put_bytes(key, data, "application/json")

    def get_json(self, key: str, *, missing_ok: bool = False) -> Any:
        """Parse the object as JSON. Missing: :class:`LakeKeyError`, or ``None`` with ``missing_ok=True``."""
        try:
            data = self.get_bytes(key)
        except LakeKeyError:
            if missing_ok:
                return None
            raise
        try:
            return json.loads(data)
        except ValueError as exc:
            raise LakeError(f"{self.uri(key)} is not valid JSON: {exc}") from exc

    def presigned_url(self, key: str, expires_in: int = 3600) -> str:
        """A time-limited HTTP(S) GET URL for the object (for links to reports)."""
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )

    # -- landing ------------------------------------------------------------------------------------------------------

    def landing_files(self, dataset: str, day: date) -> list[str]:
        """Keys delivered under ``<dataset>/dt=D/``, without markers and hidden names (``_…``, ``.…``), sorted."""
        prefix = partition_prefix(_dataset(dataset), day) + "/"
        return [key for key in self.list_keys(prefix) if not _hidden(key[len(prefix) :])]

    def list_days(self, dataset: str) -> list[date]:
        """Days with any object under ``<dataset>/dt=D/`` (e.g. landing folders), sorted."""
        days = set()
        for common, is_prefix in self._list(_dataset(dataset) + "/dt=", delimiter="/"):
            match = _DAY_RE.search(common.rstrip("/"))
            if is_prefix and match:
                days.add(date.fromisoformat(match.group(1)))
        return sorted(days)

    # -- partitions ---------------------------------------------------------------------------------------------------

    def manifest_key(self, dataset: str, day: date) -> str:
        """``<dataset>/dt=D/_manifest.json``: the commit point of the partition."""
        return f"{partition_prefix(_dataset(dataset), day)}/{MANIFEST_NAME}"

    def partition_manifest(self, dataset: str, day: date) -> dict[str, Any] | None:
        """The manifest in force, or ``None`` when the partition was never published."""
        return self.get_json(self.manifest_key(dataset, day), missing_ok=True)

    def partition_exists(self, dataset: str, day: date) -> bool:
        """Whether the partition has a manifest."""
        return self.exists(self.manifest_key(dataset, day))

    def list_partitions(self, dataset: str) -> list[date]:
        """Days of ``dataset`` that have a manifest, sorted."""
        root = _dataset(dataset) + "/"
        days = set()
        for key in self.list_keys(root + "dt="):
            match = _MANIFEST_RE.fullmatch(key[len(root) :])
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

        prefix = partition_prefix(_dataset(dataset), day)
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
            "dataset": _dataset(dataset),
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
        """``<dataset>/dt=D/<name>``, e.g. ``reports/drift/dt=2024-01-01/report.html``."""
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"not a report name: {name!r}")
        return f"{partition_prefix(_dataset(dataset), day)}/{name}"

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
