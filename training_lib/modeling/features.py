"""Model features computed from canonical transactions (see :mod:`training_lib.ingestion.schema`).

One feature pipeline for training and scoring alike (no train/serve skew): :func:`build_features`
returns exactly :data:`FEATURE_COLUMNS`, the model's input columns. Two families of features:

* stateless per-row features (:func:`row_features`): each depends only on its own transaction, so
  training, batch scoring and drift monitoring compute exactly the same values;
* per-card history features (:func:`history_features`, :data:`HISTORY_FEATURES`): velocity over the
  card's (same ``cc_num``) transactions *strictly before* the current one, in
  ``(trans_date_trans_time, trans_num)`` order (same-second ties are ordered by ``trans_num``), counted
  in windows ``(t - w, t]`` of whole seconds for w = 1 h, 24 h, 7 days. Nothing looks back further than
  :data:`HISTORY_DAYS`, so a day scored with the 7 days of history before it gets exactly the values it
  gets inside any longer run (:func:`features_for_days`).

Every function returns a frame aligned on the input's index, numeric features as ``float64`` (null
where an input is null) and categorical features as ``object`` strings. Identifying columns
(``cc_num``, names, street, ``trans_num``, the date of birth itself) are never part of the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING

from training_lib.ingestion.schema import PII_COLUMNS, TRANSACTION_COLUMN_NAMES

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from training_lib.lake.storage import Lake

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

# Per-card history (velocity) features: see history_features.
HISTORY_DAYS = 7  # the longest look-back: a day needs the validated partitions of the 7 days before it
HISTORY_WINDOWS: tuple[tuple[str, int], ...] = (("1h", 3_600), ("24h", 86_400), ("7d", HISTORY_DAYS * 86_400))
HISTORY_FEATURES: tuple[str, ...] = (
    "card_tx_count_1h",
    "card_tx_count_24h",
    "card_tx_count_7d",
    "card_amt_sum_1h",
    "card_amt_sum_24h",
    "card_amt_sum_7d",
    "card_secs_since_prev",
    "card_amt_to_mean_7d",
)
HISTORY_INPUT_COLUMNS: tuple[str, ...] = ("cc_num", "trans_date_trans_time", "amt", "trans_num")
AMOUNT_RESOLUTION = 10_000  # window sums add amounts as integers of 1/10 000 USD: exact, order-independent

# The model's input columns, in order: every model trained or scored on this platform sees exactly these.
NUMERIC_FEATURES: tuple[str, ...] = ROW_NUMERIC_FEATURES + HISTORY_FEATURES
CATEGORICAL_FEATURES: tuple[str, ...] = ROW_CATEGORICAL_FEATURES
FEATURE_COLUMNS: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES


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


def _as_datetime(series: pd.Series) -> pd.Series:
    """Datetimes as they are; anything else parsed (unparseable: NaT). A datetime column is not re-parsed
    (``pd.to_datetime`` would iterate over it to decide on caching: a third of a second per million rows)."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    return pd.to_datetime(series, errors="coerce")


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
    timestamps, birth_dates = _as_datetime(frame["trans_date_trans_time"]), _as_datetime(frame["dob"])
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


# --------------------------------------------------------------------------- per-card history features


def _objects(series: pd.Series) -> np.ndarray:
    """The values as an object array (no copy for object and python-string columns; missing values as they are)."""
    import numpy as np

    return np.asarray(series.array, dtype=object)


