"""Row accounting of the quality gate: every row of every file is either validated or quarantined, with a reason.

Quarantined rows keep the text they arrived with plus ``_reason`` (the failed expectations), ``_source_file``
and ``_source_line``; a file that cannot be read is quarantined whole, line by line.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from training_lib.ingestion.reader import SchemaError, text_lines

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

REASON = "_reason"
SOURCE_FILE = "_source_file"
SOURCE_LINE = "_source_line"
RAW_LINE = "_raw_line"


@dataclass
class FileReport:
    """One input file: its data rows (``rows == validated + quarantined``) and what was odd about it."""

    name: str
    rows: int
    rejected_lines: int = 0
    extra_columns: list[str] = field(default_factory=list)
    delimiter: str = ","
    error: str | None = None  # the whole file was quarantined, for this reason
    unterminated_last_line: int | None = None  # a last line without line break, read as a row (see the reader)
    validated: int = 0
    quarantined: int = 0


def reason_counts(quarantined: pd.DataFrame) -> Counter[str]:
    """How often each failed expectation (``_reason`` parts) occurs among quarantined rows."""
    counts: Counter[str] = Counter()
    for reason in quarantined[REASON] if len(quarantined) else []:
        counts.update(part for part in reason.split("; ") if part)
    return counts


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


def read_files(
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
        reports.append(
            FileReport(
                name,
                result.rows_read,
                len(result.rejected),
                result.extra_columns,
                result.delimiter,
                unterminated_last_line=result.unterminated_last_line,
            )
        )
        if result.unterminated_last_line is not None:
            log.info(
                "%s: the last line (line %d) has no line break; it splits into all its fields and is read as a row"
                " (a file cut inside its last field would look the same)", name, result.unterminated_last_line,
            )  # fmt: skip
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


def first_valid_copies(keys: pd.Series, failures: dict[int, list[str]], repeated: str) -> None:
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


def split_rows(
    typed: pd.DataFrame,
    raw: pd.DataFrame,
    failures: dict[int, list[str]],
    quarantine_parts: list[pd.DataFrame],
    columns: tuple[str, ...],
    reports: list[FileReport],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(validated, quarantined): the rows without failures stay typed, the others go to quarantine as text with
    their reasons (ahead of the unreadable files' and lines' pieces); each file's report gets its counts."""
    import pandas as pd

    bad_rows = sorted(failures)
    good = pd.Series(True, index=typed.index)
    good.iloc[bad_rows] = False
    validated = typed[good.to_numpy()].reset_index(drop=True)
    if bad_rows:
        failed = raw.iloc[bad_rows].drop(columns=["_parse_reasons"]).reset_index(drop=True)
        failed[REASON] = ["; ".join(dict.fromkeys(failures[row])) for row in bad_rows]
        quarantine_parts.insert(0, failed)
    quarantined = quarantine_frame(quarantine_parts, columns)
    count_per_file(reports, validated_sources(raw, good), quarantined)
    return validated, quarantined


def count_per_file(reports: list[FileReport], validated_sources: pd.Series, quarantined: pd.DataFrame) -> None:
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


def validated_sources(raw: pd.DataFrame, good_mask: pd.Series) -> pd.Series:
    """The source file of every validated row."""
    import pandas as pd

    return raw[SOURCE_FILE][good_mask.to_numpy()] if len(raw) else pd.Series(dtype="string")


def quarantine_frame(parts: list[pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
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
