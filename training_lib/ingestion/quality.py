"""Great Expectations quality gate: split a day's rows into validated and quarantined, each with a reason.

The suites are files in ``include/gx/`` (run by ``ingestion.expectations``). Every row of every input file
ends up in exactly one of the two outputs (``rows_in == validated + quarantined``, ``ingestion.quarantine``);
quarantined rows keep the text they arrived with plus ``_reason`` (the failed expectations),
``_source_file`` and ``_source_line``.

GX never sees a card number or a name: name and street columns are left out of the frame it validates,
and ``cc_num`` goes in masked (every digit replaced by ``0``), which keeps the outcome of the digit/length
check identical while the Data Docs (published under ``reports/quality/``) can show no real card number.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training_lib.ingestion.expectations import HIDDEN_FROM_GX, ROW_ID, mask_card_numbers, not_null_columns, run_suite
from training_lib.ingestion.quarantine import FileReport, first_valid_copies, read_files, reason_counts, split_rows
from training_lib.ingestion.reader import read_labels, read_transactions
from training_lib.ingestion.schema import LABEL_COLUMN_NAMES, TRANSACTION_COLUMN_NAMES

if TYPE_CHECKING:
    import pandas as pd


class QualityGateError(RuntimeError):
    """Too many rows failed: the whole batch is held back (nothing published, nothing deleted)."""


@dataclass
class QualityOutcome:
    """One day's split. ``validated`` is typed (canonical schema); ``quarantined`` is text plus reasons."""

    day: date
    validated: pd.DataFrame
    quarantined: pd.DataFrame
    files: list[FileReport]
    expectation_results: list[dict[str, Any]]
    data_docs_dir: Path | None = None

    @property
    def rows_in(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def quarantine_share(self) -> float:
        return len(self.quarantined) / self.rows_in if self.rows_in else 0.0

    def summary(self, limit: float | None = None) -> dict[str, Any]:
        """JSON-serialisable counts (no row values, so no card data) for reports and XCom."""
        return {
            "day": self.day.isoformat(),
            "rows_in": self.rows_in,
            "validated": len(self.validated),
            "quarantined": len(self.quarantined),
            "quarantine_share": round(self.quarantine_share, 6),
            "quarantine_share_limit": limit,
            "reasons": dict(sorted(reason_counts(self.quarantined).items())),
            "files": [f.__dict__ for f in self.files],
            "expectations": self.expectation_results,
        }


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min)
    return start, start + timedelta(days=1) - timedelta(microseconds=1)


def validate_transactions(
    files: list[tuple[str, bytes]],
    day: date,
    earlier_trans_nums: set[str] | None = None,
    docs_dir: Path | None = None,
) -> QualityOutcome:
    """Read every landing file of ``day``, run the transactions suite, and split the rows.

    ``earlier_trans_nums`` are the trans_num values of earlier validated days (cross-day duplicates);
    within the day the first occurrence of a trans_num (in file order) is kept and later ones are
    quarantined.
    """
    import pandas as pd

    earlier = earlier_trans_nums or set()
    reports, typed, raw, quarantine_parts = read_files(files, read_transactions, TRANSACTION_COLUMN_NAMES)
    results: list[dict[str, Any]] = []
    failures: dict[int, list[str]] = {}
    if len(typed):
        gx_frame = typed.drop(columns=list(HIDDEN_FROM_GX))
        gx_frame["cc_num"] = mask_card_numbers(gx_frame["cc_num"])
        gx_frame["trans_num_seen_on_earlier_day"] = typed["trans_num"].isin(earlier).astype(bool)
        gx_frame[ROW_ID] = range(len(gx_frame))
        day_start, day_end = day_bounds(day)
        parameters = {
            "day_start": pd.Timestamp(day_start),
            "day_end": pd.Timestamp(day_end),
            "dob_min": pd.Timestamp(day_start) - pd.DateOffset(years=110),
            "dob_max": pd.Timestamp(day_start) - pd.DateOffset(years=10),
        }
        failures, results = run_suite("transactions", gx_frame, parameters, docs_dir)
        # A value that did not parse is null; where the suite requires non-null GX already names it.
        checked = not_null_columns("transactions")
        for row, parse_list in enumerate(raw["_parse_reasons"]):
            extra = [reason for reason in parse_list if reason.removesuffix(" unparseable") not in checked]
            if extra:
                failures.setdefault(row, []).extend(extra)
        # GX flags every copy of a repeated trans_num; keep the first copy that passes everything else.
        first_valid_copies(typed["trans_num"].reset_index(drop=True), failures, "trans_num repeated within the day")

    validated, quarantined = split_rows(typed, raw, failures, quarantine_parts, TRANSACTION_COLUMN_NAMES, reports)
    outcome = QualityOutcome(day, validated, quarantined, reports, results, docs_dir)
    if len(outcome.validated) + len(outcome.quarantined) != outcome.rows_in:  # pragma: no cover - invariant
        raise AssertionError(
            f"row counts do not reconcile for {day}: {outcome.rows_in} in, "
            f"{len(outcome.validated)} validated, {len(outcome.quarantined)} quarantined"
        )
    return outcome