def _history_arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cc_num as object, time as int64 ns since the epoch (NaT: the smallest int64), amount, trans_num as object)."""

    timestamps = _as_datetime(frame["trans_date_trans_time"])
    if getattr(timestamps.dt, "tz", None) is not None:
        timestamps = timestamps.dt.tz_convert("UTC").dt.tz_localize(None)
    nanos = timestamps.to_numpy(dtype="datetime64[ns]").view("int64")
    cards = _objects(frame["cc_num"])
    amounts = _as_float(frame["amt"]).to_numpy()
    trans_nums = _objects(frame["trans_num"])
    return cards, nanos, amounts, trans_nums


def _sort_order(key: np.ndarray, sub_second: np.ndarray, trans_nums: np.ndarray, first_history: int) -> np.ndarray:
    """Positions sorted by (key, sub-second, trans_num, position): a total, deterministic order.

    One fast unstable sort on ``key``; only rows tied on ``key`` (same card and second) are then ordered
    by the other fields. A row at or after ``first_history`` (a history row) that repeats the previous
    row's card, time and ``trans_num`` is a duplicate of it and left out.
    """
    import numpy as np
    import pandas as pd

    order = np.argsort(key)
    sorted_key = key[order]
    same = sorted_key[1:] == sorted_key[:-1]
    if not same.any():
        return order
    tied = np.zeros(len(order), dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    positions = np.flatnonzero(tied)  # contiguous blocks of ties, the blocks already in order
    rows = order[positions]
    names = pd.Series(trans_nums[rows], dtype=object).where(lambda s: s.notna(), None).to_numpy()
    codes, _ = pd.factorize(names, sort=True)  # a missing trans_num is -1: first
    within = np.lexsort((rows, codes, sub_second[rows], key[rows]))
    rows, codes = rows[within], codes[within]
    order[positions] = rows
    repeat = np.zeros(len(rows), dtype=bool)
    repeat[1:] = (key[rows[1:]] == key[rows[:-1]]) & (sub_second[rows[1:]] == sub_second[rows[:-1]])
    repeat[1:] &= (codes[1:] == codes[:-1]) & (codes[1:] >= 0) & (rows[1:] >= first_history)
    if repeat.any():
        keep = np.ones(len(order), dtype=bool)
        keep[positions[repeat]] = False
        order = order[keep]
    return order


def _in_target(target: pd.DataFrame, history: pd.DataFrame) -> np.ndarray:
    """Which history rows have a ``trans_num`` that is also in ``target`` (missing ones never match)."""
    import numpy as np
    import pandas as pd

    target_ids, history_ids = _objects(target["trans_num"]), _objects(history["trans_num"])
    shared = target_ids[pd.Series(target_ids).isin(history_ids).to_numpy()]  # hashes history, usually the smaller
    if not len(shared):
        return np.zeros(len(history_ids), dtype=bool)
    return (pd.Series(history_ids).isin(shared) & history["trans_num"].notna().to_numpy()).to_numpy(dtype=bool)


def history_features(target: pd.DataFrame, history: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-card history features (:data:`HISTORY_FEATURES`) of every row of ``target``, on its index.

    A row's history is the card's (same ``cc_num``) transactions strictly before it in
    ``(trans_date_trans_time, trans_num)`` order, from ``target`` itself and from ``history`` (earlier
    transactions, any columns including :data:`HISTORY_INPUT_COLUMNS`; its rows whose ``trans_num`` is also
    in ``target`` are ignored, so overlapping frames are safe, and so are repeats within ``history`` of the
    same card, time and ``trans_num``). Times count in whole seconds (floored); with t the row's time:

    * ``card_tx_count_{1h,24h,7d}``: earlier transactions with time in ``(t - w, t]`` (a same-second
      transaction with a smaller ``trans_num`` counts, one exactly w earlier does not);
    * ``card_amt_sum_{1h,24h,7d}``: their amounts (0 when none; a missing amount adds 0), summed exactly
      in units of 1/:data:`AMOUNT_RESOLUTION` USD, so a value never depends on what else was loaded;
    * ``card_secs_since_prev``: seconds since the card's previous transaction when it is in the 7-day
      window, else NaN (first known transaction: nothing looks back further than :data:`HISTORY_DAYS`);
    * ``card_amt_to_mean_7d``: ``amt`` / mean known amount of the earlier transactions in the 7-day
      window (NaN when there are none or their mean is 0).

    Rows without a card number or a time get NaN everywhere. Vectorised: one sort, then one
    ``searchsorted`` and cumulative sums per window over an int64 key ``card * BIG + seconds``.
    """
    import numpy as np
    import pandas as pd

    _require_columns(target, HISTORY_INPUT_COLUMNS, "history_features (target)")
    parts = [_history_arrays(target)]
    if history is not None and len(history):
        _require_columns(history, HISTORY_INPUT_COLUMNS, "history_features (history)")
        overlap = _in_target(target, history)
        parts.append(_history_arrays(history[~overlap] if overlap.any() else history))
    cards, nanos, amounts, trans_nums = (
        column[0] if len(column) == 1 else np.concatenate(column) for column in zip(*parts, strict=True)
    )
    card_codes, uniques = pd.factorize(cards)
    rows = np.flatnonzero((card_codes >= 0) & (nanos != np.iinfo("int64").min))  # taking part; target first
    n_target = len(target)
    out = np.full((len(HISTORY_FEATURES), n_target), np.nan)  # one row per feature: contiguous writes
    if len(rows):
        nanos = nanos[rows]
        seconds = nanos // 1_000_000_000
        sub_second = nanos - seconds * 1_000_000_000
        seconds -= seconds.min()
        longest = HISTORY_WINDOWS[-1][1]
        big = int(seconds.max()) + longest + 1  # larger than any time span plus the longest window
        if (len(uniques) + 1) * big >= 2**62:
            raise ValueError(f"history_features: {len(uniques)} cards over {big} s do not fit an int64 key")
        key = card_codes[rows].astype("int64") * big + seconds
        order = _sort_order(key, sub_second, trans_nums[rows], int(np.searchsorted(rows, n_target)))
        key = key[order]
        amount = amounts[rows][order]
        known = ~np.isnan(amount)
        units = np.where(known, np.rint(amount * AMOUNT_RESOLUTION), 0.0).astype("int64")
        cum_units = np.concatenate(([0], np.cumsum(units)))
        position = np.arange(len(key))

        values: dict[str, np.ndarray] = {}
        left = position
        for label, window in HISTORY_WINDOWS:
            # The card's first row with time > t - w (the card's own first row at most: BIG separates cards).
            left = np.searchsorted(key, key - window, side="right")
            values[f"card_tx_count_{label}"] = (position - left).astype("float64")
            values[f"card_amt_sum_{label}"] = (cum_units[position] - cum_units[left]) / AMOUNT_RESOLUTION
        # left is the 7-day window's edge now.
        has_earlier = left < position
        gap = np.full(len(key), np.nan)
        gap[1:] = key[1:] - key[:-1]  # seconds since the previous row: the same card whenever has_earlier
        values["card_secs_since_prev"] = np.where(has_earlier, gap, np.nan)
        cum_known = np.concatenate(([0], np.cumsum(known, dtype="int64")))
        known_7d = cum_known[position] - cum_known[left]
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_7d = values["card_amt_sum_7d"] / known_7d
            ratio = amount / mean_7d
        values["card_amt_to_mean_7d"] = np.where((known_7d > 0) & (mean_7d != 0), ratio, np.nan)

        sorted_rows = rows[order]
        selected = np.flatnonzero(sorted_rows < n_target)
        destination = sorted_rows[selected]
        for i, name in enumerate(HISTORY_FEATURES):
            out[i, destination] = values[name][selected]
    return pd.DataFrame(out.T, index=target.index, columns=list(HISTORY_FEATURES))


