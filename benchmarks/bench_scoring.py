"""Batch scoring benchmarks (issue 5), all ratios taken in the same run on this machine.

1. End-to-end `score_day` rows/s (S3 Parquet -> card buckets -> features -> predict -> S3 Parquet) on a
   1 M-row day, divided by raw in-memory `Booster.inplace_predict` rows/s on the same encoded feature
   matrix. Goal >= 0.5.
2. The same end-to-end rate against one-HTTP-request-per-transaction scoring of the same model (a small
   HTTP service, one persistent connection, features precomputed: generous to HTTP). Goal >= 100x.
3. Peak RSS of `score_day` in a fresh process for a 1 M-row and a 5 M-row day. Goal <= 1.5 GB, flat.

Usage: .venv/bin/python benchmarks/bench_scoring.py [--small]   (--small: 200k / 1M rows, quicker)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import date, timedelta

HTTP_REQUESTS = 1500


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _publish_big_day(lake, simulator, day: date, rows: int, chunk: int = 200_000) -> None:
    """A day of ``rows`` transactions, generated as chunk-sized simulated days re-dated onto ``day``."""
    import pandas as pd

    from training_lib.ingestion.schema import to_validated_arrow
    from training_lib.lake.layout import VALIDATED_TRANSACTIONS

    def tables():
        for k in range(rows // chunk):
            source = date(2030, 1, 1) + timedelta(days=k)
            frame = simulator.transactions(source).drop(columns=["is_fraud"])
            frame["trans_date_trans_time"] = frame["trans_date_trans_time"] - pd.Timestamp(source) + pd.Timestamp(day)
            yield to_validated_arrow(frame)

    lake.publish_partition(VALIDATED_TRANSACTIONS, day, tables())


CHILD = textwrap.dedent(
    """
    import json, sys, time
    from datetime import date
    from training_lib.config import load_settings
    from training_lib.scoring.batch import score_day
    settings = load_settings()
    started = time.perf_counter()
    summary = score_day(settings, date.fromisoformat(sys.argv[1]), run_id="bench")
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve, so it would report the parent's peak.
    hwm_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print(json.dumps({"rows": summary["rows"], "seconds": time.perf_counter() - started, "max_rss_mb": hwm_kb / 1024}))
    """
)

HTTP_SERVER = textwrap.dedent(
    """
    import json, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    import mlflow.sklearn, pandas as pd
    mlflow.set_tracking_uri(sys.argv[2])
    model = mlflow.sklearn.load_model(sys.argv[3])
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall per request
        def do_POST(self):
            row = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            score = float(model.predict_proba(pd.DataFrame([row]))[0, 1])
            body = json.dumps({"score": score}).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args): pass
    HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    sizes = (200_000, 1_000_000) if args.small else (1_000_000, 5_000_000)

    from training_lib.config import load_stack_settings
    from training_lib.lake.layout import VALIDATED_TRANSACTIONS
    from training_lib.lake.storage import Lake
    from training_lib.local.stack import LocalStack
    from training_lib.modeling.features import FEATURE_COLUMNS, build_features, load_history, validated_frame
    from training_lib.modeling.train import seed_champion
    from training_lib.scoring.batch import score_day
    from training_lib.scoring.champion import load_champion
    from training_lib.scoring.predict import fraud_scorer
    from training_lib.simulation.scenario import SimulationConfig
    from training_lib.simulation.simulator import Simulator, publish_validated_days

    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as state:
        env = {
            "FRAUD_STATE_DIR": state,
            "FRAUD_EMBEDDED_SERVICES": "s3,mlflow",
            "FRAUD_S3_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_free_port()}",
            "FRAUD_BUCKET": "bench-scoring",
            "FRAUD_CARD_TOKEN_KEY": "benchmark-only-key",
        }
        stack_settings = load_stack_settings(env)
        settings = stack_settings.platform
        stack = LocalStack(stack_settings, echo=lambda line: print(f"  {line}"))
        stack.up(timeout=180)
        server = None
        try:
            lake = Lake(settings)
            simulator = Simulator(SimulationConfig(seed=2, start=date(2026, 1, 1), transactions_per_day=20_000))
            history_days = [date(2026, 1, 1) + timedelta(days=i) for i in range(10)]
            publish_validated_days(lake, simulator, history_days, labelled=history_days)
            trained = seed_champion(settings, 10, actor="user:bench")

            big_simulator = Simulator(SimulationConfig(seed=4, start=date(2030, 1, 1), transactions_per_day=200_000))
            score_days = {}
            for offset, rows in enumerate(sizes):
                day = history_days[-1] + timedelta(days=1 + offset)
                started = time.perf_counter()
                _publish_big_day(lake, big_simulator, day, rows)
                score_days[rows] = day
                print(f"published {rows:,} rows for {day} in {time.perf_counter() - started:.0f}s (not timed)")

            # 1. end to end vs raw inplace_predict, 1 M-row day
            day = score_days[sizes[0] if args.small else 1_000_000]
            started = time.perf_counter()
            summary = score_day(settings, day, run_id="bench-e2e")
            e2e_seconds = time.perf_counter() - started
            e2e_rate = summary["rows"] / e2e_seconds
            champion = load_champion(settings)
            table = lake.read_partition(VALIDATED_TRANSACTIONS, day)
            target = validated_frame(table, table.column_names)
            features = build_features(target, load_history(lake, day))[list(FEATURE_COLUMNS)]
            matrix = champion.model.named_steps["features"].transform(features)
            booster = champion.model.named_steps["model"].get_booster()
            booster.inplace_predict(matrix[:1000])
            started = time.perf_counter()
            booster.inplace_predict(matrix)
            raw_rate = len(matrix) / (time.perf_counter() - started)
            # the model's inputs: the pipeline's ColumnTransformer + predict vs the scoring path's NumPy matrix
            started = time.perf_counter()
            champion.model.predict_proba(features)
            pipeline_seconds = time.perf_counter() - started
            started = time.perf_counter()
            fraud_scorer(champion.model)(features)
            scorer_seconds = time.perf_counter() - started

            # 2. one HTTP request per transaction
            port = _free_port()
            model_uri = f"models:/{settings.model_name}/{champion.version}"
            child_env = {**os.environ, **settings.env(), "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}
            server = subprocess.Popen(
                [sys.executable, "-c", HTTP_SERVER, str(port), settings.mlflow_tracking_uri, model_uri], env=child_env
            )
            sample = features.head(HTTP_REQUESTS).astype(object)
            rows_json = [json.dumps(r) for r in sample.where(sample.notna(), None).to_dict("records")]
            deadline = time.monotonic() + 60
            while True:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    connection.connect()
                    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    connection.request(
                        "POST", "/score", body=rows_json[0], headers={"Content-Type": "application/json"}
                    )
                    connection.getresponse().read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            started = time.perf_counter()
            for body in rows_json:
                connection.request("POST", "/score", body=body, headers={"Content-Type": "application/json"})
                json.loads(connection.getresponse().read())
            http_rate = len(rows_json) / (time.perf_counter() - started)

            # 3. peak RSS of score_day in fresh processes
            memory = {}
            for rows, day in score_days.items():
                result = subprocess.run(
                    [sys.executable, "-c", CHILD, day.isoformat()],
                    env={**os.environ, **settings.env()},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                memory[rows] = json.loads(result.stdout.strip().splitlines()[-1])
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
            stack.down()

    print(
        f"\nbatch scoring, 2 cores, model v{champion.version} (XGBoost {trained['test_metrics']['pr_auc']:.3f} PR-AUC)"
    )
    print(
        f"1. end to end {e2e_rate:,.0f} rows/s ({summary['rows']:,} rows in {e2e_seconds:.1f}s) vs raw"
        f" inplace_predict {raw_rate:,.0f} rows/s: ratio {e2e_rate / raw_rate:.2f} (goal >= 0.5)"
    )
    print(
        f"   model inputs + predict on those rows: pipeline predict_proba {pipeline_seconds:.2f}s, scoring path"
        f" (scoring.predict) {scorer_seconds:.2f}s: {pipeline_seconds / scorer_seconds:.1f}x faster"
    )
    print(
        f"2. vs one HTTP request per transaction {http_rate:,.0f} rows/s: {e2e_rate / http_rate:,.0f}x (goal >= 100x)"
    )
    for rows, figures in memory.items():
        print(
            f"3. {rows:>9,} rows: peak RSS {figures['max_rss_mb']:,.0f} MB in {figures['seconds']:.1f}s"
            f" ({figures['rows'] / figures['seconds']:,.0f} rows/s)"
        )
    small, large = (memory[s]["max_rss_mb"] for s in sizes)
    print(f"   peak RSS ratio {sizes[1] // sizes[0]}x rows: {large / small:.2f} (flat ~1.0; goal <= 1.5 GB)")


if __name__ == "__main__":
    main()
