"""What to simulate: :class:`SimulationConfig` (size, shares, drift scenarios and the days they start) and the
world's fixed shape (category profiles, hours of the day, seasons, trip and fraud categories, card formats)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from training_lib.config import load_settings
from training_lib.ingestion.schema import CATEGORIES, ONLINE_CATEGORIES

DayRef = date | int  # a calendar day, or an offset in days from SimulationConfig.start

SECONDS_PER_DAY = 86_400
UNIX_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
MALFORMED_KINDS: tuple[str, ...] = (
    "negative_amount",
    "zero_amount",
    "unknown_category",
    "cc_num_scientific",
    "latitude_out_of_range",
    "unparseable_date",
    "empty_trans_num",
    "wrong_day_timestamp",
    "duplicate_trans_num",
)
UNKNOWN_CATEGORIES = ("electronics", "crypto_exchange", "GROCERY POS", "n/a")

# Hour-of-day shapes (relative weights for hours 0..23) of legitimate spending.
HOUR_SHAPES: dict[str, tuple[float, ...]] = {
    name: tuple(float(w) for w in weights.split())
    for name, weights in {
        "daytime": ".05 .03 .02 .02 .03 .1 .3 .6 .9 1 1 1 1.1 1.1 1 1 1.1 1.2 1.2 1 .8 .5 .3 .12",
        "evening": ".15 .08 .04 .03 .03 .05 .15 .3 .4 .4 .5 .8 1 .8 .5 .5 .6 .9 1.2 1.4 1.4 1.1 .7 .35",
        "commute": ".1 .05 .04 .05 .1 .4 .9 1.3 1.2 .8 .7 .7 .8 .7 .7 .9 1.2 1.3 1.1 .8 .6 .4 .25 .15",
        "online": ".35 .25 .2 .15 .15 .2 .35 .55 .75 .9 1 1 1 1 1 1 1 1 1.05 1.15 1.2 1.15 .9 .6",
        "travel": ".2 .15 .1 .1 .2 .5 .9 1 1 .9 .9 .9 .9 .9 .9 .9 1 1 .9 .8 .7 .6 .4 .3",
    }.items()
}
# When stolen-card sprees start: mostly late at night, but a third in the daytime.
FRAUD_START_HOURS = (10, 9, 8, 6, 3, 1.5, 1.5, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2.5, 3, 4, 8, 10)
DAY_OF_WEEK_VOLUME = (0.96, 0.95, 0.97, 0.99, 1.05, 1.07, 1.01)  # Monday .. Sunday
# Seasonality: (amplitude, day of the year of the peak) of a yearly cycle, as log-factors.
VOLUME_SEASON = (0.08, 350)  # more spending in December
FRAUD_SEASON = (0.15, 345)  # and more fraud with it
CATEGORY_SEASONS: dict[str, tuple[float, int]] = {
    "entertainment": (0.15, 355),
    "food_dining": (0.10, 200),
    "gas_transport": (0.20, 190),
    "grocery_net": (0.10, 20),
    "grocery_pos": (0.05, 330),
    "health_fitness": (0.25, 15),  # new-year resolutions
    "home": (0.15, 120),
    "kids_pets": (0.15, 240),  # back to school
    "misc_net": (0.10, 340),
    "misc_pos": (0.05, 180),
    "personal_care": (0.05, 100),
    "shopping_net": (0.35, 340),  # holiday shopping
    "shopping_pos": (0.30, 350),
    "travel": (0.45, 200),  # summer holidays
}
# While on a trip, a customer spends on these categories (relative weights) instead of the usual mix.
TRIP_CATEGORIES = {"travel": 3.0, "food_dining": 3.0, "entertainment": 1.5, "gas_transport": 2.0, "misc_pos": 1.0}
TRIP_BLOCK_DAYS = 14  # trips are drawn per block of days: at most one trip per customer and block
# A fraud ring in everyday categories (the fraud-shift scenario): relative weights.
CARD_TESTING_CATEGORIES = {"misc_net": 0.5, "shopping_net": 0.3, "grocery_net": 0.2}
RING_CATEGORIES = {
    "gas_transport": 3.0,
    "grocery_pos": 2.0,
    "health_fitness": 2.0,
    "personal_care": 1.5,
    "kids_pets": 1.5,
    "food_dining": 1.0,
}


@dataclass(frozen=True)
class CategoryProfile:
    """How one merchant category is used: by legitimate customers and by fraudsters."""

    share: float  # share of legitimate transactions (Sparkov's frequencies)
    median_amount: float  # legitimate amounts: lognormal with this median ...
    sigma: float  # ... and this log-scale spread
    hours: str  # key of HOUR_SHAPES
    weekend: float  # weight multiplier on Saturdays and Sundays
    fraud_weight: float  # relative weight among stolen-card spree transactions
    fraud_median_amount: float


CATEGORY_PROFILES: dict[str, CategoryProfile] = {
    "entertainment": CategoryProfile(0.073, 35, 0.8, "evening", 1.3, 0.04, 480),
    "food_dining": CategoryProfile(0.071, 25, 0.6, "evening", 1.2, 0.03, 110),
    "gas_transport": CategoryProfile(0.102, 55, 0.5, "commute", 0.85, 0.06, 15),
    "grocery_net": CategoryProfile(0.035, 45, 0.5, "online", 1.0, 0.04, 15),
    "grocery_pos": CategoryProfile(0.095, 60, 0.6, "daytime", 1.1, 0.17, 310),
    "health_fitness": CategoryProfile(0.066, 30, 0.7, "daytime", 0.9, 0.02, 20),
    "home": CategoryProfile(0.095, 35, 0.9, "daytime", 1.1, 0.03, 260),
    "kids_pets": CategoryProfile(0.087, 30, 0.8, "daytime", 1.1, 0.04, 20),
    "misc_net": CategoryProfile(0.049, 15, 1.1, "online", 1.0, 0.12, 760),
    "misc_pos": CategoryProfile(0.061, 20, 1.0, "daytime", 1.0, 0.05, 250),
    "personal_care": CategoryProfile(0.070, 20, 0.9, "daytime", 1.0, 0.03, 25),
    "shopping_net": CategoryProfile(0.075, 50, 1.1, "online", 1.0, 0.23, 860),
    "shopping_pos": CategoryProfile(0.090, 40, 1.0, "daytime", 1.2, 0.13, 780),
    "travel": CategoryProfile(0.031, 60, 1.4, "travel", 1.2, 0.01, 12),
}

# (length, issuer prefixes, share of cards): Sparkov mixes 12-19 digit numbers, mostly 16.
CARD_FORMATS: tuple[tuple[int, tuple[str, ...], float], ...] = (
    (16, ("4", "51", "52", "53", "54", "55", "2221", "2720", "6011", "65"), 0.62),
    (15, ("34", "37"), 0.08),
    (19, ("4",), 0.09),
    (14, ("30", "36", "38"), 0.07),
    (13, ("4",), 0.07),
    (12, ("6304", "5018"), 0.07),
)


# --------------------------------------------------------------------------- configuration


def _default_label_delay_days() -> int:
    return load_settings().label_delay_days


def _online_shift() -> tuple[tuple[str, float], ...]:
    return tuple((category, 3.0) for category in ONLINE_CATEGORIES)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Drift days are a date or an offset in days from ``start``; None: never."""

    seed: int = 42
    start: date = date(2026, 1, 1)
    n_customers: int = 10_000
    transactions_per_day: int = 20_000
    label_delay_days: int = field(default_factory=_default_label_delay_days)
    merchants_per_category: int = 50
    fraud_share: float = 0.006  # expected share of fraud transactions (sprees and quiet fraud), before seasonality
    quiet_fraud_share: float = 0.2  # of those, the share in quiet fraud that imitates the card holder
    night_shift_share: float = 0.08  # customers whose spending is shifted to the evening and night
    trip_rate: float = 0.12  # chance that a customer makes a trip in a block of TRIP_BLOCK_DAYS days
    big_ticket_share: float = 0.01  # legitimate purchases at several times the usual amount
    session_share: float = 0.15  # legitimate purchases that follow another of the same card within an hour
    seasonality: float = 1.0  # scales every yearly cycle (volume, category mix, fraud rate); 0 = none
    amount_inflation_day: DayRef | None = None
    amount_inflation_factor: float = 1.3
    category_shift_day: DayRef | None = None
    category_shift_factors: tuple[tuple[str, float], ...] = field(default_factory=_online_shift)
    new_fraud_pattern_day: DayRef | None = None
    new_fraud_pattern_share: float = 0.003  # card-testing transactions, on top of the daily volume
    fraud_shift_day: DayRef | None = None
    fraud_shift_share: float = 0.004  # fraud-ring transactions in everyday categories, on top of the volume
    quality_incident_day: DayRef | None = None
    quality_incident_share: float = 0.02

    def __post_init__(self) -> None:
        if self.n_customers < 1 or self.transactions_per_day < 0 or self.merchants_per_category < 1:
            raise ValueError("n_customers and merchants_per_category must be >= 1, transactions_per_day >= 0")
        if self.label_delay_days < 0:
            raise ValueError(f"label_delay_days must be >= 0, got {self.label_delay_days}")
        shares = ("fraud_share", "quiet_fraud_share", "night_shift_share", "trip_rate", "big_ticket_share")
        shares += ("session_share", "new_fraud_pattern_share", "fraud_shift_share", "quality_incident_share")
        if self.seasonality < 0:
            raise ValueError(f"seasonality must be >= 0, got {self.seasonality}")
        for name in shares:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if self.amount_inflation_factor <= 0:
            raise ValueError(f"amount_inflation_factor must be > 0, got {self.amount_inflation_factor}")
        unknown = [c for c, _ in self.category_shift_factors if c not in CATEGORIES]
        if unknown or any(factor <= 0 for _, factor in self.category_shift_factors):
            raise ValueError(f"category_shift_factors need known categories and factors > 0: {unknown}")

    def resolve(self, ref: DayRef | None) -> date | None:
        """The calendar day of a drift setting (None when the setting is off)."""
        if ref is None or isinstance(ref, date):
            return ref
        return self.start + timedelta(days=int(ref))

    def active_from(self, ref: DayRef | None, day: date) -> bool:
        resolved = self.resolve(ref)
        return resolved is not None and day >= resolved
