"""S3 access: clients built from settings (moto, MinIO or AWS alike) and :class:`ObjectStore`, the bucket's
objects with errors that name ``s3://bucket/key``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from training_lib.config import Settings, load_settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # pragma: no cover
else:
    S3Client = Any

MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# A conditional write lost: 412 PreconditionFailed (the ETag or the object's absence no longer holds), 409
# ConditionalRequestConflict (AWS: a concurrent conditional write to the same key is in flight).
CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})


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


class LakeError(Exception):
    """An S3 operation on the lake failed; the message names ``s3://bucket/key``."""


class LakeConflict(LakeError):
    """A conditional write was refused: another writer changed (or created) the object since it was read."""


class LakeKeyError(LakeError, KeyError):
    """The object does not exist; the message names ``s3://bucket/key``."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def error_code(exc: Exception) -> str:
    """The S3 error code of a botocore error ("" for any other exception)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class ObjectStore:
    """The platform bucket's objects: single-PUT writes, reads, listings, deletes, JSON, presigned links."""

    def __init__(self, settings: Settings | None = None, client: S3Client | None = None) -> None:
        self.settings = settings or load_settings()
        self.client: S3Client = client if client is not None else s3_client(self.settings)

    @property
    def bucket(self) -> str:
        return self.settings.bucket

    def __repr__(self) -> str:
        return f"{type(self).__name__}(s3://{self.bucket}, endpoint={self.settings.s3_endpoint_url or 'aws'})"

    def uri(self, key: str) -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.bucket}/{key}"

    def _fail(self, operation: str, key: str, exc: Exception) -> LakeError:
        code = error_code(exc)
        if code in MISSING_CODES:
            return LakeKeyError(f"{self.uri(key)} does not exist ({operation})")
        if code in CONFLICT_CODES:
            return LakeConflict(f"S3 {operation} {self.uri(key)} refused ({code}): another writer changed it first")
        return LakeError(f"S3 {operation} {self.uri(key)} failed: {exc}")

    def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str | None = None,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        """Write one object in a single PUT (atomic: readers see the old or the new object, never a mix).

        Conditional writes, enforced by S3: ``if_match`` writes only while the object still has that ETag,
        ``if_none_match`` only while no object has the key; otherwise :class:`LakeConflict` and nothing changes.
        Returns the new object's ETag.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        extra: dict[str, str] = {"ContentType": content_type} if content_type else {}
        if if_match is not None:
            extra["IfMatch"] = if_match
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        try:
            return str(self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra).get("ETag", ""))
        except (ClientError, BotoCoreError) as exc:
            if if_match is not None and error_code(exc) in MISSING_CODES:  # AWS: the object it matched is gone
                raise LakeConflict(f"S3 PUT {self.uri(key)} refused: the object it was to replace is gone") from exc
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
            if error_code(exc) in MISSING_CODES:
                return False
            raise self._fail("HEAD", key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail("HEAD", key, exc) from exc
        return True

    def list_modified(self, prefix: str) -> list[tuple[str, datetime]]:
        """(key, last modified) of every key starting with ``prefix``, sorted by key."""
        return sorted(
            (item["Key"], item["LastModified"]) for page in self._pages(prefix) for item in page.get("Contents", [])
        )

    def list_keys(self, prefix: str, *, page_size: int = 1000, start_after: str | None = None) -> list[str]:
        """Every key starting with ``prefix`` (a raw prefix: end it with ``/`` for a folder), sorted; only the keys
        after ``start_after`` when given (S3 lists from there: the cost does not grow with the keys before it)."""
        return sorted(key for key, _ in self._list(prefix, page_size=page_size, start_after=start_after))

    def _list(
        self, prefix: str, *, delimiter: str | None = None, page_size: int = 1000, start_after: str | None = None
    ) -> Iterator[tuple[str, bool]]:
        """(key, is_common_prefix) pairs under ``prefix``, all pages."""
        for page in self._pages(prefix, delimiter=delimiter, page_size=page_size, start_after=start_after):
            for item in page.get("Contents", []):
                yield item["Key"], False
            for common in page.get("CommonPrefixes", []):
                yield common["Prefix"], True

    def _pages(
        self, prefix: str, *, delimiter: str | None = None, page_size: int = 1000, start_after: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """The ``list_objects_v2`` answers under ``prefix``, page by page; a failure names the prefix."""
        from botocore.exceptions import BotoCoreError, ClientError

        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        if start_after:
            kwargs["StartAfter"] = start_after
        try:
            yield from self.client.get_paginator("list_objects_v2").paginate(
                **kwargs, PaginationConfig={"PageSize": page_size}
            )
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

    def put_json(self, key: str, obj: Any, *, if_match: str | None = None, if_none_match: bool = False) -> str:
        """Write ``obj`` as UTF-8 JSON in a single PUT (conditions as :meth:`put_bytes`); the new ETag."""
        data = json.dumps(obj, indent=2, ensure_ascii=False).encode()
        return self.put_bytes(key, data, "application/json", if_match=if_match, if_none_match=if_none_match)

    def get_json_tagged(self, key: str) -> tuple[Any, str | None]:
        """The object parsed as JSON and its ETag, read in one GET; ``(None, None)`` when it does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            data = response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            error = self._fail("GET", key, exc)
            if isinstance(error, LakeKeyError):
                return None, None
            raise error from exc
        try:
            return json.loads(data), str(response.get("ETag", ""))
        except ValueError as exc:
            raise LakeError(f"{self.uri(key)} is not valid JSON: {exc}") from exc

    def get_json(self, key: str, *, missing_ok: bool = False) -> Any:
        """Parse the object as JSON. Missing: :class:`LakeKeyError`, or ``None`` with ``missing_ok=True``."""
        value, etag = self.get_json_tagged(key)
        if etag is None and not missing_ok:
            raise LakeKeyError(f"{self.uri(key)} does not exist (GET)")
        return value

    def presigned_url(self, key: str, expires_in: int = 3600) -> str:
        """A time-limited HTTP(S) GET URL for the object (for links to reports)."""
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )
