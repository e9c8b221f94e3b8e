"""Drift report: synthetic canonical transactions with known shifts, read back through Evidently's summary."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd
import pytest
from support import moto_settings

from training_lib.config import Settings
from training_lib.ingestion.schema import CATEGORIES, PII_COLUMNS, TRANSACTION_COLUMN_NAMES
from training_lib.modeling.reference import (
    DRIFT_CATEGORICAL_COLUMNS,
    DRIFT_COLUMNS,
    DRIFT_NUMERIC_COLUMNS,
    build_reference,
    drift_view,
    sample_rows,
)
from training_lib.monitoring.drift import CATEGORICAL_METHOD, NUMERIC_METHOD, DriftResult, run_drift_report

FIRST_NAMES = ("Thaddeus", "Ottoline", "Ermengarde", "Leopoldine", "Casimir", "Philomena", "Evander", "Rosalind")
LAST_NAMES = ("Quisenberry", "Vanterpool", "Okonkwo", "Szczepanski", "Featherstonhaugh", "Abernathy", "Lindqvist")
STREETS = ("Perry Cove", "Riley Greens", "White Dale", "Mason Ports", "Wilson Harbor", "Kim Ranch")
JOBS = ("Psychologist", "Nature warden", "Surveyor, land", "Data scientist", "Paramedic")
# Typical amount (median, USD) per category: online shopping and travel are larger than groceries.
CATEGORY_MEDIAN_AMOUNT = dict(
    zip(CATEGORIES, (35.0, 30.0, 55.0, 45.0, 60.0, 40.0, 45.0, 40.0, 35.0, 40.0, 25.0, 60.0, 55.0, 90.0), strict=True)
)
SAMPLE_DAY = date(2020, 6, 21)


def synthetic_transactions(
    rows: int,
    seed: int,
    *,
    amount_multiplier: float = 1.0,
    category_weights: Sequence[float] | None = None,
    day: date = SAMPLE_DAY,
    cards: int = 2_000,
) -> pd.DataFrame:
    """``rows`` transactions of one day in the canonical (validated) schema, Sparkov-like distributions.

    Card holders come from one fixed population of ``cards`` (the same people every day, whatever
    ``seed``); ``seed`` draws which cards transact and everything about the transactions.
    """
    population = np.random.default_rng(20_200_621)
    card_numbers = population.integers(4_000_000_000_000_000, 4_999_999_999_999_999, cards, dtype=np.int64).astype(str)
    home_lat = population.uniform(25.0, 48.0, cards)
    home_long = population.uniform(-123.0, -70.0, cards)
    city_pop = np.round(population.lognormal(8.0, 2.0, cards)).astype(np.int64) + 20
    dob = pd.Timestamp("1930-01-01") + pd.to_timedelta(population.integers(0, 27_000, cards), unit="D")
    gender = population.choice(np.array(["F", "M"]), cards, p=[0.55, 0.45])
    first = population.choice(np.array(FIRST_NAMES), cards)
    last = population.choice(np.array(LAST_NAMES), cards)
    house_number = population.integers(1, 99_999, cards).astype(str)
    street = np.char.add(np.char.add(house_number, " "), population.choice(np.array(STREETS), cards))
    zip_code = np.char.zfill(population.integers(1_000, 99_999, cards).astype(str), 5)
    state = population.choice(np.array(["NY", "CA", "TX", "PA", "WA"]), cards)
    job = population.choice(np.array(JOBS), cards)

    rng = np.random.default_rng(seed)
    card_of_row = rng.integers(0, cards, rows)

    weights = np.full(len(CATEGORIES), 1.0) if category_weights is None else np.asarray(category_weights, float)
    category = rng.choice(np.array(CATEGORIES), rows, p=weights / weights.sum())
    median = pd.Series(category).map(CATEGORY_MEDIAN_AMOUNT).to_numpy()
    amount = np.round(median * rng.lognormal(0.0, 0.9, rows) * amount_multiplier, 2)
    # More transactions by day than at night.
    hour_weights = np.array([1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 6, 6, 5, 5, 5, 5, 5, 4, 4, 3, 2, 2], float)
    seconds = rng.choice(24, rows, p=hour_weights / hour_weights.sum()) * 3600 + rng.integers(0, 3600, rows)
    timestamps = pd.Timestamp(day) + pd.to_timedelta(np.sort(seconds), unit="s")

    def text(values: np.ndarray | list[str]) -> pd.arrays.StringArray:
        return pd.array(values, dtype="string")

    frame = pd.DataFrame(
        {
            "trans_date_trans_time": timestamps,
            "cc_num": text(card_numbers[card_of_row]),
            "merchant": text(np.char.add("fraud_Merchant ", rng.integers(0, 700, rows).astype(str))),
            "category": text(category),
            "amt": amount,
            "first": text(first[card_of_row]),
            "last": text(last[card_of_row]),
            "gender": text(gender[card_of_row]),
            "street": text(street[card_of_row]),
            "city": text(np.char.add("City ", (card_of_row % 900).astype(str))),
            "state": text(state[card_of_row]),
            "zip": text(zip_code[card_of_row]),
            "lat": home_lat[card_of_row],
            "long": home_long[card_of_row],
            "city_pop": pd.array(city_pop[card_of_row], dtype="Int64"),
            "job": text(job[card_of_row]),
            "dob": dob[card_of_row],
            "trans_num": text([f"{v:032x}" for v in rng.integers(0, 2**62, rows)]),
            "unix_time": pd.array(timestamps.astype("int64") // 10**9 - 220_000_000, dtype="Int64"),
            "merch_lat": home_lat[card_of_row] + rng.uniform(-1.0, 1.0, rows),
            "merch_long": home_long[card_of_row] + rng.uniform(-1.0, 1.0, rows),
            "is_fraud": pd.array((rng.random(rows) < 0.006).astype(np.int8), dtype="Int8"),
        }
    )
    return frame


DEFAULT_THRESHOLD = Settings().drift_threshold  # the platform default, not read from the environment


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return build_reference([synthetic_transactions(6_000, seed=1), synthetic_transactions(6_000, seed=2)])


@pytest.fixture(scope="module")
def same_distribution(reference: pd.DataFrame) -> tuple[pd.DataFrame, DriftResult]:
    current = synthetic_transactions(10_000, seed=3)
    return current, run_drift_report(current, reference, DEFAULT_THRESHOLD, day=SAMPLE_DAY)


def test_synthetic_frame_is_canonical() -> None:
    frame = synthetic_transactions(50, seed=0)
    assert list(frame.columns) == list(TRANSACTION_COLUMN_NAMES)
    assert frame["cc_num"].str.fullmatch(r"\d{16}").all()
    assert frame["category"].isin(CATEGORIES).all()


def test_drift_view_has_only_monitored_columns() -> None:
    view = drift_view(synthetic_transactions(200, seed=0))
    assert list(view.columns) == list(DRIFT_COLUMNS)
    assert set(DRIFT_COLUMNS) == set(DRIFT_NUMERIC_COLUMNS) | set(DRIFT_CATEGORICAL_COLUMNS)
    assert not set(view.columns) & set(PII_COLUMNS)
    assert view["hour"].between(0, 23).all()
    assert len(view) == 200


def test_sample_rows_is_deterministic_uniform_and_capped() -> None:
    frame = pd.DataFrame({"x": np.arange(100_000)})
    first = sample_rows(frame, 1_000, seed=7)
    assert len(first) == 1_000
    assert first["x"].is_unique
    assert first.equals(sample_rows(frame, 1_000, seed=7))
    assert not first.equals(sample_rows(frame, 1_000, seed=8))
    assert 40_000 < first["x"].mean() < 60_000  # spread over the whole frame, not the first rows
    assert sample_rows(frame, 200_000) is frame


def test_build_reference_samples_across_days() -> None:
    days = [synthetic_transactions(3_000, seed=s) for s in (10, 11)]
    reference = build_reference(days, max_rows=2_000, seed=0)
    assert len(reference) == 2_000
    assert list(reference.columns) == list(DRIFT_COLUMNS)
    assert reference.index.equals(pd.RangeIndex(2_000))
    assert build_reference(days, max_rows=2_000, seed=0).equals(reference)
    assert len(build_reference(days[0])) == 3_000  # one frame, smaller than max_rows: all rows
    # Already a drift view: kept as it is.
    assert build_reference(reference, max_rows=10_000).equals(reference)


def test_same_distribution_has_no_drift(same_distribution: tuple[pd.DataFrame, DriftResult]) -> None:
    _, result = same_distribution
    summary = result.summary
    assert summary["drifted_columns"] == []
    assert summary["share"] == 0.0
    assert summary["drift_detected"] is False
    assert summary["threshold"] == DEFAULT_THRESHOLD
    assert summary["day"] == SAMPLE_DAY.isoformat()
    assert set(summary["columns"]) == set(DRIFT_COLUMNS)
    for name, column in summary["columns"].items():
        assert column["drifted"] is False, name
        assert 0.0 <= column["score"] < column["threshold"], name
    assert {summary["columns"][c]["method"] for c in DRIFT_NUMERIC_COLUMNS} == {NUMERIC_METHOD}
    assert {summary["columns"][c]["method"] for c in DRIFT_CATEGORICAL_COLUMNS} == {CATEGORICAL_METHOD}
    assert summary["rows_current"] == summary["rows_sampled_current"] == 10_000
    assert summary["rows_reference"] == summary["rows_sampled_reference"] == 12_000
    assert summary["evidently_version"].startswith("0.7.")


def test_amount_increase_drifts_amt_only(reference: pd.DataFrame) -> None:
    current = synthetic_transactions(10_000, seed=4, amount_multiplier=1.5)
    summary = run_drift_report(current, reference, DEFAULT_THRESHOLD).summary
    assert summary["drifted_columns"] == ["amt"]
    assert summary["columns"]["amt"]["score"] >= summary["columns"]["amt"]["threshold"]
    assert summary["share"] == pytest.approx(1 / len(DRIFT_COLUMNS))
    assert summary["drift_detected"] is (summary["share"] >= DEFAULT_THRESHOLD)
    assert summary["day"] is None


def test_category_mix_shift_drifts_category_and_share_counts_columns(reference: pd.DataFrame) -> None:
    weights = np.full(len(CATEGORIES), 1.0)
    weights[CATEGORIES.index("shopping_net")] = 8.0  # online shopping boom
    weights[CATEGORIES.index("misc_net")] = 5.0
    current = synthetic_transactions(10_000, seed=5, category_weights=weights, amount_multiplier=1.5)
    summary = run_drift_report(current, reference, threshold=0.25).summary
    assert "category" in summary["drifted_columns"]
    assert "amt" in summary["drifted_columns"]
    drifted = [name for name, column in summary["columns"].items() if column["drifted"]]
    assert sorted(drifted) == sorted(summary["drifted_columns"])
    assert summary["share"] == pytest.approx(len(drifted) / len(DRIFT_COLUMNS))
    assert summary["drift_detected"] is (summary["share"] >= 0.25)


def test_threshold_decides_drift_detected(reference: pd.DataFrame) -> None:
    current = synthetic_transactions(5_000, seed=6, amount_multiplier=1.5)
    one_column = 1 / len(DRIFT_COLUMNS)
    assert run_drift_report(current, reference, threshold=one_column).summary["drift_detected"] is True
    assert run_drift_report(current, reference, threshold=one_column + 0.01).summary["drift_detected"] is False


def test_large_current_is_sampled_to_max_rows(reference: pd.DataFrame) -> None:
    current = synthetic_transactions(300_000, seed=7)
    summary = run_drift_report(current, reference, DEFAULT_THRESHOLD, max_rows=20_000).summary
    assert summary["rows_current"] == 300_000
    assert summary["rows_sampled_current"] == 20_000
    assert summary["rows_reference"] == summary["rows_sampled_reference"] == 12_000
    assert summary["drifted_columns"] == []


def test_summary_is_json_serialisable(same_distribution: tuple[pd.DataFrame, DriftResult]) -> None:
    _, result = same_distribution
    assert json.loads(json.dumps(result.summary, allow_nan=False)) == result.summary


def test_html_and_summary_contain_no_pii(same_distribution: tuple[pd.DataFrame, DriftResult]) -> None:
    current, result = same_distribution
    html = result.html.decode("utf-8")
    summary = json.dumps(result.summary)
    assert html.lstrip().startswith("<!DOCTYPE html>") and len(html) > 10_000
    # The report does carry the data it was given (in readable text), so a card number would show up.
    assert "shopping_net" in html and "distance_km" in html
    for text in (html, summary):
        # Every long digit run / 32-hex token in the output, checked against the input's card and transaction ids.
        assert not set(re.findall(r"\d{12,19}", text)) & set(current["cc_num"])
        assert not set(re.findall(r"[0-9a-f]{32}", text)) & set(current["trans_num"])
        names = {*current["first"].unique(), *current["last"].unique(), *STREETS}
        assert sorted(name for name in names if name in text) == []


def test_empty_inputs_raise_naming_the_side(reference: pd.DataFrame) -> None:
    current = synthetic_transactions(100, seed=8)
    with pytest.raises(ValueError, match="current"):
        run_drift_report(current.iloc[:0], reference, DEFAULT_THRESHOLD)
    with pytest.raises(ValueError, match="reference"):
        run_drift_report(current, reference.iloc[:0], DEFAULT_THRESHOLD)
    with pytest.raises(ValueError, match="no rows"):
        build_reference([current.iloc[:0]])


def test_entirely_null_column_is_reported_not_computed(reference: pd.DataFrame) -> None:
    current = synthetic_transactions(3_000, seed=9, amount_multiplier=1.5)
    current["city_pop"] = pd.array([None] * len(current), dtype="Int64")
    summary = run_drift_report(current, reference, DEFAULT_THRESHOLD).summary
    assert summary["columns"]["city_pop"] == {"score": None, "method": None, "threshold": None, "drifted": None}
    assert summary["columns_not_computed"] == {"city_pop": "no values in the current data"}
    assert summary["drifted_columns"] == ["amt"]
    assert summary["share"] == pytest.approx(1 / (len(DRIFT_COLUMNS) - 1))  # of the columns compared
    assert json.dumps(summary, allow_nan=False)


@pytest.fixture(scope="module")
def lake_settings(moto_endpoint: str) -> Settings:
    return moto_settings(moto_endpoint, "drift-reference-test", {"FRAUD_DRIFT_REFERENCE_DAYS": "2"})


def test_bootstrap_reference_of_a_day_is_the_same_when_the_day_is_rerun(lake_settings: Settings) -> None:
    """A backfill re-runs the first days after the reference was frozen: each day keeps its first reference."""
    from datetime import timedelta

    from training_lib.ingestion.schema import to_validated_arrow
    from training_lib.lake.layout import VALIDATED_TRANSACTIONS
    from training_lib.lake.storage import Lake
    from training_lib.monitoring.daily_drift import BOOTSTRAP_REFERENCE_KEY, bootstrap_reference

    lake = Lake(lake_settings)
    days = [SAMPLE_DAY + timedelta(days=i) for i in range(4)]

    def references() -> list[tuple[pd.DataFrame, dict] | None]:
        found = []
        for seed, day in enumerate(days):  # in order, as the daily runs go (each day validated, then compared)
            frame = synthetic_transactions(500, seed=seed, day=day)
            lake.publish_partition(VALIDATED_TRANSACTIONS, day, to_validated_arrow(frame))
            found.append(bootstrap_reference(lake_settings, lake, day))
        return found

    first = references()
    assert first[0] is None  # the first day has nothing before it
    assert [info["days"] for _, info in first[1:]] == [
        [days[0].isoformat()],
        [days[0].isoformat(), days[1].isoformat()],
        [days[0].isoformat(), days[1].isoformat()],  # frozen: the first two days
    ]
    assert lake.get_json(BOOTSTRAP_REFERENCE_KEY + ".json")["days"] == [days[0].isoformat(), days[1].isoformat()]
    frozen_etag = lake.client.head_object(Bucket=lake.bucket, Key=BOOTSTRAP_REFERENCE_KEY)["ETag"]

    again = references()
    assert again[0] is None  # not compared with the frozen reference that contains the day itself
    for (frame_first, info_first), (frame_again, info_again) in zip(first[1:], again[1:], strict=True):
        assert info_again == info_first
        pd.testing.assert_frame_equal(frame_again, frame_first, check_dtype=False)
    assert lake.client.head_object(Bucket=lake.bucket, Key=BOOTSTRAP_REFERENCE_KEY)["ETag"] == frozen_etag


def test_the_summary_is_the_same_in_every_process() -> None:
    """A re-run in another worker process (another hash seed) must write the same summary."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import json, sys; sys.path[:0] = sys.argv[1:3];"
        "from test_drift import synthetic_transactions;"
        "from training_lib.modeling.reference import build_reference;"
        "from training_lib.monitoring.drift import run_drift_report;"
        "reference = build_reference([synthetic_transactions(3000, seed=1)]);"
        "summary = run_drift_report(synthetic_transactions(3000, seed=2), reference, 0.5).summary;"
        "print(json.dumps(summary, sort_keys=True))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script, str(Path(__file__).parent), str(Path(__file__).parents[1])],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
        for seed in (1, 2)
    }
    assert len(outputs) == 1, outputs
