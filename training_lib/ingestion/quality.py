"""Great Expectations quality gate: split a day's rows into validated and quarantined, each with a reason.

The suites are files in ``include/gx/``. Every row of every input file ends up in exactly one of the two
outputs (``rows_in == validated + quarantined``), quarantined rows keep the text they arrived with plus
``_reason`` (the failed expectations), ``_source_file`` and ``_source_line``.

GX never sees a card number or a name: name and street columns are left out of the frame it validates,
and ``cc_num`` goes in masked (every digit replaced by ``0``), which keeps the outcome of the digit/length
check identical while the Data Docs (published under ``reports/quality/``) can show no real card number.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training_lib.config import PROJECT_ROOT
from training_lib.ingestion.schema import (
    LABEL_COLUMN_NAMES,
    TRANSACTION_COLUMN_NAMES,
    SchemaError,
    read_labels,
    read_transactions,
    text_lines,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

SUITE_DIR = PROJECT_ROOT / "include" / "gx"
ROW_ID = "_row"
REASON = "_reason"
SOURCE_FILE = "_source_file"
SOURCE_LINE = "_source_line"
RAW_LINE = "_raw_line"
HIDDEN_FROM_GX = ("first", "last", "street")  # never handed to GX, so never in Data Docs
DATA_DOCS_SKIP = ("static/fonts/",)


class QualityGateError(RuntimeError):
    """Too many rows failed: the whole batch is held back (nothing published, nothing deleted)."""


def reason_counts(quarantined: pd.DataFrame) -> Counter[str]:
    """How often each failed expectation (``_reason`` parts) occurs among quarantined rows."""
    counts: Counter[str] = Counter()
    for reason in quarantined[REASON] if len(quarantined) else []:
        counts.update(part for part in reason.split("; ") if part)
    return counts


@dataclass
class FileReport:
    """One input file: its data rows (``rows == validated + quarantined``) and what was odd about it."""

    name: str
    rows: int
    rejected_lines: int = 0
    extra_columns: list[str] = field(default_factory=list)
    delimiter: str = ","
    error: str | None = None  # the whole file was quarantined, for this reason
    validated: int = 0
    quarantined: int = 0


def _count_per_file(reports: list[FileReport], validated_sources: pd.Series, quarantined: pd.DataFrame) -> None:
    """Fill each report's validated/quarantined counts, check they add up to its rows, and log them."""
    kept = validated_sources.value_counts().to_dict()
    held = quarantined[SOURCE_FILE].value_counts().to_dict() if len(quarantined) else {}
    for report in reports:
        report.validated = int(kept.get(report.name, 0))
        report.quarantined = int(held.get(report.name, 0))
        if report.validated + report.quarantined != report.rows:  # pragma: no cover - invariant
            raise AssertionError(
                f"{report.name}: {report.rows} rows read, {report.validated} validated, "
                f"{report.quarantined} quarantined: the counts do not reconcile"
            )
        log.info(
            "%s: %d row(s), %d validated, %d quarantined%s",
            report.name,
            report.rows,
            report.validated,
            report.quarantined,
            f" (whole file: {report.error})" if report.error else "",
        )


def _first_valid_copies(keys: pd.Series, failures: dict[int, list[str]], repeated: str) -> None:
    """Keep one copy of each repeated key: the first that passes every other check (a corrected resend
    after a bad first copy is accepted); ``repeated`` stays the reason of the other copies."""
    otherwise_bad = {row for row, reasons in failures.items() if any(r != repeated for r in reasons)}
    candidates = keys[[row not in otherwise_bad for row in range(len(keys))]]
    kept = set(candidates[~candidates.duplicated(keep="first") & candidates.notna()].index)
    kept_keys = set(keys[list(kept)]) if kept else set()
    for row, reasons in list(failures.items()):
        if repeated not in reasons:
            continue
        if row in kept or (row in otherwise_bad and keys.iat[row] not in kept_keys):
            reasons.remove(repeated)  # not a repeat of anything accepted
        if not reasons:
            del failures[row]


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


