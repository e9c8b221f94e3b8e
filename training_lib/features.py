"""Model features computed from canonical transactions (see :mod:`training_lib.schema`).

Two families of features live here:

* stateless per-row features (:func:`row_features`): each depends only on its own transaction, so
  training, batch scoring and drift monitoring compute exactly the same values;
* per-card history features (a later issue) that look back over a card's earlier transactions; they
  will be added next to these, under their own name constants, and joined on the frame's index.

Every function returns a frame aligned on the input's index, numeric features as ``float64`` (null
where an input is null) and categorical features as ``object`` strings. Identifying columns
(``cc_num``, names, street, ``trans_num``, the date of birth itself) are never part of the output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from training_lib.schema import PII_COLUMNS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
DAYS_PER_YEAR = 365.2425  # Gregorian calendar average

ROW_NUMERIC_FEATURES: tuple[str, ...] = (
    "amt",
    "log_amt",
    "hour",
    "weekday",
    "age_years",
    "distance_km",
    "city_pop",
)
ROW_CATEGORICAL_FEATURES: tuple[str, ...] = ("category", "gender")
ROW_FEATURES: tuple[str, ...] = ROW_NUMERIC_FEATURES + ROW_CATEGORICAL_FEATURES

# Canonical columns the per-row features are computed from.
ROW_FEATURE_INPUTS: tuple[str, ...] = (
    "trans_date_trans_time",
    "amt",
    "category",
    "gender",
    "lat",
    "long",
    "merch_lat",
    "merch_long",
    "city_pop",
    "dob",
)

# Columns that identify a person or a transaction: never a feature, never in a feature frame.
IDENTIFYING_COLUMNS: tuple[str, ...] = (*PII_COLUMNS, "trans_num")


def haversine_km(
    lat1: np.ndarray | pd.Series | float,
    lon1: np.ndarray | pd.Series | float,
    lat2: np.ndarray | pd.Series | float,
    lon2: np.ndarray | pd.Series | float,
) -> np.ndarray:
    """Great-circle distance in km between points given in degrees (vectorised, NaN in → NaN out)."""
    import numpy as np

    phi1, phi2 = np.radians(np.asarray(lat1, dtype="float64")), np.radians(np.asarray(lat2, dtype="float64"))
    d_phi = phi2 - phi1
    d_lambda = np.radians(np.asarray(lon2, dtype="float64")) - np.radians(np.asarray(lon1, dtype="float64"))
    a = np.sin(d_phi / 2.0) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(d_lambda / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} needs column(s) {missing}; the frame has {list(frame.columns)[:30]}")


def _as_float(series: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_numeric(series, errors="coerce").astype("float64")


def _as_text(series: pd.Series) -> pd.Series:
    """Strings as ``object`` with NaN for missing values (nullable ``string``/``Int64`` dtypes upset some libraries)."""
    import numpy as np

    return series.astype("object").where(series.notna(), np.nan)


def row_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Stateless per-row features (:data:`ROW_FEATURES`, in that order) of canonical transactions.

    * ``amt``, ``log_amt`` (``log1p(amt)``), ``city_pop``: numeric as they are;
    * ``hour`` (0-23) and ``weekday`` (0 Monday - 6 Sunday) of ``trans_date_trans_time``;
    * ``age_years``: card holder's age at the transaction, in (fractional) years, from ``dob``;
    * ``distance_km``: haversine distance between the holder's home (lat, long) and the merchant;
    * ``category``, ``gender``: categorical strings.
    """
    import numpy as np
    import pandas as pd

    _require_columns(frame, ROW_FEATURE_INPUTS, "row_features")
    timestamps = pd.to_datetime(frame["trans_date_trans_time"], errors="coerce")
    birth_dates = pd.to_datetime(frame["dob"], errors="coerce")
    amount = _as_float(frame["amt"])

    features = pd.DataFrame(index=frame.index)
    features["amt"] = amount
    features["log_amt"] = np.log1p(amount.where(amount > -1.0))
    features["hour"] = timestamps.dt.hour.astype("float64")
    features["weekday"] = timestamps.dt.weekday.astype("float64")
    features["age_years"] = (timestamps - birth_dates).dt.total_seconds() / (86_400.0 * DAYS_PER_YEAR)
    features["distance_km"] = haversine_km(
        _as_float(frame["lat"]), _as_float(frame["long"]), _as_float(frame["merch_lat"]), _as_float(frame["merch_long"])
    )
    features["city_pop"] = _as_float(frame["city_pop"])
    features["category"] = _as_text(frame["category"])
    features["gender"] = _as_text(frame["gender"])
    return features[list(ROW_FEATURES)]
