"""Monitoring cost as the lake grows (issue 17, item 2), ratios taken in the same run on this machine.

Two lakes on one embedded stack, the same simulated days: one holds the last 30 days, the other 365 days
(validated transactions, labels confirmed the transaction's day, predictions, performance summaries of the
days already measured). On each, the nightly steps that look back over the lake are timed:

1. ``batch_score``'s monitoring step: ``matured_scored_days`` + ``realized_quality`` of the one newly matured
   day + ``performance_trigger`` (the champion's realized quality);
2. ``transactions_daily``'s drift step: ``drift_day`` of the newest day against the champion's reference.

Goal: the 365-day / 30-day time ratio stays near 1 (flat in the lake's size).

Usage: .venv/bin/python benchmarks/bench_monitoring.py [--rows-per-day N] [--repeats K]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import date, timedelta

SHORT, LONG = 30, 365


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _predictions(frame, version: str):
    """A predictions table of the day's transactions, as batch scoring writes it (scores drawn at random)."""
    import numpy as np
    import pyarrow as pa

    from training_lib.scoring.shard import prediction_schema

    rng = np.random.default_rng(len(frame))
    scores = np.clip(0.7 * frame["is_fraud"].to_numpy() + rng.random(len(frame)) * 0.5, 0.0, 1.0)
    return pa.table(
        {
            "trans_num": frame["trans_num"].astype(str),
            "card_token": ["t"] * len(frame),
            "amt": frame["amt"].astype(float),
            "category": frame["category"].astype(str),
            "score": scores,
            "decision": (scores >= 0.5).astype("int8"),
            "model_name": ["fraud-detector"] * len(frame),
            "model_version": [version] * len(frame),
        },
        schema=prediction_schema(),
    )


def _seed_lake(settings, frames: dict[date, object], version: str, fitted_through: str, measured: list[date]) -> None:
    """Validated days, labels (confirmed the same day), predictions; performance summaries of ``measured``."""
    import pyarrow as pa

    from training_lib.ingestion.schema import label_arrow_schema, to_validated_arrow
    from training_lib.lake.layout import LABELS, PREDICTIONS, VALIDATED_TRANSACTIONS
    from training_lib.lake.objects import ensure_bucket
    from training_lib.lake.storage import Lake
    from training_lib.monitoring.performance import realized_quality

    ensure_bucket(settings)
    lake = Lake(settings)
    for day, frame in frames.items():
        lake.publish_partition(VALIDATED_TRANSACTIONS, day, to_validated_arrow(frame.drop(columns=["is_fraud"])))
        labels = frame[["trans_num", "is_fraud"]].assign(confirmed_at=frame["trans_date_trans_time"])
        labels = pa.Table.from_pandas(labels, schema=label_arrow_schema(), preserve_index=False)
        lake.publish_partition(LABELS, day, labels)
        metadata = {"model_name": "fraud-detector", "model_version": version, "model_fitted_through": fitted_through}
        lake.publish_partition(PREDICTIONS, day, _predictions(frame, version), metadata=metadata)
    for day in measured:
        realized_quality(settings, day, lake)


def _time(step, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-day", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from training_lib.config import load_stack_settings
    from training_lib.lake.layout import REPORTS_PERFORMANCE
    from training_lib.lake.storage import Lake
    from training_lib.local.stack import LocalStack
    from training_lib.modeling.train import seed_champion
    from training_lib.monitoring.daily_drift import drift_day
    from training_lib.monitoring.performance import matured_scored_days, performance_trigger, realized_quality
    from training_lib.simulation.scenario import SimulationConfig
    from training_lib.simulation.simulator import Simulator

    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as state:
        env = {
            "FRAUD_STATE_DIR": state,
            "FRAUD_EMBEDDED_SERVICES": "s3,mlflow",
            "FRAUD_S3_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_free_port()}",
            "FRAUD_BUCKET": "bench-monitoring-long",
            "FRAUD_CARD_TOKEN_KEY": "benchmark-only-key",
        }
        stack_settings = load_stack_settings(env)
        stack = LocalStack(stack_settings, echo=lambda line: print(f"  {line}"))
        stack.up(timeout=180)
        try:
            long_settings = stack_settings.platform
            short_settings = replace(long_settings, bucket="bench-monitoring-short")
            first = date(2025, 1, 1)
            days = [first + timedelta(days=k) for k in range(LONG)]
            simulator = Simulator(SimulationConfig(seed=7, start=first, transactions_per_day=args.rows_per_day))
            started = time.perf_counter()
            frames = {}
            for k, day in enumerate(days):
                frames[day] = simulator.transactions(day)
                if (k + 1) % 73 == 0:
                    print(f"  simulated {k + 1}/{LONG} days", flush=True)
            # the champion: fitted on the first 14 days of the long lake (its reference comes from them)
            _seed_lake(long_settings, {day: frames[day] for day in days[:14]}, "1", days[13].isoformat(), [])
            trained = seed_champion(long_settings, 14, actor="user:bench")
            version, fitted_through = str(trained["version"]), days[13].isoformat()

            delay = long_settings.label_delay_days
            today = days[-1]
            newly_matured = today - timedelta(days=delay)
            for settings, span in ((long_settings, LONG), (short_settings, SHORT)):
                kept = days[-span:] if span == SHORT else days[14:]
                measured = [d for d in kept if d < newly_matured][-4 * long_settings.performance_window_days :]
                in_lake = days if span == LONG else kept  # the long lake also holds the champion's 14 days
                older = [d for d in in_lake if d < newly_matured and d not in measured]
                _seed_lake(settings, {day: frames[day] for day in kept}, version, fitted_through, measured)
                store = Lake(settings)
                for day in older:  # measured in earlier nights: only their summaries' presence matters here
                    store.put_report(REPORTS_PERFORMANCE, day, "summary.json", '{"status": "computed"}')
            print(f"seeded {LONG} + {SHORT} days of {args.rows_per_day:,} rows in {time.perf_counter() - started:.0f}s")

            results = {}
            for settings, span in ((short_settings, SHORT), (long_settings, LONG)):
                store = Lake(settings)
                summary_key = f"{REPORTS_PERFORMANCE}/dt={newly_matured.isoformat()}/summary.json"

                def monitoring(settings=settings, store=store, summary_key=summary_key) -> None:
                    store.delete_keys([summary_key])  # the day matures anew on every repeat
                    pending = matured_scored_days(settings, today, store)
                    assert pending == [newly_matured], pending
                    computed = [realized_quality(settings, day, store) for day in pending]
                    assert computed[0]["status"] == "computed", computed[0]
                    performance_trigger(settings, today, [r["day"] for r in computed], store)

                def drift(settings=settings) -> None:
                    assert drift_day(settings, today)["status"] == "computed"

                results[span] = {"monitoring": _time(monitoring, args.repeats), "drift": _time(drift, args.repeats)}
                print(
                    f"{span:>3} days in the lake: monitoring step {results[span]['monitoring']:.2f}s, "
                    f"drift step {results[span]['drift']:.2f}s (median of {args.repeats})",
                    flush=True,
                )
            for step in ("monitoring", "drift"):
                ratio = results[LONG][step] / results[SHORT][step]
                print(f"{step}: {LONG} days / {SHORT} days = {ratio:.2f} (goal: near 1, flat in the lake's size)")
        finally:
            stack.down()


if __name__ == "__main__":
    main()
