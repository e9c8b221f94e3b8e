"""The lake's layout: every dataset is a prefix partitioned by day as ``<dataset>/dt=YYYY-MM-DD/``.

Pure key arithmetic, no S3 call: the names of the zones, of a partition's folder, of its manifest (the
commit point, :mod:`training_lib.lake.storage`) and of the reports beside it.
"""

from __future__ import annotations

import re
from datetime import date

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

MANIFEST_NAME = "_manifest.json"
DAY_FOLDER_RE = re.compile(r"dt=(\d{4}-\d{2}-\d{2})$")
MANIFEST_KEY_RE = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/" + re.escape(MANIFEST_NAME))


def partition_prefix(dataset: str, day: date) -> str:
    """``<dataset>/dt=YYYY-MM-DD`` (no trailing slash)."""
    return f"{dataset}/dt={day.isoformat()}"


def dataset_root(dataset: str) -> str:
    """``dataset`` without surrounding slashes; ValueError for an empty prefix or one with ``..``."""
    cleaned = dataset.strip("/")
    if not cleaned or ".." in cleaned.split("/"):
        raise ValueError(f"not a lake dataset prefix: {dataset!r}")
    return cleaned


def is_hidden(relative_key: str) -> bool:
    """A marker, temporary or hidden object: some path component starts with ``_`` or ``.``, or a folder key."""
    return relative_key.endswith("/") or any(part.startswith(("_", ".")) for part in relative_key.split("/"))


def manifest_key(dataset: str, day: date) -> str:
    """``<dataset>/dt=D/_manifest.json``: the commit point of the partition."""
    return f"{partition_prefix(dataset_root(dataset), day)}/{MANIFEST_NAME}"


def report_key(dataset: str, day: date, name: str) -> str:
    """``<dataset>/dt=D/<name>``, e.g. ``reports/drift/dt=2024-01-01/report.html``."""
    if not name or name.startswith("/") or ".." in name.split("/"):
        raise ValueError(f"not a report name: {name!r}")
    return f"{partition_prefix(dataset_root(dataset), day)}/{name}"
