"""The transaction simulator: determinism, schema round trip, realism, drift knobs, late labels."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training_lib.ingestion.reader import read_labels, read_transactions
from training_lib.ingestion.schema import CATEGORIES, LABEL_COLUMN_NAMES, ONLINE_CATEGORIES, TRANSACTION_COLUMN_NAMES
from training_lib.simulation.population import is_luhn_valid
from training_lib.simulation.scenario import MALFORMED_KINDS, SimulationConfig
from training_lib.simulation.simulator import Simulator

REPO = Path(__file__).resolve().parents[2]
START = date(2026, 1, 1)
SMALL = SimulationConfig(seed=11, start=START, n_customers=1_500, transactions_per_day=3_000, label_delay_days=3)
NIGHT_HOURS = (22, 23, 0, 1, 2, 3)


def day(offset: int) -> date:
    return START + timedelta(days=offset)


def without_label(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="is_fraud")


@pytest.fixture(scope="module")
def small() -> Simulator:
    return Simulator(SMALL)


@pytest.fixture(scope="module")
def realistic_days() -> pd.DataFrame:
    """Three days at the default daily volume, for the statistical checks, with each row's ``pattern``
    (0 legitimate, 1 stolen-card spree, 3 quiet fraud) and whether its customer is on a trip."""
    simulator = Simulator(replace(SMALL, n_customers=5_000, transactions_per_day=20_000))
    frames = []
    for offset in range(3):
        arrays = simulator.day_arrays(day(offset))
        on_trip = simulator.on_trip(day(offset))[arrays.customer]
        frames.append(simulator.transactions(day(offset)).assign(pattern=arrays.pattern, on_trip=on_trip))
    return pd.concat(frames, ignore_index=True)


def distance_from_home(frame: pd.DataFrame) -> pd.Series:
    return np.hypot(frame["merch_lat"] - frame["lat"], frame["merch_long"] - frame["long"])


# --------------------------------------------------------------------------- determinism


def test_same_seed_and_day_give_the_same_frame_in_any_order(small: Simulator) -> None:
    alone = Simulator(SMALL).transactions(day(3))
    for offset in range(3):
        small.transactions(day(offset))
    pd.testing.assert_frame_equal(small.transactions(day(3)), alone)
    assert small.day_csv_bytes(day(3)) == Simulator(SMALL).day_csv_bytes(day(3))
    pd.testing.assert_frame_equal(Simulator(SMALL).customers, small.customers)


def test_different_seeds_or_days_differ(small: Simulator) -> None:
    other = Simulator(replace(SMALL, seed=12))
    assert not other.customers["cc_num"].equals(small.customers["cc_num"])
    assert set(other.transactions(day(0))["trans_num"]).isdisjoint(small.transactions(day(0))["trans_num"])
    assert set(small.transactions(day(1))["trans_num"]).isdisjoint(small.transactions(day(0))["trans_num"])


# --------------------------------------------------------------------------- schema


def test_columns_and_dtypes_match_what_the_reader_produces(small: Simulator) -> None:
    frame = small.transactions(day(0))
    assert tuple(frame.columns) == TRANSACTION_COLUMN_NAMES
    read = read_transactions(small.day_csv_bytes(day(0), include_label=True)).frame
    assert frame.dtypes.to_dict() == read.dtypes.to_dict()
    times = frame["trans_date_trans_time"]
    assert times.is_monotonic_increasing
    assert (times.dt.date == day(0)).all()
    assert (frame["unix_time"] == times.astype("int64") // 10**9).all()


@pytest.mark.parametrize("kaggle_index", [True, False])
@pytest.mark.parametrize("include_label", [True, False])
def test_csv_reads_back_through_the_platform_reader_unchanged(
    small: Simulator, kaggle_index: bool, include_label: bool
) -> None:
    data = small.day_csv_bytes(day(1), include_label=include_label, kaggle_index=kaggle_index)
    assert data.startswith(b",trans_date_trans_time,") == kaggle_index
    result = read_transactions(data, name="day.csv")
    assert result.parse_errors.empty
    assert result.rejected.empty
    assert result.extra_columns == []
    expected = small.transactions(day(1))
    if include_label:
        pd.testing.assert_frame_equal(result.frame, expected)
    else:
        assert result.frame["is_fraud"].isna().all()
        pd.testing.assert_frame_equal(without_label(result.frame), without_label(expected))


def test_text_frame_is_all_strings_and_matches_the_csv(small: Simulator) -> None:
    text, kinds = small.transactions_text(day(1))
    assert list(text.columns) == list(TRANSACTION_COLUMN_NAMES)
    assert text.map(lambda value: isinstance(value, str)).all().all()
    assert kinds.isna().all()
    raw = read_transactions(small.day_csv_bytes(day(1), include_label=True, kaggle_index=False)).raw
    pd.testing.assert_frame_equal(raw.astype(object), text.astype(object), check_dtype=False)


# --------------------------------------------------------------------------- realism


def test_fraud_rate_and_volume_are_in_the_target_band(realistic_days: pd.DataFrame) -> None:
    rate = realistic_days["is_fraud"].mean()
    assert 0.004 <= rate <= 0.009, rate
    per_day = realistic_days.groupby(realistic_days["trans_date_trans_time"].dt.date).size()
    # 20 000 a day on average over the year; early January is near the holiday peak
    assert ((per_day > 17_000) & (per_day < 25_000)).all(), per_day
    assert set(realistic_days["pattern"]) == {0, 1, 3}  # no scenario switched on
    assert ((realistic_days["pattern"] > 0) == (realistic_days["is_fraud"] == 1)).all()


def night_share(frame: pd.DataFrame) -> float:
    return frame["trans_date_trans_time"].dt.hour.isin(NIGHT_HOURS).mean()


def test_sprees_are_expensive_nocturnal_far_from_home_and_online(realistic_days: pd.DataFrame) -> None:
    sprees = realistic_days[realistic_days["pattern"] == 1]
    legit = realistic_days[realistic_days["is_fraud"] == 0]
    assert sprees["amt"].mean() > 4 * legit["amt"].mean()
    assert night_share(sprees) > 0.4
    assert night_share(sprees) > 3 * night_share(legit)
    assert (distance_from_home(sprees) > 1.5).mean() > 0.5
    skewed = (*ONLINE_CATEGORIES, "shopping_pos", "misc_pos")
    assert sprees["category"].isin(skewed).mean() > 1.5 * legit["category"].isin(skewed).mean()
    assert sprees["category"].isin(ONLINE_CATEGORIES).mean() > 2 * legit["category"].isin(ONLINE_CATEGORIES).mean()


def test_fraud_and_legitimate_spending_overlap(realistic_days: pd.DataFrame) -> None:
    """Not every fraud shouts and not every odd purchase is fraud: the overlap real card data has."""
    legit = realistic_days[realistic_days["is_fraud"] == 0]
    quiet = realistic_days[realistic_days["pattern"] == 3]
    fraud = realistic_days[realistic_days["is_fraud"] == 1]
    assert 0.1 < len(quiet) / len(fraud) < 0.35  # about a fifth of fraud imitates the card holder
    assert (distance_from_home(quiet) <= np.sqrt(2) + 1e-6).all()  # near home
    assert night_share(quiet) < 2 * night_share(legit)
    assert quiet["amt"].median() < 3 * legit["amt"].median()  # only somewhat above the usual
    # legitimate night spending (shift workers), travel far from home, big-ticket purchases
    assert night_share(legit) > 0.08
    home = legit[~legit["on_trip"]]
    assert distance_from_home(home).max() <= np.sqrt(2) + 1e-6  # Sparkov: within ±1 degree of home
    away = distance_from_home(legit) > 2.0
    assert 0.003 < away.mean() < 0.05
    assert legit.loc[away, "on_trip"].all()
    assert (
        legit.loc[away, "category"].isin(["travel", "food_dining", "entertainment", "gas_transport", "misc_pos"]).all()
    )
    assert (legit["amt"] > sprees_median(realistic_days)).sum() > 0.5 * (
        fraud["amt"] > sprees_median(realistic_days)
    ).sum()


def sprees_median(frame: pd.DataFrame) -> float:
    return float(frame.loc[frame["pattern"] == 1, "amt"].median())


def test_fraud_comes_in_bursts_on_compromised_cards(realistic_days: pd.DataFrame) -> None:
    fraud = realistic_days[realistic_days["is_fraud"] == 1]
    for pattern, sizes, hours in ((1, (3, 12), 4), (3, (2, 5), 24)):
        rows = fraud[fraud["pattern"] == pattern]
        bursts = rows.groupby([rows["cc_num"], rows["trans_date_trans_time"].dt.date])["trans_date_trans_time"]
        assert bursts.size().between(*sizes).mean() > 0.95, pattern  # a card rarely has two of them a day
        assert (bursts.max() - bursts.min()).max() <= pd.Timedelta(hours=hours)
    assert fraud["cc_num"].nunique() < realistic_days["cc_num"].nunique() * 0.02


def test_seasons_move_the_volume_the_category_mix_and_the_fraud_rate() -> None:
    simulator = Simulator(replace(SMALL, n_customers=5_000, transactions_per_day=20_000))

    def month(first: date) -> pd.DataFrame:
        return pd.concat([simulator.transactions(first + timedelta(days=7 * week)) for week in range(4)])

    july, december = month(date(2026, 7, 1)), month(date(2026, 12, 1))
    assert len(december) > 1.08 * len(july)
    assert december["is_fraud"].mean() > july["is_fraud"].mean()
    share = {name: frame["category"].value_counts(normalize=True) for name, frame in (("jul", july), ("dec", december))}
    assert share["jul"]["travel"] > 1.4 * share["dec"]["travel"]
    assert share["dec"]["shopping_net"] > 1.3 * share["jul"]["shopping_net"]
    flat = Simulator(replace(SMALL, seasonality=0.0))
    assert len(flat.day_arrays(date(2026, 12, 2))) == pytest.approx(len(flat.day_arrays(date(2026, 7, 1))), rel=0.1)


def test_spending_follows_the_time_of_day(realistic_days: pd.DataFrame) -> None:
    legit = realistic_days[realistic_days["is_fraud"] == 0]
    hour = legit["trans_date_trans_time"].dt.hour
    evening = hour.between(18, 22)
    daytime = hour.between(8, 16)
    dining_evening = evening[legit["category"] == "food_dining"].mean()
    grocery_evening = evening[legit["category"] == "grocery_pos"].mean()
    assert dining_evening > grocery_evening
    assert daytime[legit["category"] == "grocery_pos"].mean() > daytime[legit["category"] == "entertainment"].mean()
    assert set(legit["category"]) == set(CATEGORIES)


def test_cards_and_customers_are_plausible(small: Simulator, realistic_days: pd.DataFrame) -> None:
    customers = small.customers
    cards = customers["cc_num"]
    assert cards.is_unique
    assert cards.str.fullmatch(r"\d{12,19}").all()
    assert all(is_luhn_valid(card) for card in cards)
    lengths = cards.str.len().value_counts(normalize=True)
    assert lengths.idxmax() == 16 and lengths[16] > 0.5 and len(lengths) >= 5
    ages = (pd.Timestamp(START) - customers["dob"]).dt.days / 365.25
    assert ages.between(18, 90).all()
    assert customers["zip"].str.fullmatch(r"\d{5}").all()
    assert small.merchants["merchant"].str.startswith("fraud_").all()
    assert small.merchants["merchant"].is_unique
    assert realistic_days["trans_num"].is_unique
    assert realistic_days["trans_num"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert not is_luhn_valid(cards.iloc[0][:-1] + str((int(cards.iloc[0][-1]) + 1) % 10))


# --------------------------------------------------------------------------- drift knobs


def test_amount_inflation_starts_on_its_day(small: Simulator) -> None:
    inflated = Simulator(replace(SMALL, amount_inflation_day=2, amount_inflation_factor=1.5))
    for offset in range(2):
        pd.testing.assert_frame_equal(inflated.transactions(day(offset)), small.transactions(day(offset)))
    for offset in (2, 3):
        ratio = inflated.transactions(day(offset))["amt"].mean() / small.transactions(day(offset))["amt"].mean()
        assert ratio == pytest.approx(1.5, rel=0.01)


def test_category_shift_moves_spending_online_from_its_day(small: Simulator) -> None:
    shifted = Simulator(replace(SMALL, category_shift_day=day(2)))

    def online_share(simulator: Simulator, offset: int) -> float:
        frame = simulator.transactions(day(offset))
        return frame.loc[frame["is_fraud"] == 0, "category"].isin(ONLINE_CATEGORIES).mean()

    pd.testing.assert_frame_equal(shifted.transactions(day(1)), small.transactions(day(1)))
    for offset in (2, 3):
        assert online_share(shifted, offset) > 1.6 * online_share(small, offset)


def _pattern_rows(simulator: Simulator, offset: int, pattern: int) -> pd.DataFrame:
    """The transactions of day ``offset`` that the simulator generated with fraud ``pattern``."""
    frame = simulator.transactions(day(offset))
    return frame[simulator.day_arrays(day(offset)).pattern == pattern]


def test_new_fraud_pattern_appears_only_from_its_day(small: Simulator) -> None:
    testing = Simulator(replace(SMALL, new_fraud_pattern_day=2, new_fraud_pattern_share=0.01))

    def card_tests(simulator: Simulator, offset: int) -> pd.DataFrame:
        return _pattern_rows(simulator, offset, 2)

    for offset in range(2):
        pd.testing.assert_frame_equal(testing.transactions(day(offset)), small.transactions(day(offset)))
        assert card_tests(testing, offset).empty
    for offset in (2, 3):
        tests = card_tests(testing, offset)
        assert len(tests) >= 10 and (tests["is_fraud"] == 1).all()
        assert (tests["amt"] < 5).all()
        assert tests["category"].isin(ONLINE_CATEGORIES).all()
        assert tests["trans_date_trans_time"].dt.hour.between(9, 17).all()
        assert (distance_from_home(tests) <= np.sqrt(2) + 1e-6).all()
        assert card_tests(small, offset).empty


def test_fraud_shift_brings_a_ring_in_everyday_categories_from_its_day(small: Simulator) -> None:
    shifted = Simulator(replace(SMALL, fraud_shift_day=2, fraud_shift_share=0.01))

    def ring(simulator: Simulator, offset: int) -> pd.DataFrame:
        return _pattern_rows(simulator, offset, 4)

    for offset in range(2):
        pd.testing.assert_frame_equal(shifted.transactions(day(offset)), small.transactions(day(offset)))
    for offset in (2, 3):
        rows = ring(shifted, offset)
        assert len(rows) >= 10 and (rows["is_fraud"] == 1).all()
        assert not rows["category"].isin(ONLINE_CATEGORIES).any()
        assert rows["category"].isin(["gas_transport", "grocery_pos", "health_fitness"]).mean() > 0.5
        assert rows["trans_date_trans_time"].dt.hour.between(9, 21).all()
        assert (distance_from_home(rows) <= np.sqrt(2) + 1e-6).all()
        assert 40 < rows["amt"].median() < 300
        assert ring(small, offset).empty


def test_quality_incident_corrupts_a_share_of_rows_on_its_day_only() -> None:
    share = 0.06
    simulator = Simulator(replace(SMALL, quality_incident_day=2, quality_incident_share=share))
    for offset in (1, 3):
        assert simulator.transactions_text(day(offset))[1].isna().all()
        result = read_transactions(simulator.day_csv_bytes(day(offset)))
        assert result.parse_errors.empty

    text, kinds = simulator.transactions_text(day(2))
    bad = kinds.notna()
    assert bad.mean() == pytest.approx(share, abs=0.002)
    assert set(kinds[bad]) == set(MALFORMED_KINDS)
    clean_text, _ = Simulator(SMALL).transactions_text(day(2))
    differs = (text != clean_text).any(axis=1)
    assert differs.equals(bad)  # every malformed row changed, every good row untouched

    result = read_transactions(simulator.day_csv_bytes(day(2)))
    assert result.rejected.empty and len(result.frame) == len(kinds)
    frame = result.frame
    clean = simulator.transactions(day(2))
    good = ~bad.to_numpy()
    pd.testing.assert_frame_equal(without_label(frame[good]), without_label(clean[good]))
    assert set(result.parse_errors["row"]) <= set(np.flatnonzero(bad))

    def rows(kind: str) -> pd.DataFrame:
        return frame[(kinds == kind).to_numpy()]

    assert (rows("negative_amount")["amt"] < 0).all()
    assert (rows("zero_amount")["amt"] == 0).all()
    assert not rows("unknown_category")["category"].isin(CATEGORIES).any()
    assert not rows("cc_num_scientific")["cc_num"].str.fullmatch(r"\d{12,19}").any()
    assert rows("cc_num_scientific")["cc_num"].str.contains("E+", regex=False).all()
    assert (rows("latitude_out_of_range")["lat"].abs() > 90).all()
    unparseable = np.flatnonzero((kinds == "unparseable_date").to_numpy())
    date_errors = result.parse_errors[result.parse_errors["column"] == "trans_date_trans_time"]
    assert set(date_errors["row"]) == set(unparseable)
    assert rows("empty_trans_num")["trans_num"].isna().all()
    wrong_day = rows("wrong_day_timestamp")["trans_date_trans_time"]
    assert wrong_day.notna().all() and (wrong_day.dt.date != day(2)).all()
    duplicated = frame["trans_num"].duplicated(keep=False)
    assert duplicated[(kinds == "duplicate_trans_num").to_numpy()].all()
    assert duplicated[good].sum() <= (kinds == "duplicate_trans_num").sum()  # only the originals of copies


# --------------------------------------------------------------------------- labels


def test_labels_confirm_the_transactions_of_delay_days_before(small: Simulator) -> None:
    delay = SMALL.label_delay_days
    for offset in range(delay):
        labels = small.labels(day(offset))
        assert labels.empty and list(labels.columns) == list(LABEL_COLUMN_NAMES)
    labels = small.labels(day(delay + 1))
    transactions = small.transactions(day(1))
    assert len(labels) == len(transactions) and labels["trans_num"].is_unique
    merged = transactions.merge(labels, on="trans_num", how="outer", suffixes=("", "_label"), indicator=True)
    assert (merged["_merge"] == "both").all()
    assert (merged["is_fraud"] == merged["is_fraud_label"]).all()
    assert (labels["confirmed_at"].dt.date == day(delay + 1)).all()
    read = read_labels(small.labels_csv_bytes(day(delay + 1)))
    assert read.parse_errors.empty and read.rejected.empty
    pd.testing.assert_frame_equal(read.frame, labels)
