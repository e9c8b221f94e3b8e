"""Daily data-drift report: a day's monitored columns against a reference sample, with Evidently.

:func:`run_drift_report` compares a day with the reference (both drift views of
:mod:`training_lib.modeling.reference`: model features only, never identifying columns) and returns
Evidently's HTML and a JSON-serialisable summary whose numbers are read from the Evidently snapshot.

Both sides are sampled uniformly and deterministically to at most ``max_rows`` rows, so a day of a
million transactions takes seconds. Methods are fixed (normed Wasserstein for numeric columns,
Jensen-Shannon for categorical ones, Evidently's default threshold 0.1) rather than left to
Evidently's size-dependent choice, so that scores are comparable from day to day. A column with no
value on either side cannot be compared (Evidently raises on it): it is left out of the Evidently run
and reported as not computed. ``import evidently`` takes seconds: it happens inside
:func:`run_drift_report` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from training_lib.modeling.reference import (
    DEFAULT_MAX_ROWS,
    DRIFT_CATEGORICAL_COLUMNS,
    DRIFT_COLUMNS,
    DRIFT_NUMERIC_COLUMNS,
    as_drift_view,
    sample_rows,
)

if TYPE_CHECKING:
    import pandas as pd

NUMERIC_METHOD = "wasserstein"  # Evidently's normed Wasserstein distance: drift when score >= threshold
CATEGORICAL_METHOD = "jensenshannon"  # Jensen-Shannon distance: drift when score >= threshold
# Evidently sums a categorical distance in set order, which follows Python's per-process hash seed: the
# last digits of a score change from one process to the next. Scores are reported to 10 significant digits.
SCORE_SIGNIFICANT_DIGITS = 10

_DRIFTED_COLUMNS_COUNT = "evidently:metric_v2:DriftedColumnsCount"
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"


@dataclass(frozen=True)
class DriftResult:
    """Evidently's HTML report (UTF-8) and the JSON-serialisable summary described in :func:`run_drift_report`."""

    html: bytes
    summary: dict[str, Any]

    @property
    def drift_detected(self) -> bool:
        return bool(self.summary["drift_detected"])


def _prepare(frame: pd.DataFrame, side: str, max_rows: int, seed: int) -> pd.DataFrame:
    """Sample first (cheap on the canonical columns too), then turn into a drift view."""
    if len(frame) == 0:
        raise ValueError(f"run_drift_report: the {side} data is empty (0 rows)")
    return as_drift_view(sample_rows(frame, max_rows, seed))


def _not_computed_reason(current: pd.DataFrame, reference: pd.DataFrame, column: str) -> str | None:
    empty_sides = [
        side for side, frame in (("current", current), ("reference", reference)) if frame[column].isna().all()
    ]
    if not empty_sides:
        return None
    return f"no values in the {' and '.join(empty_sides)} data"


def _significant(value: float) -> float:
    return float(f"{value:.{SCORE_SIGNIFICANT_DIGITS}g}")


def _read_snapshot(snapshot_dict: dict[str, Any]) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """(DriftedColumnsCount value, {column: score/method/threshold/drifted}) from ``Snapshot.dict()``."""
    drifted_count: dict[str, float] | None = None
    columns: dict[str, dict[str, Any]] = {}
    for metric in snapshot_dict["metrics"]:
        config = metric.get("config", {})
        if config.get("type") == _DRIFTED_COLUMNS_COUNT:
            drifted_count = {"count": float(metric["value"]["count"]), "share": float(metric["value"]["share"])}
        elif config.get("type") == _VALUE_DRIFT:
            columns[config["column"]] = {
                "score": _significant(float(metric["value"])),
                "method": config.get("method"),
                "threshold": None if config.get("threshold") is None else float(config["threshold"]),
                "drifted": None,
            }
    # The per-column verdict is the status of ValueDrift's test: FAIL when Evidently detects drift
    # (score >= threshold for distances, p-value < threshold for statistical tests).
    for test in snapshot_dict["tests"]:
        params = (test.get("metric_config") or {}).get("params", {})
        if params.get("type") == _VALUE_DRIFT and params.get("column") in columns:
            columns[params["column"]]["drifted"] = test["status"] == "FAIL"
    if drifted_count is None:
        raise RuntimeError("the Evidently snapshot has no DriftedColumnsCount result")
    undecided = [name for name, info in columns.items() if info["drifted"] is None]
    if undecided:
        raise RuntimeError(f"the Evidently snapshot has no drift test result for column(s) {undecided}")
    return drifted_count, columns


