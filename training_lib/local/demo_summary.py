"""What a demo run amounts to, read from its summary (pure): the recovery after the fraud change, each
promotion and rejection in words, and the printed summary."""

from __future__ import annotations

import math
from datetime import date
from typing import Any


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def recovery(days: list[dict[str, Any]], registry: list[dict[str, Any]], change: date) -> dict[str, Any]:
    """Realized PR-AUC before the change, on the broken days, and after the promotion that healed it.

    The healing promotion is the first one whose data day is on or after the change. Broken days: days from
    the change on that a champion from before that promotion scored; healed days: days scored by it or by a
    later champion. Only days whose labels matured (realized PR-AUC computed) count."""
    promotions = [e for e in registry if e["kind"] == "promotion"]
    healing = next(
        (e for e in promotions if ((e.get("evaluation") or {}).get("data_day") or "") >= change.isoformat()), None
    )
    later = {e["champion_version"] for e in promotions[promotions.index(healing) :]} if healing else set()
    measured = [d for d in days if d["realized_pr_auc"] is not None and d["scored_by_version"]]
    before = [d for d in measured if d["day"] < change.isoformat()]
    broken = [d for d in measured if d["day"] >= change.isoformat() and d["scored_by_version"] not in later]
    healed = [d for d in measured if d["scored_by_version"] in later]
    return {
        "change_day": change.isoformat(),
        "promotion": None
        if healing is None
        else {
            "version": healing["champion_version"],
            "previous": healing.get("previous_champion_version"),
            "data_day": healing["evaluation"].get("data_day"),
            "trigger": healing["evaluation"].get("trigger"),
            "challenger_pr_auc": healing.get("challenger_pr_auc"),
            "champion_pr_auc": healing.get("champion_pr_auc"),
        },
        "before": {"days": [d["day"] for d in before], "mean_pr_auc": _mean([d["realized_pr_auc"] for d in before])},
        "broken": {"days": [d["day"] for d in broken], "mean_pr_auc": _mean([d["realized_pr_auc"] for d in broken])},
        "healed": {"days": [d["day"] for d in healed], "mean_pr_auc": _mean([d["realized_pr_auc"] for d in healed])},
    }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def describe_decision(entry: dict[str, Any]) -> str:
    challenger, champion = _number(entry.get("challenger_pr_auc")), _number(entry.get("champion_pr_auc"))
    verb = "promoted" if entry["kind"] == "promotion" else "rejected"
    scores = f"PR-AUC {challenger:.3f}" if challenger is not None else "no PR-AUC"
    if champion is not None:
        scores += f" vs champion v{entry['previous_champion_version']} {champion:.3f}"
    elif entry.get("previous_champion_version"):
        scores += f"; {entry.get('reason', '')}"
    window = (entry.get("evaluation") or {}).get("window")
    return f"v{entry['candidate_version']} {verb} ({scores}{f' on {window}' if window else ''})"


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as the text the demo prints at the end."""
    days = summary["days"]
    lines = [
        "",
        f"== Demo summary: {len(days)} days replayed in {summary['seconds'] / 60:.1f} min",
        "",
        f"{'day':<12}{'rows':>7}{'valid':>7}{'quar.':>6}  {'drift':<12}{'labels':>7}{'preds':>7}  {'model':<6}"
        f"{'PR-AUC':>7}",
    ]
    for d in days:
        drift = (
            "—" if d["drift_share"] is None else f"{d['drift_share']:.2f}" + (" DRIFT" if d["drift_detected"] else "")
        )
        model = f"v{d['scored_by_version']}" if d["scored_by_version"] else "—"
        realized = "" if d.get("realized_pr_auc") is None else f"{d['realized_pr_auc']:.2f}"
        lines.append(
            f"{d['day']:<12}{d['rows_in']:>7,}{d['validated']:>7,}{d['quarantined']:>6,}  {drift:<12}"
            f"{d['labels']:>7,}{d['predictions']:>7,}  {model:<6}{realized:>7}"
        )
    total_in = sum(d["rows_in"] for d in days)
    quarantined = sum(d["quarantined"] for d in days)
    lines += [
        "",
        f"ingested {len(days)} days: {total_in:,} rows, {total_in - quarantined:,} validated, {quarantined:,}"
        " quarantined",
    ]
    for d in days:
        if d["quarantine_reasons"]:
            reasons = ", ".join(f"{reason} ×{count}" for reason, count in d["quarantine_reasons"].items())
            lines.append(f"  quarantine {d['day']}: {reasons}")
    drift_days = [d["day"] for d in days if d["drift_detected"]]
    lines.append(f"drift days: {', '.join(drift_days) if drift_days else 'none'}")
    runs = summary["retrain_runs"]
    triggered = sum(1 for r in runs if r["run_type"] == "asset_triggered")
    lines.append(f"retrain runs: {len(runs)} ({triggered} triggered by Assets); decisions:")
    for entry in summary["registry"]:
        if entry["kind"] in {"promotion", "rejection"}:
            trigger = (entry.get("evaluation") or {}).get("trigger", "")
            lines.append(f"  {entry['at'][:19]}  {describe_decision(entry)}  ← {trigger}")
    moves = [e for e in summary["registry"] if e.get("champion_version") != e.get("previous_champion_version")]
    history = " → ".join(f"v{e['champion_version']}" for e in moves if e.get("champion_version"))
    lines.append(f"champion history: {history or 'no champion'}; champion now: v{summary['champion']}")
    scored = [d for d in days if d["predictions"]]
    lines.append(f"predictions: {len(scored)} days scored, {sum(d['predictions'] for d in scored):,} rows")
    lines += _recovery_lines(summary.get("recovery"))
    links = summary["links"]
    lines += [
        "",
        f"Airflow UI        : {links['airflow']}  (DAGs → retrain → runs; Assets → drift_detected)",
        f"MLflow UI         : {links['mlflow_model']}",
        f"latest drift report  : {links['latest_drift_report']}",
        f"latest quality report: {links['latest_quality_report']}",
    ]
    return "\n".join(line.rstrip() for line in lines)


def _recovery_lines(recovery: dict[str, Any] | None) -> list[str]:
    if not recovery:
        return []

    def part(name: str) -> str:
        stats = recovery[name]
        mean = stats["mean_pr_auc"]
        return f"{'n/a' if mean is None else f'{mean:.3f}'} ({len(stats['days'])} days)"

    promotion = recovery["promotion"]
    labels = {
        "before": "before the change",
        "broken": "broken (scored by the earlier champion)",
        "healed": f"after v{promotion['version']} was promoted" if promotion else "",
    }
    lines = ["", f"fraud changed on {recovery['change_day']} (card testing): realized PR-AUC of the scored days"]
    for name in ("before", "broken"):
        lines.append(f"  {labels[name]:<42}: {part(name)}")
    if promotion is None:
        lines.append("  no promotion after the change: the loop did not close")
        return lines
    lines.append(f"  {labels['healed']:<42}: {part('healed')}")
    lines.append(
        f"  v{promotion['version']} replaced v{promotion['previous']} on data day {promotion['data_day']},"
        f" triggered by {promotion['trigger']}"
    )
    return lines
