"""The simulated world of one seed: customers (home, card, activity, category preferences, night shifts,
trip chances) and merchants, and what they do on a given day in general: which categories, at which hours,
where (home or on a trip), at what usual amounts. Depends on the seed alone."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from training_lib.config import Settings, load_settings
from training_lib.ingestion.schema import CATEGORIES
from training_lib.simulation.scenario import (
    CARD_FORMATS,
    CATEGORY_PROFILES,
    CATEGORY_SEASONS,
    FRAUD_START_HOURS,
    HOUR_SHAPES,
    SECONDS_PER_DAY,
    TRIP_BLOCK_DAYS,
    UNIX_EPOCH_ORDINAL,
    SimulationConfig,
)

# --------------------------------------------------------------------------- helpers


def luhn_check_digits(body: np.ndarray) -> np.ndarray:
    """Luhn check digit of every row of ``body`` (an integer matrix of digits, most significant first)."""
    digits = body[:, ::-1].astype(np.int64)
    doubled = digits[:, 0::2] * 2
    digits[:, 0::2] = np.where(doubled > 9, doubled - 9, doubled)
    return (10 - digits.sum(axis=1) % 10) % 10


def is_luhn_valid(number: str) -> bool:
    """True when ``number`` is all digits and passes the Luhn check."""
    if not number.isdigit():
        return False
    body = np.array([[int(c) for c in number[:-1]]], dtype=np.int64)
    return int(luhn_check_digits(body)[0]) == int(number[-1])


def card_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct Luhn-valid card numbers with Sparkov's mix of lengths and issuer prefixes."""
    shares = np.array([share for _, _, share in CARD_FORMATS])
    out = np.empty(n, dtype=object)
    todo = np.arange(n)
    while len(todo):
        formats = rng.choice(len(CARD_FORMATS), size=len(todo), p=shares / shares.sum())
        for f, (length, prefixes, _) in enumerate(CARD_FORMATS):
            rows = todo[formats == f]
            if not len(rows):
                continue
            body = rng.integers(0, 10, size=(len(rows), length - 1), dtype=np.int64)
            chosen = rng.integers(0, len(prefixes), size=len(rows))
            for p, prefix in enumerate(prefixes):
                body[chosen == p, : len(prefix)] = [int(c) for c in prefix]
            digits = np.concatenate([body, luhn_check_digits(body)[:, None]], axis=1)
            text = (digits + ord("0")).astype(np.uint8).view(f"S{length}").ravel()
            out[rows] = text.astype(str)
        todo = np.flatnonzero(pd.Series(out).duplicated().to_numpy())
    return out


def cumulative(weights: np.ndarray) -> np.ndarray:
    """Row-wise cumulative distribution of non-negative weights, the last column exactly 1."""
    cumulative = np.cumsum(weights / weights.sum(axis=-1, keepdims=True), axis=-1)
    cumulative[..., -1] = 1.0
    return cumulative


