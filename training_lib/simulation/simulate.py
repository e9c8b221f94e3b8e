"""The simulator's command line: days of feed and label files to a folder, to the bucket, or one Kaggle CSV.

``python -m training_lib.simulation.simulate --start 2026-01-01 --days 30 --out DIR`` (or ``--to-lake``, or
``--kaggle FILE``); see ``--help``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from training_lib.config import Settings, load_settings
from training_lib.lake.layout import LANDING_LABELS, LANDING_TRANSACTIONS, partition_prefix
from training_lib.lake.objects import s3_client
from training_lib.simulation.scenario import DayRef, SimulationConfig
from training_lib.simulation.simulator import Simulator
from training_lib.simulation.text import feed_csv


def parse_day_ref(text: str) -> DayRef:
    """'2026-01-15' -> a date; '14' -> an offset in days from the start."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD or a day offset, got {text!r}") from exc


def _day_and_number(text: str) -> tuple[DayRef, float]:
    day, sep, number = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected DAY:NUMBER, got {text!r}")
    try:
        return parse_day_ref(day), float(number)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected DAY:NUMBER, got {text!r}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training_lib.simulation.simulate",
        description="Simulate daily card transactions (Sparkov/Kaggle layout) and their late labels.",
    )
    parser.add_argument("--start", type=date.fromisoformat, required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=1, help="number of days (default 1)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--customers", type=int, default=10_000, help="number of card holders")
    parser.add_argument("--transactions-per-day", type=int, default=20_000)
    parser.add_argument("--label-delay-days", type=int, default=None, help="default: FRAUD_LABEL_DELAY_DAYS")
    parser.add_argument("--amount-inflation", type=_day_and_number, metavar="DAY:FACTOR")
    parser.add_argument("--category-shift", type=parse_day_ref, metavar="DAY", help="more online spending from DAY")
    parser.add_argument("--new-fraud-pattern", type=parse_day_ref, metavar="DAY", help="card testing from DAY")
    parser.add_argument(
        "--fraud-shift", type=parse_day_ref, metavar="DAY", help="a fraud ring in everyday categories from DAY"
    )
    parser.add_argument("--quality-incident", type=_day_and_number, metavar="DAY:SHARE")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--out", type=Path, metavar="DIR", help="write the lake layout under DIR")
    target.add_argument("--to-lake", action="store_true", help="write to the platform bucket (FRAUD_BUCKET)")
    parser.add_argument("--kaggle", type=Path, metavar="FILE", help="also one Kaggle-style CSV with is_fraud")
    return parser


def config_from_args(args: argparse.Namespace, settings: Settings) -> SimulationConfig:
    options: dict[str, object] = {}
    if args.amount_inflation:
        options["amount_inflation_day"], options["amount_inflation_factor"] = args.amount_inflation
    if args.quality_incident:
        options["quality_incident_day"], options["quality_incident_share"] = args.quality_incident
    return SimulationConfig(
        seed=args.seed,
        start=args.start,
        n_customers=args.customers,
        transactions_per_day=args.transactions_per_day,
        label_delay_days=settings.label_delay_days if args.label_delay_days is None else args.label_delay_days,
        category_shift_day=args.category_shift,
        new_fraud_pattern_day=args.new_fraud_pattern,
        fraud_shift_day=args.fraud_shift,
        **options,  # type: ignore[arg-type]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not (args.out or args.to_lake or args.kaggle):
        parser.error("choose where to write: --out DIR, --to-lake and/or --kaggle FILE")
    if args.days < 1:
        parser.error("--days must be >= 1")
    settings = load_settings()
    try:
        config = config_from_args(args, settings)
    except ValueError as exc:
        parser.error(str(exc))
    simulator = Simulator(config, settings)
    client = s3_client(settings) if args.to_lake else None

    def write(key: str, data: bytes) -> None:
        if client is not None:
            client.put_object(Bucket=settings.bucket, Key=key, Body=data, ContentType="text/csv")
        elif args.out:
            path = args.out / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    if args.kaggle:
        args.kaggle.parent.mkdir(parents=True, exist_ok=True)
    kaggle = args.kaggle.open("wb") if args.kaggle else None
    totals = {"rows": 0, "frauds": 0, "malformed": 0}
    began = time.perf_counter()
    try:
        for offset in range(args.days):
            day = config.start + timedelta(days=offset)
            started = time.perf_counter()
            labels = 0
            table, kinds, arrays = simulator.text_table(day)
            if args.out or args.to_lake:
                feed = feed_csv(table, include_label=False, kaggle_index=True, index_start=0)
                write(f"{partition_prefix(LANDING_TRANSACTIONS, day)}/transactions.csv", feed)
                labels = simulator.labels_table(day).num_rows
                # Every day gets a label file, header-only while nothing has matured: a day without
                # confirmations is a fact to record, not a missing delivery.
                write(f"{partition_prefix(LANDING_LABELS, day)}/labels.csv", simulator.labels_csv_bytes(day))
            if kaggle is not None:
                data = feed_csv(table, include_label=True, kaggle_index=True, index_start=totals["rows"])
                kaggle.write(data if offset == 0 else data[data.index(b"\n") + 1 :])
            rows, frauds, malformed = len(arrays), int(arrays.is_fraud.sum()), int(kinds.notna().sum())
            for key, value in (("rows", rows), ("frauds", frauds), ("malformed", malformed)):
                totals[key] += value
            print(
                f"{day}  rows={rows:,}  frauds={frauds} ({frauds / max(rows, 1):.2%})  malformed={malformed}"
                f"  labels={labels:,}  {time.perf_counter() - started:.2f}s",
                flush=True,
            )
    finally:
        if kaggle is not None:
            kaggle.close()
    destinations = [f"s3://{settings.bucket}/" if args.to_lake else f"{args.out}/" if args.out else "", args.kaggle]
    print(
        f"{args.days} day(s), {totals['rows']:,} transactions, {totals['frauds']:,} frauds "
        f"({totals['frauds'] / max(totals['rows'], 1):.2%}), {totals['malformed']} malformed rows, "
        f"{time.perf_counter() - began:.1f}s -> {', '.join(str(d) for d in destinations if d)}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
