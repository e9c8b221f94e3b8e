"""The training dataset: the newest matured labelled days, split by time, snapshotted to the lake.

A day is *matured* when almost all its transactions carry a confirmed label. The days split out of time:
the oldest train, then validation, the newest test. The snapshot under ``training/datasets/<id>/`` holds
card tokens, never card numbers; a retrain and its re-runs read the same snapshot.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from dataclasses import asdict, dataclass
from datetime import date
from typing import TYPE_CHECKING

from training_lib.config import Settings
from training_lib.lake.layout import LABELS, VALIDATED_TRANSACTIONS
from training_lib.lake.storage import Lake

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

log = logging.getLogger(__name__)

DATASETS = "training/datasets"
MATURED_LABEL_SHARE = 0.95  # a day is matured when this share of its transactions has a confirmed label
VALIDATION_SHARE = 0.2
TEST_SHARE = 0.2
MIN_DAYS = 3
LABEL = "label"
SPLITS = ("train", "validation", "test")


class NotEnoughData(RuntimeError):
    """The lake does not hold enough matured, labelled days (or frauds) to train; the message says what."""


@dataclass
class DatasetInfo:
    dataset_id: str
    days: list[str]
    split_days: dict[str, list[str]]
    rows: dict[str, int]
    frauds: dict[str, int]
    labels_through: str  # last label partition read: the new_labels count restarts after it
    uri: str


def day_range(days: list[str]) -> str:
    """``first..last`` of sorted ISO days ("" for none): how runs, tags and reports name a window."""
    return f"{days[0]}..{days[-1]}" if days else ""


def load_labels(lake: Lake, through: date | None = None) -> pd.DataFrame:
    """All confirmed labels (trans_num, is_fraud) in the label store, up to ``through``."""
    return labels_of_days(lake, [d for d in lake.list_partitions(LABELS) if through is None or d <= through])


def labels_of_days(lake: Lake, days: Sequence[date]) -> pd.DataFrame:
    """The labels (trans_num, is_fraud) of the label partitions ``days`` (oldest first): a transaction labelled
    twice keeps its newest label."""
    import pandas as pd

    if not days:
        return pd.DataFrame({"trans_num": pd.Series(dtype="string"), "is_fraud": pd.Series(dtype="Int8")})
    frame = lake.read_partitions(LABELS, days, columns=["trans_num", "is_fraud"]).to_pandas()
    return frame.drop_duplicates("trans_num", keep="last")


def matured_days(lake: Lake, labels: pd.DataFrame, end: date | None = None, limit: int | None = None) -> list[date]:
    """The newest ``limit`` validated days (up to ``end``; all when no limit), oldest first, where at
    least MATURED_LABEL_SHARE of the rows have a label. Reads newest first and stops at ``limit``."""
    known = set(labels["trans_num"])
    out: list[date] = []
    for day in reversed(lake.list_partitions(VALIDATED_TRANSACTIONS)):
        if end is not None and day > end:
            continue
        manifest = lake.partition_manifest(VALIDATED_TRANSACTIONS, day) or {}
        columns = ["trans_num", "is_fraud"] if "is_fraud" in manifest.get("columns", []) else ["trans_num"]
        table = lake.read_partition(VALIDATED_TRANSACTIONS, day, columns=columns)
        trans = table.column("trans_num").to_pylist()
        own = table.column("is_fraud").to_pylist() if "is_fraud" in columns else [None] * len(trans)
        labelled = sum(1 for t, o in zip(trans, own, strict=True) if o is not None or t in known)
        if trans and labelled / len(trans) >= MATURED_LABEL_SHARE:
            out.append(day)
            if limit is not None and len(out) == limit:
                break
    return sorted(out)


def split_days(days: list[date]) -> dict[str, list[date]]:
    """Out-of-time: the oldest days train, then validation, the newest days test."""
    if len(days) < MIN_DAYS:
        raise NotEnoughData(f"need at least {MIN_DAYS} matured labelled days, found {len(days)}: {days}")
    n = len(days)
    n_test = max(1, round(n * TEST_SHARE))
    n_validation = max(1, round(n * VALIDATION_SHARE))
    n_train = n - n_test - n_validation
    return {
        "train": days[:n_train],
        "validation": days[n_train : n_train + n_validation],
        "test": days[n_train + n_validation :],
    }


def build_dataset(
    settings: Settings,
    window_days: int | None = None,
    end: date | None = None,
    lake: Lake | None = None,
    *,
    run_key: str | None = None,
) -> tuple[DatasetInfo, dict[str, pd.DataFrame]]:
    """Labelled features of the newest matured days, split by time, snapshotted to the lake.

    ``end``: the dataset as of that day (validated days and labels up to it), so a retrain answering a given
    day of data sees the same data whenever it runs. ``run_key`` (e.g. the Airflow run id) makes the dataset
    id deterministic: a re-run of that run finds its snapshot and reuses it instead of writing another."""

    from training_lib.modeling.features import FEATURE_COLUMNS, features_for_days
    from training_lib.privacy import card_tokens, token_key

    lake = lake or Lake(settings)
    window = window_days or settings.training_window_days
    labels = load_labels(lake, through=end)
    days = matured_days(lake, labels, end, limit=window)
    if run_key:
        dataset_id = f"{days[-1].isoformat()}-{hashlib.sha256(run_key.encode()).hexdigest()[:8]}"
        if lake.exists(f"{DATASETS}/{dataset_id}/dataset.json"):
            log.info("dataset %s of run %s exists: reused", dataset_id, run_key)
            return load_dataset(settings, dataset_id, lake)
    else:
        dataset_id = f"{days[-1].isoformat()}-{uuid.uuid4().hex[:8]}"
    splits = split_days(days)
    transactions, features = features_for_days(lake, days)
    label_map = labels.set_index("trans_num")["is_fraud"]
    label = transactions["trans_num"].map(label_map)
    if "is_fraud" in transactions.columns:  # files that carried their labels (Kaggle layout)
        label = label.fillna(transactions["is_fraud"])
    keep = label.notna().to_numpy()
    frame = features[keep].copy()
    frame[LABEL] = label[keep].astype("int8").to_numpy()
    frame["trans_num"] = transactions.loc[keep, "trans_num"].astype(str).to_numpy()
    frame["card_token"] = card_tokens(transactions.loc[keep, "cc_num"].astype(str), token_key(settings))
    frame["day"] = transactions.loc[keep, "trans_date_trans_time"].dt.date.to_numpy()
    parts = {name: frame[frame["day"].isin(set(split))].reset_index(drop=True) for name, split in splits.items()}
    for name, part in parts.items():
        if part[LABEL].sum() == 0 or (part[LABEL] == 0).all():
            raise NotEnoughData(f"the {name} split ({[str(d) for d in splits[name]]}) needs frauds and legitimate rows")
    prefix = f"{DATASETS}/{dataset_id}"
    for name, part in parts.items():
        buffer = io.BytesIO()
        part.astype({"day": "string"}).to_parquet(buffer, index=False)
        lake.put_bytes(f"{prefix}/{name}.parquet", buffer.getvalue())
    label_days = [d for d in lake.list_partitions(LABELS) if end is None or d <= end]
    info = DatasetInfo(
        dataset_id=dataset_id,
        days=[d.isoformat() for d in days],
        split_days={name: [d.isoformat() for d in split] for name, split in splits.items()},
        rows={name: len(part) for name, part in parts.items()},
        frauds={name: int(part[LABEL].sum()) for name, part in parts.items()},
        labels_through=(label_days[-1] if label_days else days[-1]).isoformat(),
        uri=lake.uri(prefix + "/"),
    )
    lake.put_json(f"{prefix}/dataset.json", {**asdict(info), "features": list(FEATURE_COLUMNS)})
    log.info("dataset %s: %s rows, %s frauds, days %s..%s", dataset_id, info.rows, info.frauds, days[0], days[-1])
    assert set(FEATURE_COLUMNS) <= set(parts["train"].columns)
    return info, parts


def load_dataset(settings: Settings, dataset_id: str, lake: Lake | None = None) -> tuple[DatasetInfo, dict]:
    import pandas as pd

    lake = lake or Lake(settings)
    prefix = f"{DATASETS}/{dataset_id}"
    meta = lake.get_json(f"{prefix}/dataset.json")
    meta.pop("features", None)
    parts = {name: pd.read_parquet(io.BytesIO(lake.get_bytes(f"{prefix}/{name}.parquet"))) for name in SPLITS}
    return DatasetInfo(**meta), parts
