"""What happens on a day, part by part, each from its own random stream: legitimate spending (sessions,
trips, big tickets) and the fraud patterns (stolen-card sprees, quiet fraud that imitates the holder, and the
scenarios' card testing and fraud ring). Each function returns the part's columns as arrays."""

from __future__ import annotations

import math
from datetime import date

import numpy as np

from training_lib.ingestion.schema import CATEGORIES
from training_lib.simulation.population import Population, day_epoch, sample_rows
from training_lib.simulation.scenario import (
    CARD_TESTING_CATEGORIES,
    FRAUD_SEASON,
    RING_CATEGORIES,
    SECONDS_PER_DAY,
    TRIP_CATEGORIES,
)

MEAN_SPREE_SIZE = 7.5  # stolen-card sprees have 3..12 transactions
MEAN_QUIET_SIZE = 3.5  # quiet fraud: 2..5 transactions
MEAN_CARD_TEST_SIZE = 20.0  # card-testing bursts have 10..30
MEAN_RING_SIZE = 4.5  # fraud-ring cards: 3..6 transactions


def legitimate(people: Population, rng: np.random.Generator, day: date, n: int) -> dict[str, np.ndarray]:
    customer = rng.choice(people.config.n_customers, size=n, p=people.customers["activity"].to_numpy())
    # shopping sessions: a share of purchases follow an earlier purchase of the same card within the hour
    follows = rng.random(n) < people.config.session_share
    leader = rng.integers(0, max(n, 1), n)
    follows &= ~follows[leader]
    customer = np.where(follows, customer[leader], customer)
    category = sample_rows(people.preferences_cdf(day), customer, rng.random(n))
    on_trip, trip_lat, trip_long = people.trips(day)
    traveling = on_trip[customer] & (rng.random(n) < 0.85)
    trip_categories = np.array([CATEGORIES.index(c) for c in TRIP_CATEGORIES])
    trip_p = np.array(list(TRIP_CATEGORIES.values()))
    category = np.where(traveling, trip_categories[rng.choice(len(trip_p), n, p=trip_p / trip_p.sum())], category)
    seconds = people.seconds(rng, day, category, customer)
    later = np.minimum(seconds[leader] + rng.integers(60, 3600, n), day_epoch(day) + SECONDS_PER_DAY - 1)
    seconds = np.where(follows, later, seconds)
    amt = people.usual_amounts(rng, customer, category)
    big = rng.random(n) < people.config.big_ticket_share
    amt = np.where(big, amt * rng.lognormal(math.log(8.0), 0.5, n), amt)
    home_lat, home_long = people.near_home(rng, customer)
    away_lat, away_long = people.near(rng, trip_lat[customer], trip_long[customer])
    return {
        "seconds": seconds,
        "customer": customer,
        "category": category,
        "merchant": people.pick_merchants(rng, category),
        "amt": np.maximum(amt, 1.0),
        "merch_lat": np.where(traveling, away_lat, home_lat),
        "merch_long": np.where(traveling, away_long, home_long),
        "is_fraud": np.zeros(n, dtype=np.int8),
        "pattern": np.zeros(n, dtype=np.int8),
    }