def exceeds_quarantine_limit(outcome: QualityOutcome, limit: float) -> bool:
    """Whether the quarantined share is above ``limit`` (the day must be held back)."""
    return bool(outcome.rows_in) and outcome.quarantine_share > limit


def enforce_quarantine_limit(outcome: QualityOutcome, limit: float, quarantine_uri: str | None = None) -> None:
    """Fail loudly when the quarantined share is above ``limit``: no validated rows are published.

    ``quarantine_uri``: where the caller published the quarantined rows for inspection, named in the error.
    """
    if exceeds_quarantine_limit(outcome, limit):
        top = reason_counts(outcome.quarantined).most_common(5)
        per_file = [(f.name, f.quarantined, f.rows) for f in outcome.files if f.quarantined]
        where = f"the quarantined rows are in {quarantine_uri}" if quarantine_uri else "nothing was published"
        raise QualityGateError(
            f"{outcome.day}: {len(outcome.quarantined)} of {outcome.rows_in} rows "
            f"({outcome.quarantine_share:.1%}) failed the quality suite, above the limit of {limit:.1%}; "
            f"the day is held back: no validated rows were published, no landing file was deleted, {where}. "
            f"Most frequent reasons: {top}. Quarantined per file (file, quarantined, rows): {per_file[:10]}"
        )


@dataclass
class LabelOutcome:
    day: date
    validated: pd.DataFrame
    quarantined: pd.DataFrame
    files: list[FileReport]
    expectation_results: list[dict[str, Any]]

    @property
    def rows_in(self) -> int:
        return sum(f.rows for f in self.files)

    def summary(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "rows_in": self.rows_in,
            "validated": len(self.validated),
            "quarantined": len(self.quarantined),
            "reasons": dict(sorted(reason_counts(self.quarantined).items())),
            "files": [f.__dict__ for f in self.files],
        }


def validate_labels(
    files: list[tuple[str, bytes]],
    day: date,
    known_trans_nums: set[str],
    stored_labels: dict[str, int] | None = None,
) -> LabelOutcome:
    """Run the labels suite: known transaction, 0/1 label, confirmed on the day, no conflicting labels.

    A label conflicts when the same trans_num is labelled differently in the batch or differently from
    the label store; an identical repeat within the batch keeps its first valid copy, one identical to the
    store is quarantined (the store keeps one label per trans_num).
    """
    import pandas as pd

    stored = stored_labels or {}
    reports, typed, raw, quarantine_parts = read_files(files, read_labels, LABEL_COLUMN_NAMES)
    failures: dict[int, list[str]] = {}
    results: list[dict[str, Any]] = []
    if len(typed):
        frame = typed.copy()
        frame["trans_num_known"] = frame["trans_num"].isin(known_trans_nums).astype(bool)
        labels_per_num = frame.groupby("trans_num", dropna=True)["is_fraud"].nunique()
        conflicting_in_batch = frame["trans_num"].map(labels_per_num).fillna(0) > 1
        previous = frame["trans_num"].map(stored)
        conflicting_with_store = previous.notna() & frame["is_fraud"].notna() & (previous != frame["is_fraud"])
        frame["label_conflict"] = (conflicting_in_batch | conflicting_with_store).astype(bool)
        already = previous.notna() & frame["is_fraud"].notna() & (previous == frame["is_fraud"])
        frame["label_already_stored"] = already.astype(bool)  # one row per trans_num in the store
        frame[ROW_ID] = range(len(frame))
        day_start, day_end = day_bounds(day)
        failures, results = run_suite(
            "labels", frame, {"day_start": pd.Timestamp(day_start), "day_end": pd.Timestamp(day_end)}, None
        )
        repeated = "label repeated within the day"
        repeat = frame["trans_num"].duplicated(keep=False) & frame["trans_num"].notna() & ~frame["label_conflict"]
        for row in repeat[repeat].index:
            failures.setdefault(int(row), []).append(repeated)
        first_valid_copies(frame["trans_num"].reset_index(drop=True), failures, repeated)
    validated, quarantined = split_rows(typed, raw, failures, quarantine_parts, LABEL_COLUMN_NAMES, reports)
    outcome = LabelOutcome(day, validated, quarantined, reports, results)
    if len(validated) + len(quarantined) != outcome.rows_in:  # pragma: no cover - invariant
        raise AssertionError(f"label counts do not reconcile for {day}")
    return outcome
