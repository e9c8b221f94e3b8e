"""The one reader for CSV and Parquet input, into the columns of :mod:`training_lib.ingestion.schema`.

Files are accepted as they are, in the Sparkov/Kaggle layout: any column order, the unnamed index
column or none, ``,`` ``;`` ``|`` or tab as delimiter, extra columns (ignored and reported), LF, CRLF or
CR line ends, UTF-8 (with or without byte-order mark) or UTF-16 with its byte-order mark.

Reading never loses a row. :func:`read_transactions` returns

* ``frame``: the canonical columns with normalised dtypes; a value that does not parse is null and
  named in ``parse_errors`` (the quality step quarantines such rows),
* ``raw``: the same rows, every value as the text that was in the file (what quarantine keeps),
* ``rejected``: lines that could not even be split into fields (wrong field count, bad bytes, an open
  quote), with their line number and text,

so that ``len(frame) + len(rejected)`` is the number of data lines in the file. A last line without a
line break (many exporters write files that way) is a row when it splits into the header's fields with no
open quote; otherwise the file was cut off there and the line is rejected as such. A file cut inside its
last field cannot be told from a complete one: ``unterminated_last_line`` names a line read that way.

Problems with the file as a whole (no header, required columns missing) raise :class:`SchemaError` naming
the file and the columns; the caller quarantines the whole file. Text a database or spreadsheet writes for "no value"
(``NULL``, ``NaN``, ``#N/A``, ...) is null, like an empty field: a key spelled ``NULL`` is a missing key.

``cc_num`` is an identifier: always text, never a float. A number that went through a spreadsheet
(``2.70319E+15``) has already lost digits; it stays text and fails the 12-19 digit check downstream.
An 11-digit number that passes the Luhn check is a 12-digit card whose leading zero an integer-typed
column dropped (the public Kaggle files store ``cc_num`` as integers: Maestro ``0604…`` cards appear as
``604…``): the zero is put back, so the card is one card (one token, one history) whether or not its zero
survived. One that fails the check (a damaged number) stays as it is and is quarantined; no other length is
padded or changed (as ``zip`` gets its zeros back to 5 digits and nothing else).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from training_lib.ingestion.schema import (
    LABEL_COLUMN_NAMES,
    LABEL_COLUMNS,
    REQUIRED_TRANSACTION_COLUMNS,
    TRANSACTION_COLUMN_NAMES,
    TRANSACTION_COLUMNS,
    Column,
)

if TYPE_CHECKING:
    import pandas as pd

INDEX_COLUMN_NAMES = frozenset({"", "Unnamed: 0", "Unnamed: 0.1", "index"})
TIMESTAMP_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.%f")
DATE_FORMAT = "%Y-%m-%d"
DELIMITERS = (",", ";", "\t", "|")
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
NULL_TOKENS = ("NULL", "null", "None", "NaN", "nan", "N/A", "n/a", "#N/A", "<NA>")
MAX_EXACT_INT = 2**53  # larger whole numbers do not survive the float parse: unparseable, never wrapped


class SchemaError(ValueError):
    """The file as a whole cannot be read as transactions; the message names the file and the problem.

    ``first_data_line``: where the file's data starts (1 when its first line is not a header), so that the
    caller can quarantine every data line; ``records``: (row number, text) of every row of a file that is
    not line-based (Parquet), for the same purpose.
    """

    def __init__(self, message: str, *, first_data_line: int = 2, records: list[tuple[int, str]] | None = None) -> None:
        super().__init__(message)
        self.first_data_line = first_data_line
        self.records = records


@dataclass
class ReadResult:
    """What :func:`read_transactions` found in one file; see the module docstring."""

    source: str
    frame: pd.DataFrame
    raw: pd.DataFrame
    rejected: pd.DataFrame  # columns: line (1-based line number in the file), text, error
    parse_errors: pd.DataFrame  # columns: row (position in frame), column, value
    line_numbers: pd.Series  # file line number of every row of frame/raw
    extra_columns: list[str] = field(default_factory=list)
    delimiter: str = ","
    unterminated_last_line: int | None = None  # line number of a last line without line break read as a row

    @property
    def rows_read(self) -> int:
        return len(self.frame) + len(self.rejected)


def _source_name(source: str | Path | bytes | IO[bytes], name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (str, Path)):
        return str(source)
    return getattr(source, "name", "<bytes>")


def _read_bytes(source: str | Path | bytes | IO[bytes]) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, (str, Path)):
        return Path(source).read_bytes()
    return source.read()


def _is_parquet(data: bytes, name: str) -> bool:
    return data[:4] == b"PAR1" or name.lower().endswith((".parquet", ".pq"))


def _fields(line: str, delimiter: str) -> list[str]:
    """One line split into fields; raises ``csv.Error`` on a line the csv module refuses (a huge field)."""
    return next(csv.reader([line], delimiter=delimiter), [])


def _ends_inside_quotes(line: str, delimiter: str) -> bool:
    """Whether a quoted field of ``line`` is never closed (the line was cut inside it). Only that: text after
    a closing quote (``"b" ,``), which strict csv also refuses, splits as on every other line."""
    try:
        next(csv.reader([line], delimiter=delimiter, strict=True), [])
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _luhn_valid(digits: str) -> bool:
    """The Luhn check digit of a card number holds (leading zeros do not change it)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _known_names(line: str, delimiter: str, known: set[str]) -> int:
    try:
        return len(known & {f.strip() for f in _fields(line, delimiter)})
    except csv.Error:
        return 0


