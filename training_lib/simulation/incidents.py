"""A data-quality incident: a share of one day's rows malformed the ways real feeds break.

Malformed rows only exist as text (:meth:`~training_lib.simulation.simulator.Simulator.transactions_text` and
the feed files): the canonical frames stay clean, so the quality gate is what has to find them.
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from training_lib.simulation.scenario import MALFORMED_KINDS, SECONDS_PER_DAY, UNKNOWN_CATEGORIES, SimulationConfig
from training_lib.simulation.text import timestamp_text


def malform(config: SimulationConfig, day: date, columns: dict[str, pa.Array], seconds: np.ndarray) -> pd.Series:
    """Corrupt ``config.quality_incident_share`` of the day's text rows in place (a mix of MALFORMED_KINDS, drawn
    from (seed, day) alone); returns the kind per row (None for the rows left good)."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 2, day.toordinal()]))
    n = len(seconds)
    n_bad = min(round(config.quality_incident_share * n), n - 1)
    rows = rng.choice(n, size=max(n_bad, 0), replace=False)
    kinds = pd.Series([None] * n, dtype=object)
    kinds.iloc[rows] = np.array(MALFORMED_KINDS, dtype=object)[rng.permutation(len(rows)) % len(MALFORMED_KINDS)]
    touched = ("trans_date_trans_time", "cc_num", "category", "amt", "lat", "trans_num", "unix_time")
    text = {c: columns[c].to_numpy(zero_copy_only=False).astype(object) for c in touched}
    good = np.flatnonzero(kinds.isna().to_numpy())
    for kind in MALFORMED_KINDS:
        where = np.flatnonzero((kinds == kind).to_numpy())
        m = len(where)
        if not m:
            continue
        if kind == "negative_amount":
            text["amt"][where] = ["-" + value for value in text["amt"][where]]
        elif kind == "zero_amount":
            text["amt"][where] = rng.choice(np.array(["0", "0.00", "-0.0"], dtype=object), m)
        elif kind == "unknown_category":
            text["category"][where] = rng.choice(np.array(UNKNOWN_CATEGORIES, dtype=object), m)
        elif kind == "cc_num_scientific":
            text["cc_num"][where] = [f"{float(value):.5E}" for value in text["cc_num"][where]]
        elif kind == "latitude_out_of_range":
            lat = rng.choice([-1.0, 1.0], m) * rng.uniform(90.5, 180.0, m)
            text["lat"][where] = [f"{value:.4f}" for value in lat]
        elif kind == "unparseable_date":
            stamps = seconds[where].astype("datetime64[s]").astype(datetime)
            text["trans_date_trans_time"][where] = [s.strftime("%d-%m-%Y %H:%M") for s in stamps]
        elif kind == "empty_trans_num":
            text["trans_num"][where] = ""
        elif kind == "wrong_day_timestamp":
            moved = seconds[where] + rng.choice([-3, -1, 1, 2], m) * SECONDS_PER_DAY
            text["trans_date_trans_time"][where] = timestamp_text(moved).to_numpy(zero_copy_only=False)
            text["unix_time"][where] = moved.astype(str).astype(object)
        elif kind == "duplicate_trans_num":
            # Copy the trans_num of a good row earlier in the file: the first copy is the original.
            for row in where:
                earlier = good[good < row]
                if len(earlier):
                    text["trans_num"][row] = text["trans_num"][earlier[rng.integers(len(earlier))]]
                else:  # nothing earlier to duplicate: the row stays good
                    kinds.iloc[row] = None
    for column, values in text.items():
        columns[column] = pa.array(values, type=pa.string())
    return kinds
