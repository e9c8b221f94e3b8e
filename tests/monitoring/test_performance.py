"""Realized quality of scored days against matured labels, on a real S3 API (moto's server on a free port)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score
from support import moto_settings

from training_lib.config import Settings, load_settings
from training_lib.ingestion.schema import label_arrow_schema
from training_lib.lake.layout import LABELS, PREDICTIONS, REPORTS_PERFORMANCE
from training_lib.lake.storage import Lake
from training_lib.monitoring.performance import (
    below_floor_check,
    judge_performance,
    matured_scored_days,
    realized_quality,
    summary_key,
)
from training_lib.scoring.shard import prediction_schema

DAY = date(2024, 3, 1)
PREDICTION_SCHEMA = prediction_schema()  # exactly what batch scoring writes
LABEL_SCHEMA = label_arrow_schema()


@pytest.fixture
def settings(moto_endpoint: str) -> Settings:
    """A bucket of its own for every test (matured_scored_days lists the whole bucket)."""
    return moto_settings(moto_endpoint, f"perf-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def lake(settings: Settings) -> Lake:
    return Lake(settings)


def scored_day(
    n: int = 2000, frauds: int = 20, *, informative: bool = True, seed: int = 7, tag: str = "t"
) -> dict[str, np.ndarray]:
    """Synthetic predictions with labels: scores correlated with fraud (or random), top 1% alerted."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=np.int8)
    y[rng.choice(n, frauds, replace=False)] = 1
    signal = np.clip(rng.normal(0.15, 0.1, n) + y * rng.normal(0.55, 0.2, n), 0, 1)
    scores = signal if informative else rng.random(n)
    decision = (scores >= np.quantile(scores, 0.99)).astype(np.int8)
    return {
        "trans_num": np.array([f"{tag}-{i:06d}" for i in range(n)]),
        "card_token": np.array([f"card-{tag}-{i % 300:04d}" for i in range(n)]),
        "score": scores,
        "decision": decision,
        "y": y,
    }


def publish_predictions(
    lake: Lake,
    day: date,
    data: dict[str, np.ndarray],
    versions: tuple[str, ...] = ("3",),
    fitted_through: str | None = None,
) -> None:
    n = len(data["y"])
    table = pa.table(
        {
            "trans_num": data["trans_num"],
            "card_token": data["card_token"],
            "amt": np.round(np.linspace(1, 500, n), 2),
            "category": ["grocery_pos"] * n,
            "score": data["score"],
            "decision": data["decision"],
            "model_name": ["fraud-detector"] * n,
            "model_version": [versions[i % len(versions)] for i in range(n)],
        },
        schema=PREDICTION_SCHEMA,
    )
    metadata = {"model_version": versions[0], "model_fitted_through": fitted_through}
    lake.publish_partition(PREDICTIONS, day, table, metadata=metadata)


def publish_labels(lake: Lake, day: date, data: dict[str, np.ndarray], share: float = 1.0) -> None:
    """Labels of the first ``share`` of the rows, split over two confirmation days."""
    labelled = int(len(data["y"]) * share)
    half = labelled // 2
    for offset, rows in ((3, slice(0, half)), (6, slice(half, labelled))):
        confirmed = day + timedelta(days=offset)
        count = len(data["y"][rows])
        table = pa.table(
            {
                "trans_num": data["trans_num"][rows],
                "is_fraud": data["y"][rows],
                "confirmed_at": [datetime(confirmed.year, confirmed.month, confirmed.day)] * count,
            },
            schema=LABEL_SCHEMA,
        )
        lake.publish_partition(LABELS, confirmed, table)


def test_realized_quality_matches_sklearn_and_is_written(settings: Settings, lake: Lake) -> None:
    data = scored_day()
    publish_predictions(lake, DAY, data)
    publish_labels(lake, DAY, data)

    summary = realized_quality(settings, DAY, lake)

    y, scores, flagged = data["y"], data["score"], data["decision"]
    assert summary is not None and summary["status"] == "computed"
    assert summary["rows"] == summary["labelled_rows"] == 2000 and summary["frauds"] == 20
    assert summary["labelled_share"] == 1.0
    assert summary["precision"] == pytest.approx(precision_score(y, flagged))
    assert summary["recall"] == pytest.approx(recall_score(y, flagged))
    assert summary["f1"] == pytest.approx(f1_score(y, flagged))
    assert summary["pr_auc"] == pytest.approx(average_precision_score(y, scores))
    assert summary["roc_auc"] == pytest.approx(roc_auc_score(y, scores))
    assert summary["alert_rate"] == pytest.approx(flagged.mean()) and summary["alerts"] == int(flagged.sum())
    assert summary["pr_auc"] > settings.promotion_floor and summary["below_floor"] is False
    assert summary["model_versions"] == ["3"] and summary["model_version"] == "3"
    assert summary["day"] == DAY.isoformat() and summary["labels_through"] == (DAY + timedelta(days=6)).isoformat()
    assert below_floor_check(summary) is None

    stored = lake.get_json(summary_key(lake, DAY))
    assert stored == summary
    assert summary_key(lake, DAY) == f"{REPORTS_PERFORMANCE}/dt=2024-03-01/summary.json"


