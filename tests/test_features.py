"""Per-row features: hand-computed values on tiny frames, and no identifying column in the output."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training_lib.features import (
    IDENTIFYING_COLUMNS,
    ROW_CATEGORICAL_FEATURES,
    ROW_FEATURE_INPUTS,
    ROW_FEATURES,
    ROW_NUMERIC_FEATURES,
    haversine_km,
    row_features,
)
from training_lib.schema import PII_COLUMNS, TRANSACTION_COLUMN_NAMES

NEW_YORK = (40.7128, -74.0060)
LOS_ANGELES = (34.0522, -118.2437)


def tiny_transactions() -> pd.DataFrame:
    """Three canonical rows with values chosen so the features can be computed by hand."""
    return pd.DataFrame(
        {
            "trans_date_trans_time": pd.to_datetime(
                ["2020-06-15 13:45:10", "2019-01-06 00:05:00", "2020-03-01 23:59:59"]
            ),  # a Monday, a Sunday, a Sunday
            "cc_num": pd.array(["4263982640269299", "30569309025904", "6011000990139424"], dtype="string"),
            "merchant": pd.array(["fraud_Kirlin and Sons", "fraud_Sporer-Keebler", "fraud_Haley"], dtype="string"),
            "category": pd.array(["grocery_pos", "travel", None], dtype="string"),
            "amt": [0.0, 99.0, 1234.5],
            "first": pd.array(["Thaddeus", "Ottoline", "Ermengarde"], dtype="string"),
            "last": pd.array(["Quisenberry", "Vanterpool", "Okonkwo"], dtype="string"),
            "gender": pd.array(["M", "F", "F"], dtype="string"),
            "street": pd.array(["561 Perry Cove", "43039 Riley Greens", "594 White Dale"], dtype="string"),
            "city": pd.array(["Moravian Falls", "Orient", "Malad City"], dtype="string"),
            "state": pd.array(["NC", "WA", "ID"], dtype="string"),
            "zip": pd.array(["28654", "99160", "83252"], dtype="string"),
            "lat": [NEW_YORK[0], 48.8878, 42.1808],
            "long": [NEW_YORK[1], -118.2105, -112.262],
            "city_pop": pd.array([3495, 149, None], dtype="Int64"),
            "job": pd.array(["Psychologist", "Special educational needs teacher", "Nature warden"], dtype="string"),
            "dob": pd.to_datetime(["1990-06-15", "1978-06-21", "1962-01-19"]),
            "trans_num": pd.array(["0b242abb623afc578575680df30655b9", "1f76529f", "a1a22d70"], dtype="string"),
            "unix_time": pd.array([1371816865, 1371816873, 1371816893], dtype="Int64"),
            "merch_lat": [LOS_ANGELES[0], 48.8878, np.nan],
            "merch_long": [LOS_ANGELES[1], -118.2105, -112.262],
            "is_fraud": pd.array([0, 1, 0], dtype="Int8"),
        }
    )


def test_tiny_frame_has_every_canonical_column() -> None:
    assert list(tiny_transactions().columns) == list(TRANSACTION_COLUMN_NAMES)


def test_haversine_new_york_los_angeles_is_about_3936_km() -> None:
    assert haversine_km(*NEW_YORK, *LOS_ANGELES) == pytest.approx(3936, abs=5)
    assert haversine_km(*NEW_YORK, *NEW_YORK) == pytest.approx(0.0, abs=1e-9)
    # A quarter of a meridian: pole to equator is pi/2 * R.
    assert haversine_km(90.0, 0.0, 0.0, 0.0) == pytest.approx(math.pi / 2 * 6371.0088, rel=1e-9)


def test_row_features_hand_computed_values() -> None:
    features = row_features(tiny_transactions())

    assert list(features.columns) == list(ROW_FEATURES)
    assert features["hour"].tolist() == [13.0, 0.0, 23.0]
    assert features["weekday"].tolist() == [0.0, 6.0, 6.0]  # Monday = 0, Sunday = 6
    assert features["amt"].tolist() == [0.0, 99.0, 1234.5]
    assert features["log_amt"].tolist() == pytest.approx([0.0, math.log(100.0), math.log1p(1234.5)])
    # 1990-06-15 → 2020-06-15 13:45:10 is 30 years (8 leap days) plus 13h45m10s.
    expected_age = (30 * 365 + 8 + (13 * 3600 + 45 * 60 + 10) / 86_400) / 365.2425
    assert features["age_years"].iloc[0] == pytest.approx(expected_age, rel=1e-12)
    assert 40.5 < features["age_years"].iloc[1] < 40.6  # 40 years and 199 days
    assert features["distance_km"].iloc[0] == pytest.approx(3936, abs=5)
    assert features["distance_km"].iloc[1] == pytest.approx(0.0, abs=1e-9)
    assert features["city_pop"].iloc[:2].tolist() == [3495.0, 149.0]
    assert features["category"].iloc[:2].tolist() == ["grocery_pos", "travel"]
    assert features["gender"].tolist() == ["M", "F", "F"]


def test_missing_inputs_give_null_features_not_errors() -> None:
    features = row_features(tiny_transactions())
    assert np.isnan(features["distance_km"].iloc[2])  # merch_lat missing
    assert np.isnan(features["city_pop"].iloc[2])
    assert pd.isna(features["category"].iloc[2])


def test_feature_dtypes_are_plain() -> None:
    features = row_features(tiny_transactions())
    for column in ROW_NUMERIC_FEATURES:
        assert features[column].dtype == np.float64, column
    for column in ROW_CATEGORICAL_FEATURES:
        assert features[column].dtype == object, column


def test_no_identifying_column_or_value_in_the_output() -> None:
    frame = tiny_transactions()
    features = row_features(frame)

    assert not set(features.columns) & set(IDENTIFYING_COLUMNS)
    assert {"cc_num", "first", "last", "street", "trans_num", "dob"} <= set(IDENTIFYING_COLUMNS)
    assert set(PII_COLUMNS) <= set(IDENTIFYING_COLUMNS)
    rendered = features.to_csv()
    for column in ("cc_num", "first", "last", "street", "trans_num"):
        for value in frame[column]:
            assert value not in rendered, (column, value)


def test_index_is_preserved() -> None:
    frame = tiny_transactions()
    frame.index = [10, 20, 30]
    assert row_features(frame).index.tolist() == [10, 20, 30]


def test_missing_input_column_is_named() -> None:
    frame = tiny_transactions().drop(columns=["merch_lat"])
    with pytest.raises(ValueError, match="merch_lat"):
        row_features(frame)
    assert "merch_lat" in ROW_FEATURE_INPUTS