def _bursts(
    people: Population,
    rng: np.random.Generator,
    day: date,
    sizes: np.ndarray,
    start_hour: np.ndarray,
    duration: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer, seconds, burst) of transactions in bursts on distinct cards within the day."""
    k = len(sizes)
    cards = rng.choice(people.config.n_customers, size=min(k, people.config.n_customers), replace=False)
    cards = np.resize(cards, k)
    start = start_hour * 3600 + rng.integers(0, 3600, k)
    duration = np.minimum(duration, SECONDS_PER_DAY - 1 - start)  # a late burst ends by midnight
    burst = np.repeat(np.arange(k), sizes)
    offsets = rng.random(len(burst)) * duration[burst]
    seconds = day_epoch(day) + (start[burst] + offsets).astype(np.int64)
    return cards[burst], seconds, burst


def _count(rng: np.random.Generator, expected: float) -> int:
    """A whole number with the given expectation (stochastic rounding)."""
    return int(expected + rng.random())


def _fraud_volume(people: Population, day: date, n_total: int) -> float:
    """Expected fraud transactions (sprees and quiet fraud) on ``day``."""
    return people.config.fraud_share * n_total * math.exp(people.season(FRAUD_SEASON, day))


def _fraud(part: dict[str, np.ndarray], pattern: int) -> dict[str, np.ndarray]:
    n = len(part["seconds"])
    return {**part, "is_fraud": np.ones(n, dtype=np.int8), "pattern": np.full(n, pattern, dtype=np.int8)}


def stolen_card_sprees(people: Population, rng: np.random.Generator, day: date, n_total: int) -> dict[str, np.ndarray]:
    expected = (1 - people.config.quiet_fraud_share) * _fraud_volume(people, day, n_total) / MEAN_SPREE_SIZE
    k = _count(rng, expected)
    sizes = rng.integers(3, 13, k)
    start_hour = sample_rows(people.fraud_start_cdf[None, :], np.zeros(k, dtype=np.int64), rng.random(k))
    duration = rng.uniform(0.25, 4.0, k) * 3600
    customer, seconds, spree = _bursts(people, rng, day, sizes, np.minimum(start_hour, 23), duration)
    n = len(customer)
    category = rng.choice(len(CATEGORIES), size=n, p=people.fraud_category_p)
    amt = np.exp(people.fraud_log_median[category] + 0.6 * rng.standard_normal(n))
    far = (rng.random(k) < 0.7)[spree]
    distance = rng.uniform(2.5, 12.0, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    near_lat, near_long = people.near_home(rng, customer)
    home_lat = people.customers["lat"].to_numpy()[customer]
    home_long = people.customers["long"].to_numpy()[customer]
    lat = np.clip(np.where(far, home_lat + distance * np.sin(angle), near_lat), -89.9, 89.9)
    long = np.where(far, home_long + distance * np.cos(angle), near_long)
    long = (long + 180.0) % 360.0 - 180.0
    part = {
        "seconds": seconds,
        "customer": customer,
        "category": category,
        "merchant": people.pick_merchants(rng, category),
        "amt": np.maximum(amt, 1.0),
        "merch_lat": lat,
        "merch_long": long,
    }
    return _fraud(part, 1)


def quiet_fraud(people: Population, rng: np.random.Generator, day: date, n_total: int) -> dict[str, np.ndarray]:
    """Fraud that imitates the card holder: 2-5 purchases spread over the day, in the holder's own
    categories and hours, near home, at amounts somewhat above the holder's usual."""
    k = _count(rng, people.config.quiet_fraud_share * _fraud_volume(people, day, n_total) / MEAN_QUIET_SIZE)
    sizes = rng.integers(2, 6, k)
    customer, _, _ = _bursts(people, rng, day, sizes, np.zeros(k, dtype=np.int64), np.zeros(k))
    n = len(customer)
    category = sample_rows(people.preferences_cdf(day), customer, rng.random(n))
    lat, long = people.near_home(rng, customer)
    part = {
        "seconds": people.seconds(rng, day, category, customer),
        "customer": customer,
        "category": category,
        "merchant": people.pick_merchants(rng, category),
        "amt": np.maximum(people.usual_amounts(rng, customer, category) * rng.lognormal(math.log(2.0), 0.4, n), 1.0),
        "merch_lat": lat,
        "merch_long": long,
    }
    return _fraud(part, 3)


def _daytime_bursts(
    people: Population,
    rng: np.random.Generator,
    day: date,
    expected_bursts: float,
    sizes: tuple[int, int],
    duration: tuple[float, float, int],
    categories: dict[str, float],
) -> tuple[dict[str, np.ndarray], int]:
    """Bursts of ``sizes`` purchases (inclusive bounds) that start between 09:00 and 17:00, last
    ``duration`` (low, high, seconds per unit), near home in ``categories`` (name -> weight).

    Returns the part without amounts and its row count."""
    k = _count(rng, expected_bursts)
    burst_sizes = rng.integers(sizes[0], sizes[1] + 1, k)
    start_hour = rng.integers(9, 17, k)
    lasting = rng.uniform(duration[0], duration[1], k) * duration[2]
    customer, seconds, _ = _bursts(people, rng, day, burst_sizes, start_hour, lasting)
    n = len(customer)
    codes = np.array([CATEGORIES.index(c) for c in categories])
    weights = np.array(list(categories.values()), dtype=float)
    category = codes[rng.choice(len(codes), size=n, p=weights / weights.sum())]
    lat, long = people.near_home(rng, customer)
    part = {"seconds": seconds, "customer": customer, "category": category, "merch_lat": lat, "merch_long": long}
    part["merchant"] = people.pick_merchants(rng, category)
    return part, n


def card_testing(people: Population, rng: np.random.Generator, day: date, n_total: int) -> dict[str, np.ndarray]:
    """The new fraud pattern: bursts of 10-30 tiny online amounts within an hour, daytime, close to home."""
    expected = people.config.new_fraud_pattern_share * n_total / MEAN_CARD_TEST_SIZE
    part, n = _daytime_bursts(people, rng, day, expected, (10, 30), (10, 60, 60), CARD_TESTING_CATEGORIES)
    part["amt"] = rng.uniform(0.5, 5.0, n)
    return _fraud(part, 2)


def fraud_ring(people: Population, rng: np.random.Generator, day: date, n_total: int) -> dict[str, np.ndarray]:
    """The fraud shift: a ring using cards in everyday categories (fuel, grocery, health, kids), 3-6
    purchases over a few daytime hours, near home, at moderate amounts."""
    expected = people.config.fraud_shift_share * n_total / MEAN_RING_SIZE
    part, n = _daytime_bursts(people, rng, day, expected, (3, 6), (1.0, 5.0, 3600), RING_CATEGORIES)
    part["amt"] = rng.lognormal(math.log(110.0), 0.45, n)
    return _fraud(part, 4)