# --------------------------------------------------------------------------- GX plumbing


def load_suite(name: str) -> dict[str, Any]:
    """The suite definition ``include/gx/<name>_suite.json`` as a dict."""
    path = SUITE_DIR / f"{name}_suite.json"
    return json.loads(path.read_text())


def _run_suite(
    suite_name: str, frame: pd.DataFrame, parameters: dict[str, Any], docs_dir: Path | None
) -> tuple[dict[int, list[str]], list[dict[str, Any]]]:
    """Validate ``frame`` (with a ``_row`` column) against a suite file.

    Returns row id -> failed reasons, and one compact result per expectation. When ``docs_dir`` is
    given, GX Data Docs for this validation are built there.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("lake")
        .add_dataframe_asset(suite_name)
        .add_batch_definition_whole_dataframe(f"{suite_name}-day")
    )
    suite = context.suites.add(gx.ExpectationSuite(**load_suite(suite_name)))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=suite_name, data=batch, suite=suite))
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_ID]}
    actions = []
    if docs_dir is not None:
        context.update_data_docs_site(
            "local_site",
            {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs"))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{suite_name}-checkpoint",
            validation_definitions=[definition],
            actions=actions,
            result_format=result_format,
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame}, expectation_parameters=parameters)
    failures: dict[int, list[str]] = {}
    compact = []
    for run_result in result.run_results.values():
        for expectation_result in run_result.results:
            config = expectation_result.expectation_config
            reason = (config.meta or {}).get("reason", f"{config.type}({config.kwargs.get('column')})")
            raised = (expectation_result.exception_info or {}).get("raised_exception")
            if raised:
                message = expectation_result.exception_info.get("exception_message")
                raise RuntimeError(f"GX expectation {config.type} on {config.kwargs.get('column')} failed: {message}")
            rows = [int(item[ROW_ID]) for item in expectation_result.result.get("unexpected_index_list") or []]
            for row in rows:
                failures.setdefault(row, []).append(reason)
            compact.append(
                {
                    "expectation": config.type,
                    "column": config.kwargs.get("column"),
                    "reason": reason,
                    "success": bool(expectation_result.success),
                    "unexpected_count": len(rows),
                }
            )
    return failures, compact


def _not_null_columns(suite_name: str) -> set[str]:
    return {
        e["kwargs"]["column"]
        for e in load_suite(suite_name)["expectations"]
        if e["type"] == "expect_column_values_to_not_be_null"
    }


def _mask_card_numbers(values: pd.Series) -> pd.Series:
    """Every digit replaced by 0: same length, same shape, no card number."""
    return values.astype("string").str.replace(r"\d", "0", regex=True)


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min)
    return start, start + timedelta(days=1) - timedelta(microseconds=1)


# --------------------------------------------------------------------------- transactions


def _whole_file_quarantine(name: str, data: bytes, error: SchemaError) -> pd.DataFrame:
    """Every data row of an unreadable file (each non-blank line from its first data line on, or the rows of a
    Parquet file), with the file's error. Bytes that are not UTF-8 are kept as ``\\xNN`` escapes."""
    import pandas as pd

    records = error.records
    if records is None:
        records = [
            (number, line.decode("utf-8", "backslashreplace"))
            for number, line in enumerate(text_lines(data), start=1)
            if number >= error.first_data_line and line.strip()
        ]
    frame = pd.DataFrame(
        {
            RAW_LINE: pd.Series([text for _, text in records], dtype="string"),
            SOURCE_LINE: pd.Series([line for line, _ in records], dtype="int64"),
        }
    )
    frame[REASON] = f"file unreadable: {error}"
    frame[SOURCE_FILE] = name
    return frame


def _rejected_quarantine(name: str, rejected: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {
            RAW_LINE: rejected["text"].astype("string"),
            SOURCE_LINE: rejected["line"].astype("int64"),
            REASON: ("line " + rejected["error"].astype(str)).astype("string"),
            SOURCE_FILE: name,
        }
    )


