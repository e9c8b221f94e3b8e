"""The simulator's command line: the landing layout, a Kaggle file, the bucket."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from training_lib.config import process_environment
from training_lib.ingestion.reader import read_labels, read_transactions
from training_lib.simulation.scenario import SimulationConfig

REPO = Path(__file__).resolve().parents[2]
START = date(2026, 1, 1)
SMALL = SimulationConfig(seed=11, start=START, n_customers=1_500, transactions_per_day=3_000, label_delay_days=3)
NIGHT_HOURS = (22, 23, 0, 1, 2, 3)


def test_cli_writes_the_landing_layout_and_a_kaggle_file(tmp_path: Path) -> None:
    kaggle = tmp_path / "kaggle.csv"
    command = [
        sys.executable,
        "-m",
        "training_lib.simulation.simulate",
        "--start",
        "2026-03-01",
        "--days",
        "3",
        "--seed",
        "5",
        "--customers",
        "300",
        "--transactions-per-day",
        "400",
        "--label-delay-days",
        "1",
        "--quality-incident",
        "2026-03-03:0.05",
        "--out",
        str(tmp_path / "lake"),
        "--kaggle",
        str(kaggle),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=process_environment(), timeout=120)
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stdout.splitlines() if line.startswith("2026-03-0")]
    assert len(progress) == 3 and all("rows=" in line and "frauds=" in line for line in progress)

    lake = tmp_path / "lake"
    days = [date(2026, 3, 1) + timedelta(days=i) for i in range(3)]
    total = 0
    for current in days:
        feed = lake / f"landing/transactions/dt={current}/transactions.csv"
        read = read_transactions(feed)
        assert read.rejected.empty and len(read.frame) > 300
        assert read.frame["is_fraud"].isna().all()
        assert read.parse_errors.empty == (current != days[2])
        total += len(read.frame)
    assert read_labels(lake / f"landing/labels/dt={days[0]}/labels.csv").frame.empty  # header only
    for current in days[1:]:
        labels = read_labels(lake / f"landing/labels/dt={current}/labels.csv").frame
        previous = read_transactions(lake / f"landing/transactions/dt={current - timedelta(days=1)}/transactions.csv")
        assert set(labels["trans_num"]) == set(previous.frame["trans_num"])

    whole = read_transactions(kaggle)
    assert len(whole.frame) == total and whole.frame["is_fraud"].notna().all()
    assert pd.read_csv(kaggle, usecols=[0]).iloc[:, 0].tolist() == list(range(total))


def test_cli_requires_a_destination() -> None:
    command = [sys.executable, "-m", "training_lib.simulation.simulate", "--start", "2026-03-01"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=process_environment(), timeout=60)
    assert result.returncode == 2 and "--out" in result.stderr


def test_cli_writes_to_the_lake_bucket(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from moto.server import ThreadedMotoServer

    from training_lib.config import load_settings
    from training_lib.lake.objects import ensure_bucket, s3_client
    from training_lib.simulation import simulate

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("FRAUD_S3_ENDPOINT_URL", f"http://{host}:{port}")  # a real S3 HTTP API
        monkeypatch.setenv("FRAUD_BUCKET", "simulator-test")
        settings = load_settings()
        ensure_bucket(settings)
        client = s3_client(settings)
        argv = ["--start", "2026-03-01", "--days", "2", "--customers", "200", "--transactions-per-day", "200"]
        assert simulate.main([*argv, "--label-delay-days", "1", "--to-lake"]) == 0
        keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=settings.bucket)["Contents"])
        body = client.get_object(Bucket=settings.bucket, Key=keys[-1])["Body"].read()
        first_labels = client.get_object(Bucket=settings.bucket, Key=keys[0])["Body"].read()
    finally:
        server.stop()
    assert keys == [
        "landing/labels/dt=2026-03-01/labels.csv",
        "landing/labels/dt=2026-03-02/labels.csv",
        "landing/transactions/dt=2026-03-01/transactions.csv",
        "landing/transactions/dt=2026-03-02/transactions.csv",
    ]
    assert first_labels == b"trans_num,is_fraud,confirmed_at\n"  # nothing matured yet: header only
    assert read_transactions(body).parse_errors.empty
    assert "s3://simulator-test/" in capsys.readouterr().out
