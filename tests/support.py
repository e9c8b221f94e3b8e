"""Helpers the test modules share (plain functions; the fixtures built on them live in conftest.py)."""

from __future__ import annotations

from collections.abc import Mapping

from training_lib.config import Settings, load_settings
from training_lib.lake.objects import ensure_bucket
from training_lib.lake.storage import Lake


def moto_settings(endpoint: str, bucket: str, env: Mapping[str, str] | None = None) -> Settings:
    """Platform settings for ``bucket`` on a test's moto S3 server (the bucket is created); ``env``: more
    settings by their environment variable names."""
    settings = load_settings({"FRAUD_S3_ENDPOINT_URL": endpoint, "FRAUD_BUCKET": bucket, **(env or {})})
    ensure_bucket(settings)
    return settings


def drop_bucket(settings: Settings) -> None:
    """Delete every object of the settings' bucket, then the bucket."""
    lake = Lake(settings)
    lake.delete_keys(lake.list_keys(""))
    lake.client.delete_bucket(Bucket=settings.bucket)