def test_only_the_label_partitions_that_can_hold_the_days_labels_are_read(settings: Settings, lake: Lake) -> None:
    """A day's labels land on that day or within ``label_window_days`` after it (ingestion accepts no other):
    partitions outside that window are not read, so the cost does not grow with the lake."""
    data = scored_day()
    publish_predictions(lake, DAY, data)
    publish_labels(lake, DAY, data)  # confirmed on DAY + 3 and DAY + 6
    inverted = {**data, "y": 1 - data["y"]}  # the same transactions with every label wrong
    for outside in (DAY - timedelta(days=1), DAY + timedelta(days=settings.label_window_days)):
        table = pa.table(
            {
                "trans_num": inverted["trans_num"],
                "is_fraud": inverted["y"],
                "confirmed_at": [datetime(outside.year, outside.month, outside.day)] * len(data["y"]),
            },
            schema=LABEL_SCHEMA,
        )
        lake.publish_partition(LABELS, outside, table)

    summary = realized_quality(settings, DAY, lake)

    assert summary is not None and summary["frauds"] == 20  # the wrong labels outside the window were not read
    assert summary["pr_auc"] == pytest.approx(average_precision_score(data["y"], data["score"]))
    assert summary["labels_through"] == (DAY + timedelta(days=6)).isoformat()  # the newest partition it read


def test_report_holds_no_transaction_ids_or_card_tokens(settings: Settings, lake: Lake) -> None:
    data = scored_day(tag="priv")
    publish_predictions(lake, DAY, data)
    publish_labels(lake, DAY, data)
    realized_quality(settings, DAY, lake)

    text = lake.get_bytes(summary_key(lake, DAY)).decode()
    assert "priv-" not in text and "card-" not in text
    assert not any(value in text for value in (*data["trans_num"][:50], *data["card_token"][:50]))


def test_partly_labelled_day_is_not_matured_and_writes_nothing(settings: Settings, lake: Lake) -> None:
    data = scored_day(tag="part")
    publish_predictions(lake, DAY, data)
    publish_labels(lake, DAY, data, share=0.9)

    result = realized_quality(settings, DAY, lake)

    assert result == {"day": DAY.isoformat(), "status": "not_matured", "labelled_share": pytest.approx(0.9)}
    assert not lake.exists(summary_key(lake, DAY))


def test_day_without_predictions_is_none(settings: Settings, lake: Lake) -> None:
    assert realized_quality(settings, DAY, lake) is None
    assert lake.list_keys(f"{REPORTS_PERFORMANCE}/") == []


def test_random_scores_fall_below_the_floor(settings: Settings, lake: Lake) -> None:
    data = scored_day(informative=False, tag="rand")
    publish_predictions(lake, DAY, data, versions=("3", "4"))
    publish_labels(lake, DAY, data)

    summary = realized_quality(settings, DAY, lake)

    assert summary is not None and summary["status"] == "computed"
    assert summary["pr_auc"] == pytest.approx(average_precision_score(data["y"], data["score"]))
    assert summary["pr_auc"] < settings.promotion_floor and summary["below_floor"] is True
    assert summary["model_versions"] == ["3", "4"] and summary["model_version"] is None
    note = below_floor_check(summary)
    assert note is not None and note.severity == "warning" and DAY.isoformat() in note.subject


def test_single_class_day_has_no_ranking_metrics(settings: Settings, lake: Lake) -> None:
    data = scored_day(frauds=0, tag="legit")
    publish_predictions(lake, DAY, data)
    publish_labels(lake, DAY, data)

    summary = realized_quality(settings, DAY, lake)

    assert summary is not None and summary["status"] == "computed" and summary["frauds"] == 0
    assert summary["pr_auc"] is None and summary["roc_auc"] is None and summary["below_floor"] is False
    assert summary["precision"] == 0.0 and summary["recall"] == 0.0 and summary["alert_rate"] > 0


def test_matured_scored_days(settings: Settings, lake: Lake) -> None:
    today = date(2024, 3, 20)  # label_delay_days = 7: days up to 2024-03-13 have matured
    days = [date(2024, 3, d) for d in (10, 11, 12, 13, 14, 19)]
    for index, day in enumerate(days):
        publish_predictions(lake, day, scored_day(n=200, frauds=4, tag=f"m{index}"))
    lake.put_report(REPORTS_PERFORMANCE, date(2024, 3, 11), "summary.json", "{}")  # already evaluated
    lake.put_report(REPORTS_PERFORMANCE, date(2024, 3, 12), "report.html", "<html/>")  # not a summary

    assert matured_scored_days(settings, today, lake) == [date(2024, 3, 10), date(2024, 3, 12), date(2024, 3, 13)]
    assert matured_scored_days(replace(settings, label_delay_days=0), today, lake) == [
        date(2024, 3, d) for d in (10, 12, 13, 14, 19)
    ]
    assert matured_scored_days(settings, date(2024, 3, 17), lake) == [date(2024, 3, 10)]
    assert matured_scored_days(settings, date(2024, 3, 16), lake) == []
    # the look-back: label_window_days before the cutoff, that day included (the listing does not grow)
    window = replace(settings, dedup_lookback_days=2, label_delay_days=7)  # label_window_days = 9
    assert window.label_window_days == 9
    assert matured_scored_days(window, date(2024, 3, 26), lake) == [date(2024, 3, d) for d in (10, 12, 13, 14, 19)]
    assert matured_scored_days(window, date(2024, 3, 27), lake) == [date(2024, 3, d) for d in (12, 13, 14, 19)]