def sample_rows(cumulative: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """For each i, the column drawn from the distribution ``cumulative[rows[i]]`` with uniform ``u[i]``."""
    width = cumulative.shape[1]
    shifted = (cumulative + np.arange(len(cumulative))[:, None]).ravel()
    return np.searchsorted(shifted, rows + u, side="right") - rows * width


def day_epoch(day: date) -> int:
    return (day.toordinal() - UNIX_EPOCH_ORDINAL) * SECONDS_PER_DAY


@dataclass(frozen=True)
class ReferenceData:
    """Static lists the customers and merchants are drawn from (``include/simulator``)."""

    first_male: np.ndarray
    first_female: np.ndarray
    last: np.ndarray
    street_names: np.ndarray
    street_suffixes: np.ndarray
    jobs: np.ndarray
    merchant_forms: tuple[str, ...]
    cities: pd.DataFrame  # city, state, zip, lat, long, city_pop

    @classmethod
    def load(cls, folder: Path) -> ReferenceData:
        names = json.loads((folder / "names.json").read_text())
        cities = pd.read_csv(folder / "cities.csv", dtype={"zip": str})
        lists = {k: np.array(names[k], dtype=object) for k in ("first_male", "first_female", "last", "jobs")}
        return cls(
            street_names=np.array(names["street_names"], dtype=object),
            street_suffixes=np.array(names["street_suffixes"], dtype=object),
            merchant_forms=tuple(names["merchant_forms"]),
            cities=cities,
            **lists,
        )


class Population:
    """Customers and merchants of one :class:`SimulationConfig`, and their habits day by day."""

    def __init__(self, config: SimulationConfig, settings: Settings | None = None) -> None:
        self.config = config
        settings = settings or load_settings()
        self.reference = ReferenceData.load(settings.include_folder / "simulator")
        self.profiles = [CATEGORY_PROFILES[c] for c in CATEGORIES]
        self.log_median = np.log([p.median_amount for p in self.profiles])
        self.sigma = np.array([p.sigma for p in self.profiles])
        self.hours_cdf = cumulative(np.array([HOUR_SHAPES[p.hours] for p in self.profiles]))
        self.fraud_category_p = np.array([p.fraud_weight for p in self.profiles])
        self.fraud_category_p /= self.fraud_category_p.sum()
        self.fraud_log_median = np.log([p.fraud_median_amount for p in self.profiles])
        self.fraud_start_cdf = cumulative(np.array(FRAUD_START_HOURS, dtype=float))
        self._preference_cache: dict[date, np.ndarray] = {}
        self._trip_cache: dict[int, tuple[np.ndarray, ...]] = {}
        static = np.random.SeedSequence([self.config.seed, 0]).spawn(2)
        self.customers, self.category_preferences = self._make_customers(np.random.default_rng(static[0]))
        self.merchants = self._make_merchants(np.random.default_rng(static[1]))

    # ----------------------------------------------------------------- customers and merchants

    def _make_customers(self, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
        ref, n = self.reference, self.config.n_customers
        female = rng.random(n) < 0.5
        first = np.where(
            female,
            ref.first_female[rng.integers(0, len(ref.first_female), n)],
            ref.first_male[rng.integers(0, len(ref.first_male), n)],
        )
        house = rng.integers(1, 99_999, n).astype(str).astype(object)
        unit_kind = rng.choice(np.array(["", " Apt. ", " Suite "], dtype=object), size=n, p=[0.7, 0.15, 0.15])
        unit = np.where(unit_kind == "", "", unit_kind + rng.integers(100, 999, n).astype(str).astype(object))
        street = (
            house
            + " "
            + ref.street_names[rng.integers(0, len(ref.street_names), n)]
            + " "
            + ref.street_suffixes[rng.integers(0, len(ref.street_suffixes), n)]
            + unit
        )
        cities = ref.cities
        city_weight = cities["city_pop"].to_numpy(dtype=float) ** 0.35
        city = rng.choice(len(cities), size=n, p=city_weight / city_weight.sum())
        age_days = np.round((18 + 72 * rng.beta(2.2, 3.0, n)) * 365.25).astype("timedelta64[D]")
        dob = np.datetime64(self.config.start, "D") - age_days
        base_share = np.array([p.share for p in self.profiles])
        customers = pd.DataFrame(
            {
                "cc_num": card_numbers(rng, n),
                "first": first,
                "last": ref.last[rng.integers(0, len(ref.last), n)],
                "gender": np.where(female, "F", "M").astype(object),
                "street": street,
                "city": cities["city"].to_numpy(dtype=object)[city],
                "state": cities["state"].to_numpy(dtype=object)[city],
                "zip": cities["zip"].to_numpy(dtype=object)[city],
                "lat": np.round(cities["lat"].to_numpy()[city] + rng.normal(0, 0.03, n), 4),
                "long": np.round(cities["long"].to_numpy()[city] + rng.normal(0, 0.03, n), 4),
                "city_pop": cities["city_pop"].to_numpy(dtype=np.int64)[city],
                "job": ref.jobs[rng.integers(0, len(ref.jobs), n)],
                "dob": dob.astype("datetime64[ns]"),
                "activity": rng.lognormal(0.0, 0.7, n),
                "amount_scale": rng.lognormal(0.0, 0.35, n),
            }
        )
        customers["activity"] /= customers["activity"].sum()
        preferences = rng.dirichlet(base_share * 25, size=n)
        customers["night_shift"] = rng.random(n) < self.config.night_shift_share
        customers["trip_chance"] = np.minimum(self.config.trip_rate * rng.lognormal(-0.3, 0.8, n), 1.0)
        return customers, preferences

    def _make_merchants(self, rng: np.random.Generator) -> pd.DataFrame:
        ref, per_category = self.reference, self.config.merchants_per_category
        names: list[str] = []
        seen: set[str] = set()
        while len(names) < per_category * len(CATEGORIES):
            form = ref.merchant_forms[rng.integers(0, len(ref.merchant_forms))]
            a, b, c = ref.last[rng.choice(len(ref.last), size=3, replace=False)]
            name = "fraud_" + form.format(a=a, b=b, c=c)
            if name not in seen:
                seen.add(name)
                names.append(name)
        popularity = rng.lognormal(0.0, 0.8, size=(len(CATEGORIES), per_category))
        popularity /= popularity.sum(axis=1, keepdims=True)
        return pd.DataFrame(
            {
                "merchant": names,
                "category": np.repeat(np.array(CATEGORIES, dtype=object), per_category),
                "popularity": popularity.ravel(),
            }
        )

    def season(self, cycle: tuple[float, int], day: date) -> float:
        """Log-factor of a yearly cycle (amplitude, peak day of the year) on ``day``."""
        amplitude, peak = cycle
        phase = 2 * math.pi * (day.timetuple().tm_yday - peak) / 365.25
        return self.config.seasonality * amplitude * math.cos(phase)

    def preferences_cdf(self, day: date) -> np.ndarray:
        """Each customer's category distribution on ``day``: preferences, weekend, season and shift factors."""
        if day not in self._preference_cache:
            if len(self._preference_cache) > 8:
                self._preference_cache.clear()
            factors = np.exp([self.season(CATEGORY_SEASONS[c], day) for c in CATEGORIES])
            if day.weekday() >= 5:
                factors *= np.array([p.weekend for p in self.profiles])
            if self.config.active_from(self.config.category_shift_day, day):
                shift = dict(self.config.category_shift_factors)
                factors *= np.array([shift.get(c, 1.0) for c in CATEGORIES])
            self._preference_cache[day] = cumulative(self.category_preferences * factors)
        return self._preference_cache[day]

    def trips(self, day: date) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(on a trip, destination lat, destination long) per customer on ``day``.

        Trips are drawn per block of TRIP_BLOCK_DAYS days from (seed, block) alone: at most one starts per
        customer and block, 2-7 days long, 3-15 degrees from home; a trip that starts late in a block goes on
        into the next one, so the share of customers away does not depend on the day of the block."""
        block, offset = divmod(day.toordinal(), TRIP_BLOCK_DAYS)
        away = np.zeros(self.config.n_customers, dtype=bool)
        lat = np.zeros(self.config.n_customers)
        long = np.zeros(self.config.n_customers)
        for start_block, day_in_block in ((block - 1, offset + TRIP_BLOCK_DAYS), (block, offset)):
            travels, first, length, trip_lat, trip_long = self._block_trips(start_block)
            on = travels & (first <= day_in_block) & (day_in_block < first + length)
            away |= on
            lat, long = np.where(on, trip_lat, lat), np.where(on, trip_long, long)
        return away, lat, long

    def _block_trips(self, block: int) -> tuple[np.ndarray, ...]:
        """(travels, first day, length, destination lat, long) of the trips that start in ``block``."""
        if block not in self._trip_cache:
            if len(self._trip_cache) > 4:
                self._trip_cache.clear()
            n = self.config.n_customers
            rng = np.random.default_rng(np.random.SeedSequence([self.config.seed, 4, block]))
            travels = rng.random(n) < self.customers["trip_chance"].to_numpy()
            first = rng.integers(0, TRIP_BLOCK_DAYS, n)
            length = rng.integers(2, 8, n)
            distance, angle = rng.uniform(3.0, 15.0, n), rng.uniform(0, 2 * np.pi, n)
            lat = np.clip(self.customers["lat"].to_numpy() + distance * np.sin(angle), -89.0, 89.0)
            long = (self.customers["long"].to_numpy() + distance * np.cos(angle) + 180.0) % 360.0 - 180.0
            self._trip_cache[block] = (travels, first, length, lat, long)
        return self._trip_cache[block]

    def on_trip(self, day: date) -> np.ndarray:
        """Per customer (rows of :attr:`customers`): whether they are away on a trip on ``day``."""
        return self.trips(day)[0].copy()

    def pick_merchants(self, rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
        per_category = self.config.merchants_per_category
        popularity_cdf = cumulative(self.merchants["popularity"].to_numpy().reshape(len(CATEGORIES), per_category))
        local = sample_rows(popularity_cdf, category, rng.random(len(category)))
        return category * per_category + np.minimum(local, per_category - 1)

    def near(
        self, rng: np.random.Generator, lat: np.ndarray, long: np.ndarray, spread: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Merchant coordinates within ±``spread`` degrees of (lat, long)."""
        n = len(lat)
        return lat + rng.uniform(-spread, spread, n), long + rng.uniform(-spread, spread, n)

    def near_home(self, rng: np.random.Generator, customer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Merchant coordinates within ±1 degree of the customer's home, as Sparkov does."""
        return self.near(rng, self.customers["lat"].to_numpy()[customer], self.customers["long"].to_numpy()[customer])

    def usual_amounts(self, rng: np.random.Generator, customer: np.ndarray, category: np.ndarray) -> np.ndarray:
        """Amounts a customer usually spends in a category (lognormal around the category's median)."""
        scale = self.customers["amount_scale"].to_numpy()[customer]
        return np.exp(self.log_median[category] + self.sigma[category] * rng.standard_normal(len(customer))) * scale

    def seconds(self, rng: np.random.Generator, day: date, category: np.ndarray, customer: np.ndarray) -> np.ndarray:
        """Times on ``day`` following each category's hours; shift workers' hours move to the evening and night."""
        hour = np.minimum(sample_rows(self.hours_cdf, category, rng.random(len(category))), 23)
        hour = np.where(self.customers["night_shift"].to_numpy()[customer], (hour + 8) % 24, hour)
        return day_epoch(day) + hour * 3600 + rng.integers(0, 3600, len(category))
