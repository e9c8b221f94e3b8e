"""Simulator throughput: transactions per second for generation, and for generation + CSV bytes.

Run: ``.venv/bin/python benchmarks/bench_simulate.py [--days 5] [--transactions-per-day 200000]``.
Prints each figure and its ratio to the goal of 200 000 transactions/s (measured in this run; no
assertion on timing).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import date, timedelta

from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulator import Simulator

GOAL_PER_SECOND = 200_000


def throughput(days: list[date], work: Callable[[date], int]) -> tuple[int, float]:
    """(rows, seconds) of running ``work`` on every day; ``work`` returns the rows it produced."""
    started = time.perf_counter()
    rows = sum(work(day) for day in days)
    return rows, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--transactions-per-day", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=10_000)
    args = parser.parse_args()

    started = time.perf_counter()
    config = SimulationConfig(
        seed=1, n_customers=args.customers, transactions_per_day=args.transactions_per_day, label_delay_days=7
    )
    simulator = Simulator(config)
    print(f"customers and merchants: {time.perf_counter() - started:.2f}s for {args.customers:,} customers")
    simulator.transactions(config.start - timedelta(days=1))  # warm-up (imports, first-call costs)
    days = [config.start + timedelta(days=i) for i in range(args.days)]

    csv_bytes = 0

    def to_csv(day: date) -> int:
        nonlocal csv_bytes
        data = simulator.day_csv_bytes(day)
        csv_bytes += len(data)
        return data.count(b"\n") - 1

    cases = {
        "generation (transactions(day) -> DataFrame)": lambda day: len(simulator.transactions(day)),
        "generation + CSV bytes (day_csv_bytes)": to_csv,
        "arrays only (day_arrays)": lambda day: len(simulator.day_arrays(day)),
    }
    for name, work in cases.items():
        rows, seconds = throughput(days, work)
        rate = rows / seconds
        print(
            f"{name:46s} {rows:>10,} rows in {seconds:6.2f}s = {rate:>10,.0f} transactions/s"
            f"  ({rate / GOAL_PER_SECOND:.2f}x the {GOAL_PER_SECOND:,}/s goal)"
        )
    print(f"CSV size: {csv_bytes / 1e6:.1f} MB for {args.days} days ({csv_bytes / args.days / 1e6:.1f} MB/day)")


if __name__ == "__main__":
    main()
