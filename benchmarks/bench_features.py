"""Feature pipeline throughput: build_features (per-row + per-card history) against row_features alone.

Run: ``.venv/bin/python benchmarks/bench_features.py [--days 65] [--transactions-per-day 20000]``
(default: Kaggle size, ~1.3 M rows, plus HISTORY_DAYS days of history before them). Prints rows/s and
peak RSS (sampled with psutil) of each, and the ratio build_features / row_features measured in this run
(no assertion on timing).
"""

from __future__ import annotations

import argparse
import gc
import resource
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pandas as pd
import psutil

from training_lib.modeling.features import (
    HISTORY_DAYS,
    HISTORY_INPUT_COLUMNS,
    build_features,
    history_features,
    row_features,
)
from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulator import Simulator

PROCESS = psutil.Process()


def rss_bytes() -> int:
    """Current resident set size of this process."""
    return PROCESS.memory_info().rss


def measure(work: Callable[[], object], repeat: int) -> tuple[float, int]:
    """(best seconds of ``repeat`` runs, peak RSS above the starting RSS during the runs)."""
    gc.collect()
    start_rss = rss_bytes()
    peak = start_rss
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    best = float("inf")
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            work()
            best = min(best, time.perf_counter() - started)
            gc.collect()
    finally:
        done.set()
        sampler.join()
    return best, max(peak, rss_bytes()) - start_rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=65)
    parser.add_argument("--transactions-per-day", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    started = time.perf_counter()
    config = SimulationConfig(
        seed=3, n_customers=args.customers, transactions_per_day=args.transactions_per_day, label_delay_days=7
    )
    simulator = Simulator(config)
    history_days = [config.start - timedelta(days=k) for k in range(HISTORY_DAYS, 0, -1)]
    days = [config.start + timedelta(days=i) for i in range(args.days)]
    target = pd.concat([simulator.transactions(day) for day in days], ignore_index=True)
    history = pd.concat([simulator.transactions(day) for day in history_days], ignore_index=True)
    history = history[list(HISTORY_INPUT_COLUMNS)]
    print(
        f"simulated {len(target):,} rows ({args.days} days) + {len(history):,} history rows ({HISTORY_DAYS} days),"
        f" {target['cc_num'].nunique():,} cards in {time.perf_counter() - started:.1f}s;"
        f" RSS {rss_bytes() / 2**20:,.0f} MiB"
    )
    build_features(target.head(1000), history.head(1000))  # warm-up (imports, first-call costs)

    cases: dict[str, Callable[[], object]] = {
        "row_features(target)": lambda: row_features(target),
        "history_features(target, history)": lambda: history_features(target, history),
        "build_features(target, history)": lambda: build_features(target, history),
    }
    rates = {}
    for name, work in cases.items():
        seconds, peak = measure(work, args.repeat)
        rates[name] = len(target) / seconds
        print(
            f"{name:36s} {seconds:6.2f}s = {rates[name]:>11,.0f} rows/s; peak RSS +{peak / 2**20:,.0f} MiB"
            f" ({peak / len(target):,.0f} B/row)"
        )
    ratio = rates["row_features(target)"] / rates["build_features(target, history)"]
    print(f"build_features takes {ratio:.2f}x the time of row_features alone (same frame, this run)")
    print(f"process peak RSS (ru_maxrss): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:,.0f} MiB")


if __name__ == "__main__":
    main()
