"""Features: hand-computed per-row and per-card history values, one pipeline for training and scoring.

History features are checked by hand on a tiny card history, against a brute-force reading of their
definition, for history given apart or together, and end to end through a real S3 API (moto's server):
a day scored alone gets exactly the values it gets inside a longer run.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from functools import cache

import numpy as np
import pandas as pd
import pytest
from support import moto_settings

from training_lib.ingestion.schema import PII_COLUMNS, TRANSACTION_COLUMN_NAMES, to_validated_arrow
from training_lib.lake.layout import VALIDATED_TRANSACTIONS
from training_lib.lake.storage import Lake
from training_lib.modeling.features import (
    CATEGORICAL_FEATURES,
    FEATURE_COLUMNS,
    HISTORY_DAYS,
    HISTORY_FEATURES,
    HISTORY_INPUT_COLUMNS,
    IDENTIFYING_COLUMNS,
    NUMERIC_FEATURES,
    ROW_CATEGORICAL_FEATURES,
    ROW_FEATURE_INPUTS,
    ROW_FEATURES,
    ROW_NUMERIC_FEATURES,
    build_features,
    feature_frame,
    features_for_days,
    haversine_km,
    history_features,
    load_history,
    row_features,
    validated_frame,
)
from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulator import Simulator

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


# --------------------------------------------------------------------------- per-card history features

HOUR, DAY = 3600.0, 86_400.0
NAN = float("nan")
CARD_A, CARD_B = "4000111122223333", "30569309025904"


def card_history() -> pd.DataFrame:
    """Two cards, seven transactions (rows not in time order) with a same-second tie and exact window edges."""
    return pd.DataFrame(
        {
            "cc_num": pd.array([CARD_A, CARD_A, CARD_A, CARD_B, CARD_A, CARD_A, CARD_B], dtype="string"),
            "trans_date_trans_time": pd.to_datetime(
                [
                    "2024-01-01 10:00:00",  # 0 A
                    "2024-01-01 10:30:00",  # 1 A, same second as row 2 but trans_num t3 > t2: after row 2
                    "2024-01-01 10:30:00",  # 2 A
                    "2024-01-01 10:15:00",  # 3 B
                    "2024-01-02 11:30:00",  # 4 A, 25 h after rows 1-2
                    "2024-01-02 12:30:00",  # 5 A, exactly 1 h after row 4
                    "2024-01-08 10:15:00",  # 6 B, exactly 7 days after row 3
                ]
            ),
            "amt": [10.0, 20.0, 30.0, 100.0, 40.0, 60.0, 50.0],
            "trans_num": pd.array(["t1", "t3", "t2", "t4", "t5", "t6", "t7"], dtype="string"),
        }
    )


# Worked out by hand from the comments in card_history(): (count 1h, 24h, 7d, sum 1h, 24h, 7d, secs, amt/mean).
HAND_COMPUTED = {
    0: (0, 0, 0, 0.0, 0.0, 0.0, NAN, NAN),  # A's first
    2: (1, 1, 1, 10.0, 10.0, 10.0, 30 * 60, 30 / 10),  # after row 0 only (tie: t2 < t3)
    1: (2, 2, 2, 40.0, 40.0, 40.0, 0.0, 20 / ((10 + 30) / 2)),  # after rows 0 and 2, same second as row 2
    3: (0, 0, 0, 0.0, 0.0, 0.0, NAN, NAN),  # B's first (A's earlier rows are another card)
    4: (0, 0, 3, 0.0, 0.0, 60.0, 25 * HOUR, 40 / ((10 + 30 + 20) / 3)),  # 25 h later: outside 24 h
    5: (0, 1, 4, 0.0, 40.0, 100.0, HOUR, 60 / ((10 + 30 + 20 + 40) / 4)),  # row 4 exactly 1 h ago: not in 1 h
    6: (0, 0, 0, 0.0, 0.0, 0.0, NAN, NAN),  # row 3 exactly 7 d ago: outside every window, no previous
}


def expected_history(rows: list[int]) -> pd.DataFrame:
    return pd.DataFrame([HAND_COMPUTED[r] for r in rows], columns=list(HISTORY_FEATURES), dtype="float64")


def test_history_feature_names_and_model_columns() -> None:
    assert HISTORY_FEATURES == (
        "card_tx_count_1h",
        "card_tx_count_24h",
        "card_tx_count_7d",
        "card_amt_sum_1h",
        "card_amt_sum_24h",
        "card_amt_sum_7d",
        "card_secs_since_prev",
        "card_amt_to_mean_7d",
    )
    assert NUMERIC_FEATURES == ROW_NUMERIC_FEATURES + HISTORY_FEATURES
    assert CATEGORICAL_FEATURES == ROW_CATEGORICAL_FEATURES
    assert FEATURE_COLUMNS == NUMERIC_FEATURES + CATEGORICAL_FEATURES
    assert HISTORY_INPUT_COLUMNS == ("cc_num", "trans_date_trans_time", "amt", "trans_num")
    assert not set(FEATURE_COLUMNS) & set(IDENTIFYING_COLUMNS)
    assert HISTORY_DAYS == 7


def test_history_features_hand_computed_values() -> None:
    features = history_features(card_history())
    pd.testing.assert_frame_equal(features, expected_history(list(range(7))))


def test_history_features_do_not_depend_on_row_order_or_index() -> None:
    frame = card_history()
    shuffled = frame.iloc[[6, 2, 4, 0, 5, 3, 1]]
    shuffled.index = [60, 20, 40, 0, 50, 30, 10]
    features = history_features(shuffled)
    assert features.index.tolist() == [60, 20, 40, 0, 50, 30, 10]
    expected = expected_history([6, 2, 4, 0, 5, 3, 1])
    expected.index = features.index
    pd.testing.assert_frame_equal(features, expected)


def test_same_second_ties_follow_trans_num() -> None:
    frame = card_history()
    frame.loc[[1, 2], "trans_num"] = ["t2", "t3"]  # now row 1 comes first within the tie
    features = history_features(frame)
    assert features.loc[1, "card_tx_count_1h"] == 1.0
    assert features.loc[2, "card_tx_count_1h"] == 2.0
    assert features.loc[1, "card_amt_sum_1h"] == 10.0
    assert features.loc[2, "card_amt_sum_1h"] == 30.0
    assert features.loc[2, "card_secs_since_prev"] == 0.0


def test_history_given_apart_equals_history_concatenated() -> None:
    frame = card_history()
    later = frame["trans_date_trans_time"] >= "2024-01-02"
    target, history = frame[later], frame[~later][list(HISTORY_INPUT_COLUMNS)]

    apart = history_features(target, history)
    pd.testing.assert_frame_equal(apart, history_features(frame).loc[target.index])
    expected = expected_history([4, 5, 6])
    expected.index = target.index
    pd.testing.assert_frame_equal(apart, expected)
    # Overlapping history (rows also in target, same trans_num) is ignored, not counted twice.
    pd.testing.assert_frame_equal(history_features(target, frame), apart)
    pd.testing.assert_frame_equal(history_features(target, pd.concat([frame, frame])), apart)
    # Same trans_num as a target row, another (earlier) time, e.g. an older delivery: still that transaction.
    older_copy = frame.loc[[4]].assign(trans_date_trans_time=pd.Timestamp("2024-01-01 09:00:00"), amt=999.0)
    pd.testing.assert_frame_equal(history_features(target, pd.concat([history, older_copy])), apart)
    # Without history the same rows look new: the history is really used.
    alone = history_features(target)
    assert alone.loc[target.index[0], "card_tx_count_7d"] == 0.0
    assert apart.loc[target.index[0], "card_tx_count_7d"] == 3.0


def test_missing_card_time_or_amount() -> None:
    frame = card_history()
    frame["cc_num"] = frame["cc_num"].astype("string")
    frame.loc[3, "cc_num"] = None
    frame.loc[0, "trans_date_trans_time"] = pd.NaT
    frame.loc[2, "amt"] = np.nan
    features = history_features(frame)
    assert features.loc[[0, 3]].isna().all().all()  # no card or no time: nothing known
    # Row 2 is A's first known row now; row 1 sees row 2, whose amount is missing (adds 0, not in the mean).
    assert features.loc[1, ["card_tx_count_1h", "card_amt_sum_1h", "card_secs_since_prev"]].tolist() == [1, 0, 0]
    assert np.isnan(features.loc[1, "card_amt_to_mean_7d"])
    assert features.loc[4, "card_amt_to_mean_7d"] == pytest.approx(40 / 20)  # mean of the known amount (20)
    assert features.loc[4, "card_tx_count_7d"] == 2.0
    assert features.loc[6, "card_tx_count_7d"] == 0.0  # B's row 3 has no card any more


@cache
def simulator() -> Simulator:
    config = SimulationConfig(
        seed=7, start=date(2025, 3, 1), n_customers=300, transactions_per_day=1500, label_delay_days=7, fraud_share=0.03
    )
    return Simulator(config)


def sim_day(offset: int) -> pd.DataFrame:
    return simulator().transactions(simulator().config.start + timedelta(days=offset))


def brute_force_history(frame: pd.DataFrame) -> pd.DataFrame:
    """The definitions read literally, one row at a time (slow; small frames only)."""
    seconds = (frame["trans_date_trans_time"].astype("datetime64[s]").astype("int64")).to_numpy()
    cards, amounts, names = frame["cc_num"].to_numpy(object), frame["amt"].to_numpy(), frame["trans_num"].to_numpy()
    rows = []
    for i in range(len(frame)):
        earlier = [
            j for j in range(len(frame)) if cards[j] == cards[i] and (seconds[j], names[j]) < (seconds[i], names[i])
        ]
        values = []
        for window in (HOUR, DAY, 7 * DAY):
            values.append([j for j in earlier if seconds[j] > seconds[i] - window])
        counts = [float(len(w)) for w in values]
        sums = [float(sum(amounts[j] for j in w)) for w in values]
        week = values[2]
        previous = max((seconds[j] for j in week), default=None)
        secs = NAN if previous is None else float(seconds[i] - previous)
        ratio = amounts[i] / (sums[2] / len(week)) if week else NAN
        rows.append([*counts, *sums, secs, ratio])
    return pd.DataFrame(rows, columns=list(HISTORY_FEATURES), index=frame.index)


def test_history_features_match_the_definitions_on_simulated_cards() -> None:
    frame = pd.concat([sim_day(0), sim_day(1)], ignore_index=True)
    frame = frame[frame["cc_num"].isin(frame["cc_num"].unique()[:12])].copy()
    # Round times to 10 minutes to make same-second ties (ordered by trans_num) common.
    frame["trans_date_trans_time"] = frame["trans_date_trans_time"].dt.floor("10min")
    assert frame.duplicated(["cc_num", "trans_date_trans_time"]).sum() >= 5
    pd.testing.assert_frame_equal(history_features(frame), brute_force_history(frame), rtol=1e-12)


def test_simulated_history_apart_equals_concatenated() -> None:
    days = [sim_day(i) for i in range(3)]
    together = pd.concat(days, ignore_index=True)
    split = len(days[0]) + len(days[1])
    target, history = together.iloc[split:], together.iloc[:split]
    apart = build_features(target, history)
    pd.testing.assert_frame_equal(apart, build_features(together).loc[target.index], check_exact=True)
    pd.testing.assert_frame_equal(build_features(target, together), apart, check_exact=True)  # overlap
    assert not apart.equals(build_features(target))  # history changes values


def test_build_features_returns_exactly_the_model_columns() -> None:
    frame = sim_day(0)
    frame.index = frame.index + 1000
    features = build_features(frame)
    assert tuple(features.columns) == FEATURE_COLUMNS
    assert features.index.equals(frame.index)
    assert not set(features.columns) & set(IDENTIFYING_COLUMNS)
    for column in NUMERIC_FEATURES:
        assert features[column].dtype == np.float64, column
    for column in CATEGORICAL_FEATURES:
        assert features[column].dtype == object, column
        assert features[column].map(type).eq(str).all(), column
    pd.testing.assert_frame_equal(features[list(ROW_FEATURES)], row_features(frame))
    rendered = features.head(200).to_csv()
    for column in ("cc_num", "first", "last", "street", "trans_num"):
        for value in frame[column].head(200):
            assert value not in rendered, (column, value)


def test_fraud_sprees_have_much_higher_velocity() -> None:
    days = [sim_day(i) for i in range(4)]
    target, history = pd.concat(days[1:], ignore_index=True), days[0]
    features = build_features(target, history)
    fraud = target["is_fraud"].astype(bool).to_numpy()
    assert fraud.sum() >= 50
    for column in ("card_tx_count_1h", "card_amt_sum_24h"):
        fraud_mean, legit_mean = features.loc[fraud, column].mean(), features.loc[~fraud, column].mean()
        assert fraud_mean > 3 * legit_mean, (column, fraud_mean, legit_mean)


# --------------------------------------------------------------------------- through the lake (moto S3 server)


@pytest.fixture(scope="module")
def lake(moto_endpoint: str) -> Lake:
    lake = Lake(moto_settings(moto_endpoint, "features"))
    for offset in range(-HISTORY_DAYS, 6):  # days -7..5; the tests score days 0..5
        frame = sim_day(offset)
        if offset % 2:
            frame = frame.drop(columns=["is_fraud"])  # labels or none: both are valid partitions
        lake.publish_partition(
            VALIDATED_TRANSACTIONS, simulator().config.start + timedelta(days=offset), to_validated_arrow(frame)
        )
    return lake


def day(offset: int) -> date:
    return simulator().config.start + timedelta(days=offset)


def by_trans_num(transactions: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    return features.set_axis(transactions["trans_num"].to_numpy()).sort_index()


def test_a_day_scored_alone_equals_the_same_day_inside_a_longer_run(lake: Lake) -> None:
    run_days = [day(i) for i in range(6)]
    transactions, features = features_for_days(lake, run_days)
    assert transactions.index.equals(pd.RangeIndex(len(transactions)))
    assert features.index.equals(transactions.index)
    assert tuple(features.columns) == FEATURE_COLUMNS

    alone_tx, alone = features_for_days(lake, [day(4)])
    in_run = transactions["trans_date_trans_time"].dt.date == day(4)
    assert len(alone_tx) == in_run.sum() > 1000
    pd.testing.assert_frame_equal(
        by_trans_num(alone_tx, alone), by_trans_num(transactions[in_run], features[in_run]), check_exact=True
    )
    # Not trivially equal: the lake's history matters for that day.
    without_history = build_features(alone_tx)
    assert not by_trans_num(alone_tx, without_history).equals(by_trans_num(alone_tx, alone))
    assert (alone["card_tx_count_7d"] > without_history["card_tx_count_7d"]).mean() > 0.5

    # Days that are not consecutive get the history of each, in any order given.
    pair_tx, pair = features_for_days(lake, [day(4), day(1), day(4)])
    assert sorted(set(pair_tx["trans_date_trans_time"].dt.date)) == [day(1), day(4)]
    in_pair = pair_tx["trans_date_trans_time"].dt.date == day(4)
    pd.testing.assert_frame_equal(
        by_trans_num(pair_tx[in_pair], pair[in_pair]), by_trans_num(alone_tx, alone), check_exact=True
    )


def test_features_for_days_returns_the_canonical_transactions(lake: Lake) -> None:
    transactions, features = features_for_days(lake, [day(0)])
    expected = sim_day(0)
    assert list(transactions.columns) == list(TRANSACTION_COLUMN_NAMES)
    pd.testing.assert_frame_equal(transactions, expected)
    pd.testing.assert_frame_equal(features, build_features(expected, load_history(lake, day(0))), check_exact=True)


def test_load_history_reads_only_existing_days_and_inputs(lake: Lake) -> None:
    history = load_history(lake, day(1))
    assert list(history.columns) == list(HISTORY_INPUT_COLUMNS)
    assert sorted(set(history["trans_date_trans_time"].dt.date)) == [day(i) for i in range(-6, 1)]
    assert len(history) == sum(len(sim_day(i)) for i in range(-6, 1))
    early = load_history(lake, day(-HISTORY_DAYS + 2))  # only two of its seven days exist
    assert sorted(set(early["trans_date_trans_time"].dt.date)) == [day(-HISTORY_DAYS), day(-HISTORY_DAYS + 1)]
    nothing = load_history(lake, day(-HISTORY_DAYS))
    assert list(nothing.columns) == list(HISTORY_INPUT_COLUMNS) and nothing.empty
    transactions, features = features_for_days(lake, [day(100)])
    assert transactions.empty and features.empty and tuple(features.columns) == FEATURE_COLUMNS


def test_the_scoring_frame_gives_the_features_of_the_validated_frame() -> None:
    """feature_frame (plain dtypes, for scoring) and validated_frame (nullable dtypes) give equal features, on
    validated rows and on rows with missing values: scoring and training compute the same values."""
    import pyarrow as pa

    days = [sim_day(i) for i in range(2)]
    frame = pd.concat(days, ignore_index=True).drop(columns=["is_fraud"])
    holed = frame.copy()
    holes = holed.index[::97]
    for column in ("amt", "category", "gender", "cc_num", "trans_num", "trans_date_trans_time", "dob", "lat"):
        holed.loc[holes[: len(holes) // 2] if column in ("cc_num", "trans_num") else holes, column] = None
    holed["city_pop"] = holed["city_pop"].astype("Int64").mask(holed.index.isin(holes[1::2]))
    split = len(days[0])
    for table in (to_validated_arrow(frame), pa.Table.from_pandas(holed, preserve_index=False)):
        target, history = table.slice(split), table.slice(0, split)
        expected = build_features(
            validated_frame(target, target.column_names), validated_frame(history, history.column_names)
        )
        got = build_features(feature_frame(target), feature_frame(history))
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert got["amt"].isna().sum() > 0 and got["category"].isna().sum() > 0 and got["city_pop"].isna().sum() > 0