def _evidently_version() -> str:
    import evidently

    return evidently.__version__


def _evidently_snapshot(
    current: pd.DataFrame, reference: pd.DataFrame, numeric: list[str], categorical: list[str], threshold: float
) -> Any:
    """Evidently's DataDriftPreset over the computable columns (its per-column tests included)."""
    computed = numeric + categorical
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    report = Report(
        [
            DataDriftPreset(
                columns=computed,
                drift_share=threshold,
                num_method=NUMERIC_METHOD,
                cat_method=CATEGORICAL_METHOD,
            )
        ],
        include_tests=True,  # ValueDrift's test carries Evidently's per-column drift verdict
    )
    return report.run(
        Dataset.from_pandas(current[computed], data_definition=definition),
        Dataset.from_pandas(reference[computed], data_definition=definition),
    )


def run_drift_report(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    threshold: float,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
    day: date | None = None,
) -> DriftResult:
    """Compare ``current`` with ``reference`` (drift views or validated transactions) with Evidently.

    ``threshold`` is the share of drifted monitored columns that counts as data drift
    (``Settings.drift_threshold``). The summary holds ``day``, ``threshold``, ``share``,
    ``drift_detected`` (``share >= threshold``), ``drifted_columns``, ``columns`` (per column: score,
    method, threshold, drifted; all None when not computed), ``columns_not_computed`` ({column:
    reason}), the row counts before and after sampling and ``evidently_version``.

    ``share`` is Evidently's share of drifted columns among the columns it compared: drifted / monitored
    when every monitored column has values on both sides, drifted / computable otherwise.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a share of columns between 0 and 1, got {threshold}")
    current_view = _prepare(current, "current", max_rows, seed)
    reference_view = _prepare(reference, "reference", max_rows, seed)

    not_computed = {
        column: reason
        for column in DRIFT_COLUMNS
        if (reason := _not_computed_reason(current_view, reference_view, column)) is not None
    }
    numeric = [c for c in DRIFT_NUMERIC_COLUMNS if c not in not_computed]
    categorical = [c for c in DRIFT_CATEGORICAL_COLUMNS if c not in not_computed]
    computed = numeric + categorical
    if not computed:
        raise ValueError(f"run_drift_report: no monitored column can be compared: {not_computed}")

    snapshot = _evidently_snapshot(current_view, reference_view, numeric, categorical, threshold)
    drifted_count, computed_columns = _read_snapshot(snapshot.dict())

    empty_entry = {"score": None, "method": None, "threshold": None, "drifted": None}
    columns = {name: computed_columns.get(name, dict(empty_entry)) for name in DRIFT_COLUMNS}
    drifted_columns = [name for name in DRIFT_COLUMNS if columns[name]["drifted"]]
    if len(drifted_columns) != int(drifted_count["count"]):
        raise RuntimeError(
            f"Evidently's DriftedColumnsCount ({drifted_count['count']}) disagrees with its per-column "
            f"results {drifted_columns}"
        )
    share = drifted_count["share"]
    summary: dict[str, Any] = {
        "day": None if day is None else day.isoformat(),
        "threshold": float(threshold),
        "share": share,
        "drift_detected": share >= threshold,
        "drifted_columns": drifted_columns,
        "columns": columns,
        "columns_not_computed": not_computed,
        "rows_current": len(current),
        "rows_reference": len(reference),
        "rows_sampled_current": len(current_view),
        "rows_sampled_reference": len(reference_view),
        "evidently_version": _evidently_version(),
    }
    html = snapshot.get_html_str(as_iframe=False).encode("utf-8")
    return DriftResult(html=html, summary=summary)