def build_features(target: pd.DataFrame, history: pd.DataFrame | None = None) -> pd.DataFrame:
    """The model's input: exactly :data:`FEATURE_COLUMNS` for every row of ``target``, on its index.

    Per-row features of ``target`` plus its per-card history features (``history``: earlier transactions of
    the same cards, see :func:`history_features`). Numeric columns are ``float64``, categorical ones ``object``
    strings; no identifying column.
    """
    import pandas as pd

    features = pd.concat([row_features(target), history_features(target, history)], axis=1)
    return features[list(FEATURE_COLUMNS)]


def validated_frame(table: pa.Table, columns: Sequence[str]) -> pd.DataFrame:
    """A validated Arrow table as a pandas frame with the dtypes of :func:`training_lib.ingestion.schema.normalise`."""
    import pandas as pd
    import pyarrow as pa

    from training_lib.ingestion.schema import transaction_arrow_schema

    if table.num_columns == 0:  # no partition at all
        schema = transaction_arrow_schema(with_label=False)
        table = schema.empty_table().select([c for c in columns if c in schema.names])
    mapping = {
        pa.string(): pd.StringDtype(),
        pa.large_string(): pd.StringDtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.int8(): pd.Int8Dtype(),
    }
    frame = _datetimes_in_ns(table.to_pandas(types_mapper=mapping.get, date_as_object=False))
    return frame[[c for c in columns if c in frame.columns]]