def _read_files(
    files: list[tuple[str, bytes]], reader: Callable[..., Any], columns: tuple[str, ...]
) -> tuple[list[FileReport], pd.DataFrame, pd.DataFrame, list[pd.DataFrame]]:
    """Read every file; returns file reports, the typed rows, their text (with source file, line and
    parse reasons) and the quarantine pieces of unreadable files and unsplittable lines."""
    import pandas as pd

    reports: list[FileReport] = []
    typed_parts, raw_parts, quarantine_parts = [], [], []
    for name, data in files:
        try:
            result = reader(data, name=name)
        except SchemaError as exc:
            whole = _whole_file_quarantine(name, data, exc)
            quarantine_parts.append(whole)
            reports.append(FileReport(name, rows=len(whole), error=str(exc)))
            log.warning("quarantining the whole file: %s", exc)
            continue
        reports.append(FileReport(name, result.rows_read, len(result.rejected), result.extra_columns, result.delimiter))
        if len(result.rejected):
            quarantine_parts.append(_rejected_quarantine(name, result.rejected))
        raw = result.raw.copy()
        raw[SOURCE_FILE] = name
        raw[SOURCE_LINE] = result.line_numbers.to_numpy()
        parse_reasons = (
            result.parse_errors.groupby("row")["column"].apply(lambda cols: [f"{c} unparseable" for c in cols])
            if len(result.parse_errors)
            else pd.Series(dtype=object)
        )
        raw["_parse_reasons"] = [parse_reasons.get(i, []) for i in range(len(raw))]
        typed_parts.append(result.frame)
        raw_parts.append(raw)
    typed = pd.concat(typed_parts, ignore_index=True) if typed_parts else pd.DataFrame(columns=list(columns))
    raw = pd.concat(raw_parts, ignore_index=True) if raw_parts else pd.DataFrame()
    return reports, typed, raw, quarantine_parts


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
    reports, typed, raw, quarantine_parts = _read_files(files, read_transactions, TRANSACTION_COLUMN_NAMES)
    results: list[dict[str, Any]] = []
    failures: dict[int, list[str]] = {}
    if len(typed):
        gx_frame = typed.drop(columns=list(HIDDEN_FROM_GX))
        gx_frame["cc_num"] = _mask_card_numbers(gx_frame["cc_num"])
        gx_frame["trans_num_seen_on_earlier_day"] = typed["trans_num"].isin(earlier).astype(bool)
        gx_frame[ROW_ID] = range(len(gx_frame))
        day_start, day_end = _day_bounds(day)
        parameters = {
            "day_start": pd.Timestamp(day_start),
            "day_end": pd.Timestamp(day_end),
            "dob_min": pd.Timestamp(day_start) - pd.DateOffset(years=110),
            "dob_max": pd.Timestamp(day_start) - pd.DateOffset(years=10),
        }
        failures, results = _run_suite("transactions", gx_frame, parameters, docs_dir)
        # A value that did not parse is null; where the suite requires non-null GX already names it.
        checked = _not_null_columns("transactions")
        for row, parse_list in enumerate(raw["_parse_reasons"]):
            extra = [reason for reason in parse_list if reason.removesuffix(" unparseable") not in checked]
            if extra:
                failures.setdefault(row, []).extend(extra)
        # GX flags every copy of a repeated trans_num; keep the first copy that passes everything else.
        _first_valid_copies(typed["trans_num"].reset_index(drop=True), failures, "trans_num repeated within the day")

    bad_rows = sorted(failures)
    good_mask = pd.Series(True, index=typed.index)
    good_mask.iloc[bad_rows] = False
    validated = typed[good_mask.to_numpy()].reset_index(drop=True)
    if bad_rows:
        failed = raw.iloc[bad_rows].drop(columns=["_parse_reasons"]).reset_index(drop=True)
        failed[REASON] = ["; ".join(dict.fromkeys(failures[row])) for row in bad_rows]
        quarantine_parts.insert(0, failed)
    quarantined = _quarantine_frame(quarantine_parts, TRANSACTION_COLUMN_NAMES)
    _count_per_file(reports, _sources(raw, good_mask), quarantined)
    outcome = QualityOutcome(day, validated, quarantined, reports, results, docs_dir)
    if len(outcome.validated) + len(outcome.quarantined) != outcome.rows_in:  # pragma: no cover - invariant
        raise AssertionError(
            f"row counts do not reconcile for {day}: {outcome.rows_in} in, "
            f"{len(outcome.validated)} validated, {len(outcome.quarantined)} quarantined"
        )
    return outcome


