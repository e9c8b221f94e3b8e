"""Reachability checks of the platform's services, used by the `platform_health` DAG and tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

from training_lib.config import Settings

PROBE_PREFIX = "_health/"


def check_s3(client: Any, bucket: str) -> dict[str, Any]:
    """Write, read back and delete a probe object; raise if any step fails or the bytes differ."""
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    payload = uuid.uuid4().bytes
    started = time.perf_counter()
    client.put_object(Bucket=bucket, Key=key, Body=payload)
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    finally:
        client.delete_object(Bucket=bucket, Key=key)
    if body != payload:
        raise RuntimeError(f"s3://{bucket}/{key}: read back {len(body)} bytes that differ from what was written")
    return {"bucket": bucket, "roundtrip_ms": round((time.perf_counter() - started) * 1000, 1)}


def check_mlflow(settings: Settings) -> dict[str, Any]:
    """Ask the tracking server for its experiments and the platform's registered model."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    experiments = client.search_experiments(max_results=100)
    models = client.search_registered_models(filter_string=f"name = '{settings.model_name}'")
    return {
        "tracking_uri": settings.mlflow_tracking_uri,
        "experiments": len(experiments),
        "model_registered": bool(models),
    }