def test_a_day_scored_by_a_model_fitted_on_it_is_not_measured(settings: Settings, lake: Lake) -> None:
    data = scored_day(tag="insample")
    publish_predictions(lake, DAY, data, fitted_through=DAY.isoformat())
    publish_labels(lake, DAY, data)
    summary = realized_quality(settings, DAY, lake)
    assert summary["status"] == "in_sample" and summary["model_fitted_through"] == DAY.isoformat()
    assert "pr_auc" not in summary
    assert lake.get_json(summary_key(lake, DAY))["status"] == "in_sample"  # written: the day is not offered again
    later = DAY + timedelta(days=1)  # scored by a model fitted through the day before: measured
    other = scored_day(tag="outofsample")
    publish_predictions(lake, later, other, fitted_through=DAY.isoformat())
    publish_labels(lake, later, other)
    assert realized_quality(settings, later, lake)["status"] == "computed"


def performance(day: int, version: str, pr_auc: float | None, status: str = "computed") -> dict:
    return {"day": f"2026-01-{day:02d}", "status": status, "pr_auc": pr_auc, "model_version": version,
            "labels_through": f"2026-01-{day + 1:02d}"}  # fmt: skip


def judge(summaries: list[dict], reference: float | None = 0.8, **kw) -> dict:
    options = {"window_days": 3, "floor": 0.5, "tolerance": 0.1, "today": date(2026, 1, 20), **kw}
    return judge_performance(summaries, "2", reference, **options)


def test_the_champion_is_judged_on_its_own_newest_matured_days() -> None:
    newest_first = [performance(9, "2", 0.60), performance(8, "2", 0.65), performance(7, "2", 0.70),
                    performance(6, "2", 0.95), performance(5, "1", 0.10)]  # fmt: skip
    status = judge(newest_first)
    assert status["status"] == "computed" and status["days"] == ["2026-01-07", "2026-01-08", "2026-01-09"]
    assert status["pr_auc"] == pytest.approx(0.65)
    assert status["degraded"] and "below its evidence 0.800" in status["reason"]
    assert status["dt"] == "2026-01-10"  # as of the newest labels it read
    assert not judge(newest_first, reference=0.7)["degraded"]  # within the tolerance of its evidence
    assert judge(newest_first, reference=None, floor=0.7)["reason"] == "below the floor 0.700"


def test_days_of_other_versions_and_unmeasured_days_never_count() -> None:
    # after a promotion, the days the previous champion scored badly mature: they do not accuse version 2
    summaries = [
        performance(9, "2", 0.75),
        performance(8, "1", 0.20),
        performance(7, "1", 0.20),
        performance(6, "2", None),
        performance(5, "2", None, status="in_sample"),
        performance(4, "2", 0.8),
    ]
    status = judge(summaries)
    assert status["status"] == "too_few_days" and status["days"] == ["2026-01-04", "2026-01-09"]
    assert status["degraded"] is False
    assert judge(summaries, window_days=2)["pr_auc"] == pytest.approx(0.775)


def test_a_degraded_champion_triggers_once_per_newly_matured_day(monkeypatch: pytest.MonkeyPatch) -> None:
    from training_lib.monitoring import performance as monitoring

    settings = load_settings({})
    status = judge([performance(9, "2", 0.5), performance(8, "2", 0.5), performance(7, "2", 0.5)])
    monkeypatch.setattr(monitoring, "champion_performance", lambda *_args: status)
    today = date(2026, 1, 10)
    extra, notification, why = monitoring.performance_trigger(settings, today, ["2026-01-09"])
    assert extra == {"dt": "2026-01-10", "reason": "performance", "pr_auc": 0.5, "reference": 0.8, "version": "2",
                     "days": ["2026-01-07", "2026-01-08", "2026-01-09"], "columns": []}  # fmt: skip
    assert notification.severity == "warning" and "v2" in notification.subject and "below its evidence" in why
    # the same judgement the next night, with no new matured day of version 2: no second trigger
    assert monitoring.performance_trigger(settings, today, ["2026-01-05"])[:2] == (None, None)
    assert monitoring.performance_trigger(settings, today, [])[:2] == (None, None)
    healthy = judge([performance(9, "2", 0.78), performance(8, "2", 0.8), performance(7, "2", 0.79)])
    monkeypatch.setattr(monitoring, "champion_performance", lambda *_args: healthy)
    extra, notification, why = monitoring.performance_trigger(settings, today, ["2026-01-09"])
    assert (extra, notification) == (None, None) and "within tolerance" in why