def _datetimes_in_ns(frame: pd.DataFrame) -> pd.DataFrame:
    """Datetime columns as ``datetime64[ns]`` (Parquet gives us or ms; features count in ns), in place."""
    import pandas as pd

    for column in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]) and frame[column].dtype != "datetime64[ns]":
            frame[column] = frame[column].astype("datetime64[ns]")
    return frame


def feature_frame(table: pa.Table) -> pd.DataFrame:
    """A validated Arrow table as the plain frame :func:`build_features` reads, for scoring: strings as ``object``,
    numbers as NumPy dtypes, datetimes as ``datetime64[ns]``, rows in the table's order.

    :func:`build_features` gives exactly the values it gives on :func:`validated_frame` (missing values
    included): only the intermediate dtypes differ, and skipping pandas' nullable string columns saves
    converting every string twice.
    """
    # ignore_metadata: a table read from Parquet written from pandas would restore pandas' string dtype
    return _datetimes_in_ns(table.to_pandas(date_as_object=False, ignore_metadata=True))


def load_history(lake: Lake, first_day: date, days: int = HISTORY_DAYS) -> pd.DataFrame:
    """:data:`HISTORY_INPUT_COLUMNS` of the validated partitions of ``[first_day - days, first_day)`` that exist."""
    return _load_days(lake, [first_day - timedelta(days=k) for k in range(days, 0, -1)], HISTORY_INPUT_COLUMNS)


def _load_days(lake: Lake, days: Sequence[date], columns: Sequence[str], *, strict: bool = False) -> pd.DataFrame:
    from training_lib.lake.layout import VALIDATED_TRANSACTIONS

    read = None if columns == TRANSACTION_COLUMN_NAMES else columns
    table = lake.read_partitions(VALIDATED_TRANSACTIONS, days, columns=read, strict=strict)
    return validated_frame(table, columns).reset_index(drop=True)


def features_for_days(lake: Lake, days: Sequence[date], *, strict: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(transactions, features) of the validated partitions of ``days``, with the history they need.

    ``days`` are read in date order (duplicates once; consecutive or not; unpublished days are skipped, or
    raise :class:`training_lib.lake.storage.PartitionNotFound` with ``strict=True``). History is the validated
    partitions of the :data:`HISTORY_DAYS` days before each of them, so a day scored alone gets exactly the
    feature values it gets inside a longer range. Transactions have every canonical column present in the
    partitions (``is_fraud`` when published with labels) and the index 0..n-1; features are
    :data:`FEATURE_COLUMNS` on the same index.
    """
    wanted = sorted(set(days))
    transactions = _load_days(lake, wanted, TRANSACTION_COLUMN_NAMES, strict=strict)
    before = {day - timedelta(days=k) for day in wanted for k in range(1, HISTORY_DAYS + 1)} - set(wanted)
    history = _load_days(lake, sorted(before), HISTORY_INPUT_COLUMNS)
    return transactions, build_features(transactions, history)
