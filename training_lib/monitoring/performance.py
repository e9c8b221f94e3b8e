"""Realized model quality: a scored day's predictions against its confirmed labels, once they matured.

Labels (chargebacks) arrive ``label_delay_days`` after the transactions. A nightly task asks
:func:`matured_scored_days` which scored days should be evaluated and runs :func:`realized_quality` on
each: the day's ``predictions/dt=D`` joined with the label store, metrics of the stored alert decision and
of the score, written to ``reports/performance/dt=D/summary.json`` (aggregates only: no card tokens and
no transaction ids). A day whose labels are not yet matured writes nothing and is offered again the next
night. :func:`below_floor_check` turns a summary whose PR-AUC fell under the promotion floor into a
notification (see :mod:`training_lib.notify`).

:func:`champion_performance` judges the champion on its own matured days: the mean realized PR-AUC of the
newest ``FRAUD_PERFORMANCE_WINDOW_DAYS`` days it scored, against the floor and against its evidence (the
``test_pr_auc`` of its evaluation fit) minus ``FRAUD_PERFORMANCE_TOLERANCE``. Days scored by another version
never count, so the days an old champion scored badly, maturing after a promotion, do not accuse the new one.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from training_lib.config import Settings
from training_lib.lake.layout import LABELS, PREDICTIONS, REPORTS_PERFORMANCE
from training_lib.lake.storage import Lake
from training_lib.modeling.dataset import MATURED_LABEL_SHARE, labels_of_days
from training_lib.modeling.fitting import evaluate
from training_lib.notify import Notification

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

SUMMARY_NAME = "summary.json"
PREDICTION_COLUMNS = ("trans_num", "card_token", "score", "decision", "model_name", "model_version")


def _decision_metrics(y: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of the stored alert decision (0 when undefined, as in ``train.evaluate``)."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    return {
        "precision": float(precision_score(y, flagged, zero_division=0)),
        "recall": float(recall_score(y, flagged, zero_division=0)),
        "f1": float(f1_score(y, flagged, zero_division=0)),
    }


def _ranking_metrics(y: np.ndarray, scores: np.ndarray, alert_budget: float, cards: np.ndarray) -> dict[str, Any]:
    """PR-AUC, ROC-AUC, recall at the alert budget and card precision@100 of the score (``train.evaluate``).

    All ``None`` when the labelled rows hold a single class: the curves are undefined then.
    """
    names = ("pr_auc", "roc_auc", "recall_at_alert_budget", "card_precision_at_100")
    if len(set(y.tolist())) < 2:
        return dict.fromkeys(names)
    metrics = evaluate(y, scores, threshold=0.5, alert_budget=alert_budget, cards=cards)  # threshold unused here
    return {name: metrics[name] for name in names}


def summary_key(lake: Lake, day: date) -> str:
    """``reports/performance/dt=D/summary.json``."""
    return lake.report_key(REPORTS_PERFORMANCE, day, SUMMARY_NAME)


def measure_quality(predictions: pd.DataFrame, label: pd.Series, alert_budget: int, floor: float) -> dict[str, Any]:
    """The realized-quality metrics of one scored day (pure): ``predictions`` rows, ``label`` per row (NaN where
    not confirmed yet). Decision metrics over the labelled rows use the stored ``decision``; ``alert_rate`` is
    over all predictions; ``below_floor`` compares PR-AUC with the promotion ``floor``."""
    import numpy as np

    known = label.notna().to_numpy()
    labelled = predictions[known]
    y = label[known].astype("int64").to_numpy()
    scores = labelled["score"].astype("float64").to_numpy()
    flagged = (labelled["decision"].astype("int64").to_numpy() == 1).astype("int64")
    cards = labelled["card_token"].astype(str).to_numpy() if "card_token" in labelled else np.arange(len(y))
    ranking = _ranking_metrics(y, scores, alert_budget, cards)
    versions = (
        sorted(predictions["model_version"].dropna().astype(str).unique()) if "model_version" in predictions else []
    )
    names = sorted(predictions["model_name"].dropna().astype(str).unique()) if "model_name" in predictions else []
    return {
        "status": "computed",
        "labelled_rows": len(y),
        "labelled_share": float(known.mean()),
        "frauds": int(y.sum()),
        "alerts": int((predictions["decision"].astype("int64") == 1).sum()),
        "alert_rate": float((predictions["decision"].astype("int64") == 1).mean()),
        **_decision_metrics(y, flagged),
        **ranking,
        "promotion_floor": floor,
        "below_floor": ranking["pr_auc"] is not None and ranking["pr_auc"] < floor,
        "model_names": names,
        "model_versions": versions,
        "model_version": versions[0] if len(versions) == 1 else None,
    }


def realized_quality(settings: Settings, day: date, lake: Lake | None = None) -> dict[str, Any] | None:
    """Realized quality of ``day``'s predictions against their confirmed labels; written to the lake when matured.

    A day's labels are in the label partitions ``day`` .. ``day + label_window_days - 1`` (ingestion accepts
    no other), so only those are listed and read, and ``labels_through`` is the newest of them.

    ``None`` when the day has no predictions partition. ``"status": "in_sample"`` (written, nothing measured)
    when the model that scored the day was fitted on it (a day re-scored after a newer champion learned it):
    a metric on rows a model was fitted on is no evidence. ``{"day", "status": "not_matured", "labelled_share"}``
    (nothing written) when fewer than ``MATURED_LABEL_SHARE`` of the predictions have a label. Otherwise the
    summary (``"status": "computed"``, or ``"empty"`` for a published day without rows) is written to
    ``reports/performance/dt=D/summary.json`` and returned. Decision metrics use the stored ``decision``
    column (the alerts actually raised); PR-AUC/ROC-AUC are ``None`` unless both classes are labelled.
    Metrics are over the labelled rows; ``alert_rate`` is over all predictions of the day.
    """

    lake = lake or Lake(settings)
    manifest = lake.partition_manifest(PREDICTIONS, day)
    if manifest is None:
        return None
    rows = int(manifest["rows"])
    last_label_day = day + timedelta(days=settings.label_window_days - 1)
    label_days = [d for d in lake.list_partitions(LABELS, since=day) if d <= last_label_day]
    base: dict[str, Any] = {
        "day": day.isoformat(),
        "rows": rows,
        "labels_through": label_days[-1].isoformat() if label_days else None,
        "predictions_version": manifest.get("version"),
    }
    fitted_through = (manifest.get("metadata") or {}).get("model_fitted_through")
    if fitted_through is not None and fitted_through >= day.isoformat():
        summary = {**base, "status": "in_sample", "model_fitted_through": fitted_through, "evaluated_at": _now()}
        lake.put_report(REPORTS_PERFORMANCE, day, SUMMARY_NAME, json.dumps(summary, indent=2))
        log.warning("realized quality %s: the scoring model was fitted on this day (through %s): not measured",
                    day, fitted_through)  # fmt: skip
        return summary
    if rows == 0:
        summary = {**base, "status": "empty", "labelled_share": None, "evaluated_at": _now()}
        lake.put_report(REPORTS_PERFORMANCE, day, SUMMARY_NAME, json.dumps(summary, indent=2))
        log.info("realized quality %s: no predictions in the partition", day)
        return summary

    available = set(manifest.get("columns", PREDICTION_COLUMNS))
    columns = [c for c in PREDICTION_COLUMNS if c in available]
    predictions = lake.read_partition(PREDICTIONS, day, columns=columns).to_pandas()
    labels = labels_of_days(lake, label_days)  # the read does not grow with the lake
    label = predictions["trans_num"].astype(str).map(labels.set_index(labels["trans_num"].astype(str))["is_fraud"])
    known = label.notna().to_numpy()
    share = float(known.mean())
    if share < MATURED_LABEL_SHARE:
        log.info("realized quality %s: %.1f%% labelled, not matured yet", day, 100 * share)
        return {"day": day.isoformat(), "status": "not_matured", "labelled_share": share}

    if predictions["score"].isna().any() or predictions["decision"].isna().any():
        raise ValueError(f"{lake.uri(lake.manifest_key(PREDICTIONS, day))}: score/decision hold missing values")
    summary = {**base, **measure_quality(predictions, label, settings.alert_budget, settings.promotion_floor)}
    summary["evaluated_at"] = _now()
    lake.put_report(REPORTS_PERFORMANCE, day, SUMMARY_NAME, json.dumps(summary, indent=2))
    log.info(
        "realized quality %s: PR-AUC %s, precision %.3f, recall %.3f over %d labelled rows (%d frauds)",
        day,
        "n/a" if summary["pr_auc"] is None else f"{summary['pr_auc']:.3f}",
        summary["precision"],
        summary["recall"],
        summary["labelled_rows"],
        summary["frauds"],
    )
    return summary


def matured_scored_days(settings: Settings, today: date, lake: Lake | None = None) -> list[date]:
    """Scored days up to ``today - label_delay_days`` that have no performance summary yet (oldest first).

    Looks back ``label_window_days`` from there (the longest a label can come late): each night catches up
    on the days a failed night left, and the listing does not grow with the lake. An older scored day is
    measured by a run of a day inside its window (a backfill of that period does so).
    """
    lake = lake or Lake(settings)
    cutoff = today - timedelta(days=settings.label_delay_days)
    since = cutoff - timedelta(days=settings.label_window_days)
    done = set(lake.list_keys(f"{REPORTS_PERFORMANCE}/dt=", start_after=f"{REPORTS_PERFORMANCE}/dt={since}"))
    scored = lake.list_partitions(PREDICTIONS, since=since)
    return [day for day in scored if day <= cutoff and summary_key(lake, day) not in done]


def below_floor_check(summary: dict[str, Any] | None) -> Notification | None:
    """A warning when a computed summary's realized PR-AUC is under the promotion floor, else ``None``."""
    if not summary or summary.get("status") != "computed" or not summary.get("below_floor"):
        return None
    day, versions = summary["day"], ", ".join(summary.get("model_versions") or []) or "?"
    return Notification(
        subject=f"Realized PR-AUC {summary['pr_auc']:.3f} on {day} is below the promotion floor",
        body=(
            f"Model version(s) {versions} reached PR-AUC {summary['pr_auc']:.3f} on the matured labels of {day} "
            f"(floor {summary['promotion_floor']:.3f}); precision {summary['precision']:.3f}, recall "
            f"{summary['recall']:.3f} at the stored decisions over {summary['labelled_rows']} labelled rows. "
            "Consider retraining."
        ),
        severity="warning",
        details={
            "check": "realized_quality",
            **{k: summary.get(k) for k in ("day", "pr_auc", "promotion_floor", "precision", "recall", "frauds")},
            "model_versions": summary.get("model_versions"),
        },
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def judge_performance(
    summaries: list[dict[str, Any]],
    version: str,
    reference: float | None,
    *,
    window_days: int,
    floor: float,
    tolerance: float,
    today: date,
) -> dict[str, Any]:
    """Pure: the judgement of :func:`champion_performance` on performance ``summaries`` (newest first).

    Only computed summaries of ``version`` count; its newest ``window_days`` of them are averaged."""
    picked = [
        s for s in summaries if s.get("status") == "computed" and s.get("pr_auc") is not None
        and s.get("model_version") == version
    ][:window_days]  # fmt: skip
    base: dict[str, Any] = {
        "version": version,
        "reference": reference,
        "days": sorted(s["day"] for s in picked),
        "window_days": window_days,
    }
    if len(picked) < window_days:
        return {**base, "status": "too_few_days", "degraded": False}
    pr_auc = sum(s["pr_auc"] for s in picked) / len(picked)
    reasons = []
    if pr_auc < floor:
        reasons.append(f"below the floor {floor:.3f}")
    if reference is not None and pr_auc < reference - tolerance:
        reasons.append(f"more than {tolerance:.2f} below its evidence {reference:.3f}")
    labels_through = max(s.get("labels_through") or s["day"] for s in picked)
    return {
        **base,
        "status": "computed",
        "pr_auc": pr_auc,
        "degraded": bool(reasons),
        "reason": "; ".join(reasons),
        "dt": min(labels_through, today.isoformat()),
    }


def champion_performance(settings: Settings, today: date, lake: Lake | None = None) -> dict[str, Any] | None:
    """The champion's realized quality on its newest matured scored days (up to ``today``); None without one.

    ``status``: ``too_few_days`` until ``FRAUD_PERFORMANCE_WINDOW_DAYS`` of its days matured, else ``computed``
    with ``pr_auc`` (mean over those days), ``reference`` (its evidence), ``degraded`` and ``reason``.
    ``dt`` is the day of data the judgement is as of (the newest labels it read), for the retrain it triggers.
    """
    from training_lib.modeling.registry import Registry

    lake = lake or Lake(settings)
    champion = Registry(settings, lake=lake).champion()
    if champion is None:
        return None
    wanted = settings.performance_window_days
    reference_tag = (champion.tags or {}).get("test_pr_auc")
    days = [day for day in reversed(lake.list_days(REPORTS_PERFORMANCE)) if day <= today]
    # the champion's days are the newest ones: look no further back than a few windows
    summaries = [lake.get_json(summary_key(lake, day), missing_ok=True) or {} for day in days[: 4 * wanted]]
    return judge_performance(
        summaries,
        champion.version,
        float(reference_tag) if reference_tag else None,
        window_days=wanted,
        floor=settings.promotion_floor,
        tolerance=settings.performance_tolerance,
        today=today,
    )


def degraded_check(status: dict[str, Any] | None) -> Notification | None:
    """A warning when the champion's realized quality is degraded, else ``None``."""
    if not status or not status.get("degraded"):
        return None
    days = status["days"]
    return Notification(
        subject=f"Champion v{status['version']} realized PR-AUC {status['pr_auc']:.3f} on {days[0]}..{days[-1]}",
        body=(
            f"Over its newest {len(days)} matured scored days the champion (version {status['version']}) reached a "
            f"mean PR-AUC of {status['pr_auc']:.3f}: {status['reason']}. A retrain is triggered (drift_detected, "
            "reason performance)."
        ),
        severity="warning",
        details={
            "check": "champion_performance",
            **{k: status.get(k) for k in ("version", "pr_auc", "reference", "days")},
        },
    )


def performance_trigger(
    settings: Settings, today: date, newly_computed: list[str], lake: Lake | None = None
) -> tuple[dict[str, Any] | None, Notification | None, str]:
    """(extra of the ``drift_detected`` event to emit, the notification to send, or None and None; why).

    Emits only when the champion is degraded and one of the days it is judged on matured in this run, so a
    judgement triggers once, not every night."""
    from training_lib.modeling.cooldown import PERFORMANCE

    status = champion_performance(settings, today, lake)
    if status is None:
        return None, None, "no champion"
    if status["status"] != "computed":
        days = len(status["days"])
        return None, None, f"only {days} of {status['window_days']} matured days scored by v{status['version']}"
    if not set(status["days"]) & set(newly_computed):
        return None, None, f"no newly matured day of v{status['version']} in this run"
    summary = f"v{status['version']} mean PR-AUC {status['pr_auc']:.3f} on {status['days'][0]}..{status['days'][-1]}"
    if not status["degraded"]:
        return None, None, f"{summary}: within tolerance of its evidence {status['reference']}"
    extra = {
        "dt": status["dt"],
        "reason": PERFORMANCE,
        "pr_auc": status["pr_auc"],
        "reference": status["reference"],
        "version": status["version"],
        "days": status["days"],
        "columns": [],
    }
    return extra, degraded_check(status), f"{summary}: {status['reason']}"
