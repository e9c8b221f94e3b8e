"""S3 access for the platform: clients built from settings (moto, MinIO or AWS alike) and the lake layout."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from training_lib.config import Settings, load_settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # pragma: no cover
else:
    S3Client = Any

# Lake layout: every dataset is partitioned by day as <dataset>/dt=YYYY-MM-DD/.
LANDING_TRANSACTIONS = "landing/transactions"  # files as delivered (CSV in the Kaggle layout or Parquet)
LANDING_LABELS = "landing/labels"  # label files as delivered
VALIDATED_TRANSACTIONS = "validated/transactions"  # rows that passed the quality suite (Parquet)
QUARANTINE_TRANSACTIONS = "quarantine/transactions"  # rows that failed, as text, with the reason
LABELS = "labels"  # the label store: confirmed labels per confirmation day
QUARANTINE_LABELS = "quarantine/labels"
REPORTS_QUALITY = "reports/quality"  # GX Data Docs + JSON summary per day
REPORTS_DRIFT = "reports/drift"  # Evidently HTML + JSON summary per day
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
    """A boto3 S3 client for the configured endpoint, region and (optional) explicit keys."""
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
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60),
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
