"""The demo's scenario: how many days, from when, how busy, the fraud change and the incident, and the platform
settings the demo's stack runs with (``DemoPlan``, the full and the fast plan)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from training_lib.config import StackSettings, load_stack_settings
from training_lib.simulation.scenario import SimulationConfig


@dataclass(frozen=True)
class DemoPlan:
    """The scenario: how many days, how much traffic, when fraud changes, which day has bad rows.

    ``profile`` holds the platform settings the scenario needs (environment variable names): label delay,
    retrain triggers and cooldowns sized to the demo's volume. The stack's processes run with them.
    """

    start: date
    days: int
    transactions_per_day: int
    customers: int
    change_day: int  # 1-based day from which card testing starts (the harmful change)
    incident_day: int  # 1-based day with malformed rows (the data-quality incident)
    profile: dict[str, str]
    change_share: float = 0.006  # card-testing transactions per transaction, from change_day
    drift_day: int | None = None  # 1-based day from which amounts are inflated (benign drift), if any
    amount_inflation: float = 1.3
    incident_share: float = 0.02
    seed: int = 7

    @property
    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def day(self, number: int) -> date:
        """The calendar day of a 1-based day number."""
        return self.start + timedelta(days=number - 1)

    def simulation(self, label_delay_days: int) -> SimulationConfig:
        return SimulationConfig(
            seed=self.seed,
            start=self.start,
            n_customers=self.customers,
            transactions_per_day=self.transactions_per_day,
            label_delay_days=label_delay_days,
            new_fraud_pattern_day=self.change_day - 1,
            new_fraud_pattern_share=self.change_share,
            amount_inflation_day=None if self.drift_day is None else self.drift_day - 1,
            amount_inflation_factor=self.amount_inflation,
            quality_incident_day=self.incident_day - 1,
            quality_incident_share=self.incident_share,
        )


_PROFILE = {
    "FRAUD_LABEL_DELAY_DAYS": "1",
    "FRAUD_RETRAIN_COOLDOWN_DAYS": "7",
    "FRAUD_PERFORMANCE_COOLDOWN_DAYS": "2",
    "FRAUD_PERFORMANCE_WINDOW_DAYS": "3",
    "FRAUD_SENSOR_POKE_S": "3",
}
FULL = DemoPlan(
    start=date(2026, 1, 1),
    days=20,
    transactions_per_day=8000,
    customers=4000,
    change_day=11,
    incident_day=4,
    drift_day=17,
    amount_inflation=1.5,
    profile={
        **_PROFILE,
        "FRAUD_MIN_NEW_LABELS": "56000",  # seven days of labels
        "FRAUD_TRAINING_WINDOW_DAYS": "12",
        "FRAUD_DRIFT_REFERENCE_DAYS": "3",
    },
)
FAST = DemoPlan(
    start=date(2026, 1, 1),
    days=18,
    transactions_per_day=8000,
    customers=4000,
    change_day=10,
    incident_day=3,
    profile={
        **_PROFILE,
        "FRAUD_MIN_NEW_LABELS": "48000",  # six days of labels
        "FRAUD_TRAINING_WINDOW_DAYS": "10",
        "FRAUD_DRIFT_REFERENCE_DAYS": "2",
    },
)


def demo_settings(plan: DemoPlan, environ: dict[str, str] | None = None) -> StackSettings:
    """The stack and platform settings of a demo: the environment's, with the scenario's profile on top."""
    return load_stack_settings(environ, overrides=plan.profile)
