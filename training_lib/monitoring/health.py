"""Reachability checks of the platform's services, used by the `platform_health` DAG and tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

from training_lib.config import Settings

PROBE_PREFIX = "_health/"


class ServiceUnavailable(RuntimeError):
    """A service the platform needs does not answer; the message names it, its URL and the setting."""


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


def require_mlflow(settings: Settings) -> None:
    """Fail fast, naming ``MLFLOW_TRACKING_URI``, when the tracking server does not answer ``GET /health``.

    One request (timeout: MLflow's own ``MLFLOW_HTTP_REQUEST_TIMEOUT``) instead of the MLflow client's retry
    schedule (minutes) ending in a connection-pool error: a task that needs MLflow checks it before any work.
    Servers that are not HTTP (a local ``sqlite:``/file store) are not checked."""
    import urllib.error
    import urllib.request

    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_TIMEOUT

    uri = settings.mlflow_tracking_uri
    if not uri.startswith(("http://", "https://")):
        return
    timeout = MLFLOW_HTTP_REQUEST_TIMEOUT.get()
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout) as response:  # noqa: S310 - configured URL
            if 200 <= response.status < 300:
                return
            problem = f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        problem = f"HTTP {exc.code}"
    except TimeoutError:
        problem = f"no answer within {timeout}s"
    except (urllib.error.URLError, OSError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise ServiceUnavailable(
        f"MLflow tracking server MLFLOW_TRACKING_URI={uri} is not reachable (GET {uri}/health: {problem}); start it"
        " (`make up` starts the missing services of the local stack) or point MLFLOW_TRACKING_URI at a running server"
    )