def text_lines(data: bytes) -> list[bytes]:
    """The lines of a text file without their line ends (LF, CRLF, or CR alone as old Mac exports write)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\n" not in data and b"\r" in data:
        data = data.replace(b"\r", b"\n")
    return [line.rstrip(b"\r") for line in data.split(b"\n")]


def detect_delimiter(header_line: str) -> str:
    """The delimiter that splits the header into the most known column names."""
    known = set(TRANSACTION_COLUMN_NAMES) | set(LABEL_COLUMN_NAMES)
    scores = {d: _known_names(header_line, d, known) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: scores[d])
    return best if scores[best] else ","


def _split_csv(data: bytes, source: str, expected: tuple[str, ...], required: tuple[str, ...]):
    """CSV bytes -> (raw DataFrame of strings, rejected lines, line numbers, extra columns, delimiter, the line
    number of a last line without line break that was read as a row or None)."""
    import pandas as pd

    if data.startswith(UTF16_BOMS):  # a spreadsheet's "Unicode text" export
        try:
            data = data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError as exc:
            raise SchemaError(
                f"{source}: starts with a UTF-16 byte-order mark but is not UTF-16 text ({exc.reason})",
                first_data_line=1,
            ) from exc
    lines = text_lines(data)
    if not any(line.strip() for line in lines):
        raise SchemaError(f"{source}: the file is empty (no header line)")
    try:
        header_line = lines[0].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SchemaError(
            f"{source}: the header line is not UTF-8 text ({exc.reason} at byte {exc.start})", first_data_line=1
        ) from exc
    delimiter = detect_delimiter(header_line)
    try:
        header = [h.strip() for h in _fields(header_line, delimiter)]
    except csv.Error as exc:
        raise SchemaError(
            f"{source}: the first line cannot be split into fields ({exc}; is this a CSV file?)", first_data_line=1
        ) from exc
    missing = [c for c in required if c not in header]
    if missing:
        # Never echo the header's values: in a file without a header they are a data row (card, names).
        known = len(set(header) & set(expected))
        hint = f"; the first line has {len(header)} field(s), {known} of them known column names"
        if len(header) == 1:
            hint += " (is the delimiter one of , ; | or tab?)"
        elif known == 0:
            hint += " (is the header line missing?)"
        listed = f" {missing}" if known else ": none of them is in the first line"
        raise SchemaError(f"{source}: missing required column(s){listed}{hint}", first_data_line=1 if not known else 2)
    duplicated = sorted({h for h in header if header.count(h) > 1 and h not in INDEX_COLUMN_NAMES})
    if duplicated:
        raise SchemaError(f"{source}: column(s) {duplicated} appear more than once in the header")

    rows: list[list[str]] = []
    line_numbers: list[int] = []
    rejected: list[tuple[int, str, str]] = []
    # A file that does not end with a line break may have been cut off in its last line: the line is a row
    # only when it splits into the header's fields without an open quote (a cut inside the last field still
    # does: nothing can tell, so the line is named in the result and in the file's report).
    unterminated = len(lines) - 1 if lines[-1].strip() else None
    accepted_unterminated = None
    # csv handles quoted fields with embedded delimiters; a quoted newline is rare in this data and is
    # reported as a field-count error on both halves rather than joined silently.
    for index in range(1, len(lines)):
        line_no = index + 1
        stripped = lines[index]
        if not stripped.strip():
            continue
        try:
            text = stripped.decode("utf-8")
        except UnicodeDecodeError as exc:
            # backslashreplace keeps the bytes that were there (\xe9), not a replacement character
            text = stripped.decode("utf-8", "backslashreplace")
            rejected.append((line_no, text, f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
            continue
        try:
            fields_ = _fields(text, delimiter)
        except csv.Error as exc:
            reason = _CUT_OFF if index == unterminated else f"cannot be split into fields ({exc})"
            rejected.append((line_no, text, reason))
            continue
        if index == unterminated and _ends_inside_quotes(text, delimiter):
            rejected.append((line_no, text, _CUT_OFF))
            continue
        if len(fields_) != len(header):
            counts = f"has {len(fields_)} fields, the header has {len(header)}"
            rejected.append((line_no, text, f"{_CUT_OFF} ({counts})" if index == unterminated else counts))
            continue
        if index == unterminated:
            accepted_unterminated = line_no
        rows.append(fields_)
        line_numbers.append(line_no)

    raw = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header, dtype=object)
    keep = [c for c in expected if c in header]
    extra = [h for h in header if h not in expected and h not in INDEX_COLUMN_NAMES]
    raw = raw[keep].copy()
    for column in expected:
        if column not in raw.columns:
            raw[column] = None
    raw = raw[list(expected)]
    rejected_frame = pd.DataFrame(rejected, columns=["line", "text", "error"])
    return raw, rejected_frame, pd.Series(line_numbers, dtype="int64"), extra, delimiter, accepted_unterminated


_CUT_OFF = "is the last line and has no line break: the file may be cut off there"


def _read_parquet_as_text(data: bytes, source: str, expected: tuple[str, ...], required: tuple[str, ...]):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise SchemaError(f"{source}: not a readable Parquet file ({exc})", first_data_line=1) from exc
    missing = [c for c in required if c not in table.column_names]
    if missing:
        records = [(number, json.dumps(row, default=str)) for number, row in enumerate(table.to_pylist(), start=1)]
        raise SchemaError(
            f"{source}: missing required column(s) {missing}; columns are {table.column_names[:30]}", records=records
        )
    extra = [c for c in table.column_names if c not in expected and c not in INDEX_COLUMN_NAMES]
    raw = pd.DataFrame(index=range(table.num_rows))
    for column in expected:
        if column not in table.column_names:
            raw[column] = None
            continue
        array = table.column(column)
        if column == "cc_num" and pa.types.is_floating(array.type):
            # Floats cannot hold every card number: keep the text a spreadsheet would show.
            raw[column] = [None if v is None else repr(v) for v in array.to_pylist()]
        elif pa.types.is_timestamp(array.type):
            raw[column] = [None if v is None else v.strftime("%Y-%m-%d %H:%M:%S") for v in array.to_pylist()]
        else:
            raw[column] = [None if v is None else str(v) for v in array.to_pylist()]
    line_numbers = pd.Series(range(1, table.num_rows + 1), dtype="int64")  # Parquet: row number
    return raw, pd.DataFrame(columns=["line", "text", "error"]), line_numbers, extra, ",", None


def _parse_timestamps(text: pd.Series) -> pd.Series:
    import pandas as pd

    result = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    remaining = text.notna()
    for fmt in TIMESTAMP_FORMATS:
        if not remaining.any():
            break
        parsed = pd.to_datetime(text[remaining], format=fmt, errors="coerce")
        result[parsed.index] = result[parsed.index].fillna(parsed)
        remaining &= result.isna()
    return result


def normalise(raw: pd.DataFrame, columns: tuple[Column, ...] = TRANSACTION_COLUMNS):
    """Typed frame from text; returns (frame, parse_errors). Unparseable values become null."""
    import pandas as pd

    frame = pd.DataFrame(index=raw.index)
    errors = []
    for column in columns:
        text = raw[column.name].astype("string").str.strip()
        text = text.mask((text == "") | text.isin(NULL_TOKENS))
        if column.kind == "string":
            if column.name == "zip":
                text = text.where(~text.str.fullmatch(r"\d{1,4}").fillna(False), text.str.zfill(5))
            elif column.name == "cc_num":  # an integer column dropped a 12-digit card's leading zero (0604…)
                eleven = text.str.fullmatch(r"\d{11}").fillna(False)
                if eleven.any():  # only a valid card number: a damaged one stays 11 digits and is quarantined
                    lost_zero = eleven & text.map(lambda v: isinstance(v, str) and _luhn_valid(v))
                    text = text.where(~lost_zero, "0" + text)
            values = text
        elif column.kind == "float":
            values = pd.to_numeric(text, errors="coerce").astype("float64")
        elif column.kind == "int":
            as_float = pd.to_numeric(text, errors="coerce")
            whole = as_float.notna() & (as_float == as_float.round()) & (as_float.abs() <= MAX_EXACT_INT)
            values = as_float.where(whole).astype("Int64")
        elif column.kind == "label":
            as_number = pd.to_numeric(text, errors="coerce")
            values = as_number.where(as_number.isin([0, 1])).astype("Int8")
        elif column.kind == "timestamp":
            values = _parse_timestamps(text)
        elif column.kind == "date":
            values = pd.to_datetime(text, format=DATE_FORMAT, errors="coerce")
        else:  # pragma: no cover - a schema typo
            raise ValueError(f"unknown column kind {column.kind!r}")
        failed = text.notna() & values.isna()
        for position in failed[failed].index:
            errors.append((position, column.name, raw.at[position, column.name]))
        frame[column.name] = values
    parse_errors = pd.DataFrame(errors, columns=["row", "column", "value"])
    return frame, parse_errors


def read_transactions(source: str | Path | bytes | IO[bytes], name: str | None = None) -> ReadResult:
    """Read one transactions file (CSV in the Kaggle layout, or Parquet); see the module docstring."""
    source_name = _source_name(source, name)
    data = _read_bytes(source)
    reader = _read_parquet_as_text if _is_parquet(data, source_name) else _split_csv
    raw, rejected, lines, extra, delimiter, unterminated = reader(
        data, source_name, TRANSACTION_COLUMN_NAMES, REQUIRED_TRANSACTION_COLUMNS
    )
    raw = raw.reset_index(drop=True)
    frame, parse_errors = normalise(raw)
    return ReadResult(source_name, frame, raw, rejected, parse_errors, lines, extra, delimiter, unterminated)


def read_labels(source: str | Path | bytes | IO[bytes], name: str | None = None) -> ReadResult:
    """Read one label file (trans_num, is_fraud, confirmed_at) the same way as transactions."""
    source_name = _source_name(source, name)
    data = _read_bytes(source)
    reader = _read_parquet_as_text if _is_parquet(data, source_name) else _split_csv
    raw, rejected, lines, extra, delimiter, unterminated = reader(
        data, source_name, LABEL_COLUMN_NAMES, LABEL_COLUMN_NAMES
    )
    raw = raw.reset_index(drop=True)
    frame, parse_errors = normalise(raw, LABEL_COLUMNS)
    return ReadResult(source_name, frame, raw, rejected, parse_errors, lines, extra, delimiter, unterminated)
