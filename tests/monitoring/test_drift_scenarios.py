"""Acceptance: a drift scenario switched on at day k is flagged on day k and later, and not before.

The simulator's feed goes through the real quality split and the real Evidently report against a
reference built from the first validated days, as transactions_daily does.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from training_lib.config import load_settings
from training_lib.modeling.reference import build_reference
from training_lib.monitoring.drift import run_drift_report
from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulator import Simulator

START = date(2026, 4, 1)
REFERENCE_DAYS = 3
SWITCH_ON = 5  # offset of day k
LAST = 8


@pytest.mark.parametrize(
    ("scenario", "column"),
    [
        ({"amount_inflation_day": SWITCH_ON, "amount_inflation_factor": 1.4}, "amt"),
        ({"category_shift_day": SWITCH_ON}, "category"),
    ],
    ids=["amount-inflation", "category-shift"],
)
def test_scenario_is_flagged_from_its_day_on_and_not_before(scenario: dict, column: str) -> None:
    threshold = load_settings({}).drift_threshold
    simulator = Simulator(SimulationConfig(seed=5, start=START, transactions_per_day=20_000, **scenario))
    days = [START + timedelta(days=offset) for offset in range(LAST + 1)]
    reference = build_reference([simulator.transactions(day) for day in days[:REFERENCE_DAYS]])
    flagged = {}
    for offset, day in enumerate(days[REFERENCE_DAYS:], start=REFERENCE_DAYS):
        summary = run_drift_report(simulator.transactions(day), reference, threshold, day=day).summary
        flagged[offset] = summary["drift_detected"]
        if offset >= SWITCH_ON:
            assert column in summary["drifted_columns"], (day, summary["columns"])
    assert flagged == {offset: offset >= SWITCH_ON for offset in range(REFERENCE_DAYS, LAST + 1)}, flagged