def _sources(raw: pd.DataFrame, good_mask: pd.Series) -> pd.Series:
    """The source file of every validated row."""
    import pandas as pd

    return raw[SOURCE_FILE][good_mask.to_numpy()] if len(raw) else pd.Series(dtype="string")


def _quarantine_frame(parts: list[pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    """Concatenate quarantine pieces into one text frame with a fixed column set."""
    import pandas as pd

    ordered = [*columns, RAW_LINE, REASON, SOURCE_FILE, SOURCE_LINE]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == SOURCE_LINE else "string") for c in ordered})
    frame = pd.concat(parts, ignore_index=True)
    for column in ordered:
        if column not in frame.columns:
            frame[column] = None
    frame = frame[ordered]
    for column in ordered:
        frame[column] = frame[column].astype("int64" if column == SOURCE_LINE else "string")
    return frame


def quarantine_arrow(frame: pd.DataFrame) -> pa.Table:
    """A quarantine frame as Arrow: text columns, nullable, plus the int64 source line."""
    import pyarrow as pa

    schema = pa.schema([pa.field(c, pa.int64() if c == SOURCE_LINE else pa.string()) for c in frame.columns])
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


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


def data_docs_files(docs_dir: Path) -> list[tuple[str, Path]]:
    """(relative path, file) of the Data Docs site to publish; fonts are left out (4 MB, cosmetic)."""
    out = []
    for path in sorted(docs_dir.rglob("*")):
        relative = path.relative_to(docs_dir).as_posix()
        if path.is_file() and not relative.startswith(DATA_DOCS_SKIP):
            out.append((relative, path))
    return out


def temporary_docs_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="gx-docs-"))


# --------------------------------------------------------------------------- labels


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
    reports, typed, raw, quarantine_parts = _read_files(files, read_labels, LABEL_COLUMN_NAMES)
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
        day_start, day_end = _day_bounds(day)
        failures, results = _run_suite(
            "labels", frame, {"day_start": pd.Timestamp(day_start), "day_end": pd.Timestamp(day_end)}, None
        )
        repeated = "label repeated within the day"
        repeat = frame["trans_num"].duplicated(keep=False) & frame["trans_num"].notna() & ~frame["label_conflict"]
        for row in repeat[repeat].index:
            failures.setdefault(int(row), []).append(repeated)
        _first_valid_copies(frame["trans_num"].reset_index(drop=True), failures, repeated)
    bad_rows = sorted(failures)
    good = pd.Series(True, index=typed.index)
    good.iloc[bad_rows] = False
    validated = typed[good.to_numpy()].reset_index(drop=True)
    if bad_rows:
        failed = raw.iloc[bad_rows].reset_index(drop=True)
        failed[REASON] = ["; ".join(dict.fromkeys(failures[row])) for row in bad_rows]
        quarantine_parts.insert(0, failed)
    quarantined = _quarantine_frame(quarantine_parts, LABEL_COLUMN_NAMES)
    _count_per_file(reports, _sources(raw, good), quarantined)
    outcome = LabelOutcome(day, validated, quarantined, reports, results)
    if len(validated) + len(quarantined) != outcome.rows_in:  # pragma: no cover - invariant
        raise AssertionError(f"label counts do not reconcile for {day}")
    return outcome
