"""The drift view of a model's row features, and the reference sample every registered model carries.

The drift monitor compares only model-relevant columns (:data:`DRIFT_COLUMNS`, computed by
:func:`training_lib.modeling.features.row_features`), never identifying ones, so no report can hold a card
number or a name. Training logs :func:`build_reference` of its window with the model
(:data:`CHAMPION_REFERENCE_ARTIFACT`); the daily drift check (``training_lib.monitoring.daily_drift``)
compares each day with the champion's. Samples are uniform and deterministic, at most ``max_rows`` rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from training_lib.modeling.features import row_features

if TYPE_CHECKING:
    import pandas as pd

CHAMPION_REFERENCE_ARTIFACT = "drift_reference/reference.parquet"  # logged with every registered model

DRIFT_NUMERIC_COLUMNS: tuple[str, ...] = ("amt", "hour", "age_years", "distance_km", "city_pop")
DRIFT_CATEGORICAL_COLUMNS: tuple[str, ...] = ("category", "gender")
DRIFT_COLUMNS: tuple[str, ...] = DRIFT_NUMERIC_COLUMNS + DRIFT_CATEGORICAL_COLUMNS


DEFAULT_MAX_ROWS = 50_000


def _normalise_view(view: pd.DataFrame) -> pd.DataFrame:
    """Only DRIFT_COLUMNS, numeric as float64 and categorical as object (Evidently rejects nullable dtypes)."""
    import numpy as np
    import pandas as pd

    out = pd.DataFrame(index=view.index)
    for column in DRIFT_NUMERIC_COLUMNS:
        out[column] = pd.to_numeric(view[column], errors="coerce").astype("float64").replace([np.inf, -np.inf], np.nan)
    for column in DRIFT_CATEGORICAL_COLUMNS:
        out[column] = view[column].astype("object").where(view[column].notna(), np.nan)
    return out


def _is_drift_view(frame: pd.DataFrame) -> bool:
    return all(column in frame.columns for column in DRIFT_COLUMNS)


def drift_view(validated: pd.DataFrame) -> pd.DataFrame:
    """Validated transactions (canonical columns) → only the monitored columns, :data:`DRIFT_COLUMNS`."""
    return _normalise_view(row_features(validated))


def as_drift_view(frame: pd.DataFrame) -> pd.DataFrame:
    """A drift view as it is, or validated transactions turned into one (decided by the columns present)."""
    return _normalise_view(frame) if _is_drift_view(frame) else drift_view(frame)


def sample_rows(frame: pd.DataFrame, max_rows: int = DEFAULT_MAX_ROWS, seed: int = 0) -> pd.DataFrame:
    """A uniform random sample of ``max_rows`` rows (without replacement, in original order), or the frame itself.

    Deterministic: the same frame length, ``max_rows`` and ``seed`` always pick the same positions.
    """
    import numpy as np

    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    if len(frame) <= max_rows:
        return frame
    positions = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[positions]


def build_reference(
    frames_or_frame: pd.DataFrame | Iterable[pd.DataFrame],
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
) -> pd.DataFrame:
    """A reference sample (drift view, at most ``max_rows`` rows) from one or several days of validated data.

    Each input may be validated transactions or already a drift view. The sample is uniform over all
    rows of all inputs; the result has a fresh RangeIndex, ready to be stored as Parquet.
    """
    import pandas as pd

    frames = [frames_or_frame] if isinstance(frames_or_frame, pd.DataFrame) else list(frames_or_frame)
    views = [as_drift_view(frame) for frame in frames if len(frame)]
    if not views:
        raise ValueError("build_reference: no rows (every input frame is empty or none was given)")
    combined = views[0] if len(views) == 1 else pd.concat(views, ignore_index=True)
    return sample_rows(combined, max_rows, seed).reset_index(drop=True)
