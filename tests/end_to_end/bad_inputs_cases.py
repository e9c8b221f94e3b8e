"""The bad input cases of ``test_bad_inputs.py``, as data: one builder per kind of landing file, each returning
the file's bytes and what must become of every one of its rows (:class:`Case`), and the plan that sizes the
good feeds around them so that days D and D+1 pass the quarantine-share gate and D+2 trips it.

* day D: a good simulated feed (``00-good-feed.csv``) and one landing file per kind of bad input;
* day D+1: a good feed, a file repeating day D's trans_num (cross-day duplicates), and the label files
  (a good one and one per kind of bad label); day D has a good label file (the store the conflicts meet);
* day D+2: a good feed and a file of zero amounts just big enough to trip the quarantine-share gate.

A transaction case is a function registered with :func:`transaction_case` under its kind; it gets ``k`` (a
number of its own, which makes its cards and trans_num unique), day D's good feed and the cases built before
it (cross-references: a day D+1 file repeats what day D kept).
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from training_lib.config import load_settings
from training_lib.ingestion.schema import CATEGORIES, TRANSACTION_COLUMN_NAMES
from training_lib.lake.layout import (
    LANDING_LABELS,
    LANDING_TRANSACTIONS,
    partition_prefix,
)
from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulator import Simulator

D = date(2026, 2, 10)
D1, D2 = D + timedelta(days=1), D + timedelta(days=2)
TX_DAYS = [D.isoformat(), D1.isoformat(), D2.isoformat()]
LABEL_DAYS = [D.isoformat(), D1.isoformat()]
FEED = ["", *(c for c in TRANSACTION_COLUMN_NAMES if c != "is_fraud")]  # the daily feed: Kaggle index, no label
LABEL_HEADER = ["trans_num", "is_fraud", "confirmed_at"]
GOOD_FEED, GOOD_LABELS, GATE_FILE = "00-good-feed.csv", "00-good-labels.csv", "zero-amounts-feed.csv"


# --------------------------------------------------------------------------- cases and rows


@dataclass
class Case:
    """One landing file and what must become of each of its rows."""

    kind: str
    day: date
    data: bytes
    rows: int  # data rows in the file, counted here
    validated: dict[str, dict[str, str]] = field(default_factory=dict)  # trans_num -> the row that must be kept
    quarantined: dict[int, str] = field(default_factory=dict)  # line (row for Parquet) -> expected reason part
    absent: set[str] = field(default_factory=set)  # trans_num that must not be validated at all
    file_error: str | None = None  # a whole-file reject: part of its error
    report: dict[str, object] = field(default_factory=dict)  # expected entries of the file's quality report
    ext: str = "csv"
    dataset: str = LANDING_TRANSACTIONS

    @property
    def key(self) -> str:
        return f"{partition_prefix(self.dataset, self.day)}/{self.kind}.{self.ext}"


@dataclass
class Plan:
    simulator: Simulator
    transactions: dict[str, Case]
    labels: dict[str, Case]
    good_labels: dict[date, pd.DataFrame]
    gate_rows: int
    names: set[str]
    cards: set[str]


def tx(day: date, n: int, i: int, **changes: str) -> dict[str, str]:
    """Row ``i`` of case ``n``: valid on ``day``, trans_num and card unique to the case."""
    stamp = datetime.combine(day, time(8 + i % 12, i % 60, (7 * i) % 60))
    row = {
        "trans_date_trans_time": stamp.strftime("%Y-%m-%d %H:%M:%S"),
        "cc_num": f"4{n:03d}{i:012d}",
        "merchant": f"fraud_Merchant {n}-{i}",
        "category": CATEGORIES[(n + i) % len(CATEGORIES)],
        "amt": f"{12.5 + 3 * i + n:.2f}",
        "first": f"Qfirst{n}x{i}",
        "last": f"Qlast{n}x{i}",
        "gender": "F" if i % 2 else "M",
        "street": f"{100 + i} Quarry Street",
        "city": "Springfield",
        "state": "IL",
        "zip": "62701",
        "lat": "39.7817",
        "long": "-89.6501",
        "city_pop": "116250",
        "job": "Engineer, civil",
        "dob": "1980-05-17",
        "trans_num": f"{n:04x}{i:028x}",
        "unix_time": str(int(stamp.replace(tzinfo=UTC).timestamp())),
        "merch_lat": "39.9",
        "merch_long": "-89.1",
    }
    row.update(changes)
    return row


def to_csv(rows: list[dict[str, str]], header: list[str] = FEED, delimiter: str = ",", end: str = "\n") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=end)
    writer.writerow(header)
    for index, row in enumerate(rows):
        writer.writerow([str(index) if h == "" else row.get(h, "") for h in header])
    return buffer.getvalue()


def to_parquet(rows: list[dict[str, str]], columns: list[str], types: dict[str, pa.DataType] | None = None) -> bytes:
    types = types or {}
    table = pa.table({c: pa.array([r[c] for r in rows]).cast(types.get(c, pa.string())) for c in columns})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def lines_of(data: bytes) -> list[int]:
    """1-based numbers of the non-blank lines of a file (for files that cannot be read as CSV)."""
    return [number for number, line in enumerate(data.split(b"\n"), start=1) if line.rstrip(b"\r").strip()]


def outcome(rows: list[dict[str, str]], bad: dict[int, str], first_line: int = 2) -> dict[str, object]:
    """validated / quarantined / absent of rows written one per line from ``first_line``; ``bad``: row index ->
    reason part. A bad row's trans_num must not be validated unless a good row of the file has it."""
    good = {rows[i]["trans_num"]: rows[i] for i in range(len(rows)) if i not in bad}
    return {
        "rows": len(rows),
        "validated": good,
        "quarantined": {i + first_line: reason for i, reason in bad.items()},
        "absent": {rows[i]["trans_num"] for i in bad} - set(good),
    }


# --------------------------------------------------------------------------- the transaction files, kind by kind

TRANSACTION_CASES: dict[str, Callable[[int, pd.DataFrame, dict[str, Case]], Case]] = {}


def transaction_case(build: Callable[[int, pd.DataFrame, dict[str, Case]], Case]):
    """Register ``build`` as the case of the kind it is named after (table order = build order)."""
    TRANSACTION_CASES[build.__name__] = build
    return build


# ---- layout


@transaction_case
def missing_column(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i) for i in range(4)]
    return Case(
        "missing_column",
        D,
        to_csv(rows, [h for h in FEED if h != "amt"]).encode(),
        rows=4,
        quarantined=dict.fromkeys(range(2, 6), "missing required column(s) ['amt']"),
        absent={r["trans_num"] for r in rows},
        file_error="missing required column(s) ['amt']",
    )


@transaction_case
def missing_column_parquet(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i) for i in range(3)]
    return Case(
        "missing_column_parquet",
        D,
        to_parquet(rows, [c for c in FEED[1:] if c != "category"]),
        rows=3,
        quarantined=dict.fromkeys(range(1, 4), "missing required column(s) ['category']"),
        absent={r["trans_num"] for r in rows},
        file_error="missing required column(s) ['category']",
        ext="parquet",
    )


@transaction_case
def extra_column(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [{**tx(D, k, i), "loyalty_tier": "gold"} for i in range(4)]
    return Case(
        "extra_column",
        D,
        to_csv(rows, [*FEED, "loyalty_tier"]).encode(),
        **outcome(rows, {}),
        report={"extra_columns": ["loyalty_tier"]},
    )


@transaction_case
def wrong_column_order(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i) for i in range(4)]
    return Case("wrong_column_order", D, to_csv(rows, list(reversed(FEED[1:]))).encode(), **outcome(rows, {}))


@transaction_case
def delimiter_semicolon(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i) for i in range(4)] + [tx(D, k, 4, amt="12,50")]  # a European export's decimal comma
    return Case(
        "delimiter_semicolon",
        D,
        to_csv(rows, delimiter=";").encode(),
        **outcome(rows, {4: "amt missing or unparseable"}),
        report={"delimiter": ";"},
    )


@transaction_case
def delimiter_mismatch(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i) for i in range(3)]
    mixed = to_csv([], FEED) + to_csv(rows, FEED, delimiter=";").split("\n", 1)[1]  # header ',' rows ';'
    return Case(
        "delimiter_mismatch",
        D,
        mixed.encode(),
        **outcome(rows, dict.fromkeys(range(3), f"the header has {len(FEED)}")),
    )


@transaction_case
def delimiter_unknown(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i) for i in range(3)]
    # ':' is no delimiter the reader knows: the first line is no header, so it is quarantined as data too
    return Case(
        "delimiter_unknown",
        D,
        to_csv(rows, delimiter=":").encode(),
        rows=4,
        quarantined=dict.fromkeys(range(1, 5), "is the delimiter one of"),
        absent={r["trans_num"] for r in rows},
        file_error="is the delimiter one of",
    )


@transaction_case
def line_ends_cr_only(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i) for i in range(4)]
    return Case("line_ends_cr_only", D, to_csv(rows, end="\r").encode(), **outcome(rows, {}))


@transaction_case
def utf16_tab_export(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i) for i in range(4)]
    return Case("utf16_tab_export", D, to_csv(rows, delimiter="\t").encode("utf-16"), **outcome(rows, {}))


@transaction_case
def empty_file(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    return Case("empty_file", D, b"", rows=0, file_error="the file is empty")


@transaction_case
def header_only(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    return Case("header_only", D, to_csv([]).encode(), rows=0)


# ---- damaged files


@transaction_case
def no_final_line_break(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i) for i in range(5)]
    text = to_csv(rows)
    # many exporters end a file without a line break: the complete last line is a row, and the report says so
    return Case("no_final_line_break", D, text[:-1].encode(), **outcome(rows, {}), report={"unterminated_last_line": 6})


@transaction_case
def truncated_last_line(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i) for i in range(5)]
    text = to_csv(rows)
    assert text.endswith(",-89.1\n")
    # cut inside the last field: the line still splits into all its fields, so nothing can tell it from a
    # complete line; it is read as a row (merch_long -89) and the file's report names the line
    rows[4] = {**rows[4], "merch_long": "-89"}
    return Case("truncated_last_line", D, text[:-2].encode(), **outcome(rows, {}), report={"unterminated_last_line": 6})


@transaction_case
def truncated_inside_quotes(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i) for i in range(5)]
    text = to_csv(rows)
    cut = text.rindex('"Engineer, civil"') + len('"Engineer')  # the last line ends inside a quoted field
    return Case(
        "truncated_inside_quotes",
        D,
        text[:cut].encode(),
        **outcome(rows, {4: "has no line break"}),
        report={"unterminated_last_line": None},
    )


@transaction_case
def truncated_mid_row(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i) for i in range(5)]
    text = to_csv(rows)
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    return Case(
        "truncated_mid_row",
        D,
        text[: len(text) - 1 - len(last) // 2].encode(),
        **outcome(rows, {4: "has no line break"}),
    )


@transaction_case
def non_utf8_rows(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i, merchant=f"fraud_Café {i}" if i in (1, 3) else f"fraud_Merchant {k}-{i}") for i in range(5)]
    return Case(
        "non_utf8_rows",
        D,
        to_csv(rows).encode("cp1252"),
        **outcome(rows, {1: "not UTF-8 text", 3: "not UTF-8 text"}),
    )


@transaction_case
def non_utf8_header(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [{**tx(D, k, i), "Währung": "USD"} for i in range(3)]
    # an unreadable header is no header: its line is quarantined with the rows
    return Case(
        "non_utf8_header",
        D,
        to_csv(rows, [*FEED, "Währung"]).encode("cp1252"),
        rows=4,
        quarantined=dict.fromkeys(range(1, 5), "the header line is not UTF-8 text"),
        absent={r["trans_num"] for r in rows},
        file_error="the header line is not UTF-8 text",
    )


@transaction_case
def repeated_header_line(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i) for i in range(3)]
    more = [tx(D, k, i) for i in range(3, 5)]
    text = to_csv(rows) + to_csv(more).replace("\n0,", "\n3,").replace("\n1,", "\n4,")  # two exports concatenated
    return Case(
        "repeated_header_line",
        D,
        text.encode(),
        rows=6,
        validated={r["trans_num"]: r for r in rows + more},
        quarantined={5: "trans_date_trans_time missing or unparseable"},
    )


# ---- values


@transaction_case
def null_keys(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [
        tx(D, k, 0),
        tx(D, k, 1, cc_num=""),
        tx(D, k, 2, trans_num=""),
        tx(D, k, 3, trans_num="NULL"),  # a database export's null
        tx(D, k, 4, cc_num="   "),
        tx(D, k, 5, cc_num="", trans_num=""),
        tx(D, k, 6),
    ]
    bad = {1: "cc_num missing", 2: "trans_num missing", 3: "trans_num missing", 4: "cc_num missing"}
    return Case("null_keys", D, to_csv(rows).encode(), **outcome(rows, {**bad, 5: "trans_num missing"}))


@transaction_case
def negative_and_zero_amounts(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    amounts = ["-5.00", "0", "0.00", "-0.0", "-0.01"]
    rows = [tx(D, k, i, amt=a) for i, a in enumerate(amounts)] + [tx(D, k, 5, amt="0.01")]
    return Case(
        "negative_and_zero_amounts",
        D,
        to_csv(rows).encode(),
        **outcome(rows, dict.fromkeys(range(5), "amt not in (0, 100000]")),
    )


@transaction_case
def absurd_amounts(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [
        tx(D, k, 0, amt="99999999"),
        tx(D, k, 1, amt="1e308"),
        tx(D, k, 2, amt="inf"),
        tx(D, k, 3, amt="100000.01"),
        tx(D, k, 4, amt="NaN"),
        tx(D, k, 5, amt="1,234.50"),
        tx(D, k, 6, amt="$12.50"),
        tx(D, k, 7, city_pop="1e30"),
        tx(D, k, 8, unix_time="1e300"),
        tx(D, k, 9, amt="100000"),
    ]
    bad = {i: "amt not in (0, 100000]" for i in range(4)}
    bad |= {i: "amt missing or unparseable" for i in (4, 5, 6)}
    bad |= {7: "city_pop missing or unparseable", 8: "unix_time unparseable"}
    return Case("absurd_amounts", D, to_csv(rows).encode(), **outcome(rows, bad))


@transaction_case
def unknown_category(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i, category=c) for i, c in enumerate(["crypto", "GROCERY_POS", "grocery-pos", ""])]
    rows.append(tx(D, k, 4))
    bad = {0: "category unknown", 1: "category unknown", 2: "category unknown", 3: "category missing"}
    return Case("unknown_category", D, to_csv(rows).encode(), **outcome(rows, bad))


@transaction_case
def lat_long_out_of_range(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [
        tx(D, k, 0, lat="123.4"),
        tx(D, k, 1, long="-200"),
        tx(D, k, 2, merch_lat="-91"),
        tx(D, k, 3, merch_long="181"),
        tx(D, k, 4, lat="inf"),
        tx(D, k, 5, lat="-90", long="180", merch_lat="90", merch_long="-180"),
    ]
    bad = {0: "lat outside", 1: "long outside", 2: "merch_lat outside", 3: "merch_long outside", 4: "lat outside"}
    return Case("lat_long_out_of_range", D, to_csv(rows).encode(), **outcome(rows, bad))


@transaction_case
def timestamp_outside_day(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    stamps = [f"{D - timedelta(days=1)} 23:59:59", f"{D1} 00:00:00", "2099-01-01 12:00:00"]
    rows = [tx(D, k, i, trans_date_trans_time=s) for i, s in enumerate(stamps)]
    rows += [tx(D, k, 3, trans_date_trans_time=f"{D} 00:00:00"), tx(D, k, 4, trans_date_trans_time=f"{D} 23:59:59")]
    return Case(
        "timestamp_outside_day",
        D,
        to_csv(rows).encode(),
        **outcome(rows, dict.fromkeys(range(3), "trans_date_trans_time outside the logical day")),
    )


@transaction_case
def unparseable_date(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    stamps = ["not a date", "2026-02-30 10:00:00", f"{D} 25:61:00", ""]
    rows = [tx(D, k, i, trans_date_trans_time=s) for i, s in enumerate(stamps)]
    rows += [tx(D, k, 4, dob="unknown"), tx(D, k, 5)]
    bad = dict.fromkeys(range(4), "trans_date_trans_time missing or unparseable") | {4: "dob missing or unparseable"}
    return Case("unparseable_date", D, to_csv(rows).encode(), **outcome(rows, bad))


@transaction_case
def date_other_format(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    stamps = [f"{D:%d-%m-%Y} 14:35", f"{D:%m/%d/%Y} 14:35", f"{D:%d/%m/%Y} 14:35:00", f"{D:%d.%m.%Y %H:%M}"]
    rows = [tx(D, k, i, trans_date_trans_time=s) for i, s in enumerate(stamps)]
    rows += [tx(D, k, 4, dob="17/05/1980"), tx(D, k, 5, trans_date_trans_time=f"{D}T14:35:00")]  # ISO 'T': fine
    bad = dict.fromkeys(range(4), "trans_date_trans_time missing or unparseable") | {4: "dob missing or unparseable"}
    return Case("date_other_format", D, to_csv(rows).encode(), **outcome(rows, bad))


@transaction_case
def cc_num_scientific(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    spreadsheet = ["2.70319E+15", "4.00012E+15", "2.703186E+15", "2703186189652095.0", "2,70319E+15", "4.1111e15"]
    rows = [tx(D, k, i, cc_num=c) for i, c in enumerate(spreadsheet)] + [tx(D, k, 6)]
    return Case(
        "cc_num_scientific",
        D,
        to_csv(rows).encode(),
        **outcome(rows, dict.fromkeys(range(6), "cc_num not a 12-19 digit card number")),
    )


@transaction_case
def cc_num_float_parquet(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i) for i in range(4)]
    floats = [{**r, "cc_num": float(r["cc_num"])} for r in rows]  # a notebook's float64 card numbers
    return Case(
        "cc_num_float_parquet",
        D,
        to_parquet(floats, FEED[1:], {"cc_num": pa.float64()}),
        **outcome(rows, dict.fromkeys(range(4), "cc_num not a 12-19 digit card number"), first_line=1),
        ext="parquet",
    )


# ---- duplicates within the day (the good feed sorts first: its copies are the first ones)


@transaction_case
def duplicate_trans_num_within_day(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    rows = [tx(D, k, i) for i in range(4)]
    rows += [
        dict(rows[1]),  # an exact repeat
        {**rows[2], "amt": "99.99"},  # same trans_num, other amount
        tx(D, k, 6, trans_num=sim_day["trans_num"].iloc[0]),  # repeats a row of the good feed
        tx(D, k, 7, amt="-1"),  # a bad first copy ...
        tx(D, k, 7),  # ... and its corrected resend: kept
    ]
    dup = "trans_num repeated within the day"
    bad = {4: dup, 5: dup, 6: dup, 7: "amt not in (0, 100000]"}
    expected = outcome(rows, bad)
    expected["absent"] = set()  # every trans_num of the file has a kept copy
    return Case("duplicate_trans_num_within_day", D, to_csv(rows).encode(), **expected)


# ---- whole files of garbage


@transaction_case
def garbage_binary(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    gz = gzip.compress(to_csv([tx(D, k, i) for i in range(40)]).encode(), mtime=0)  # a .gz landed as .csv
    assert b"\n" in gz
    lines = lines_of(gz)
    return Case(
        "garbage_binary",
        D,
        gz,
        rows=len(lines),
        quarantined=dict.fromkeys(lines, "file unreadable"),
        file_error="",
    )


@transaction_case
def garbage_text(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    blob = base64.b64encode(random.Random(8).randbytes(150_000)) + b"\n"  # noqa: S311 - test data
    return Case(
        "garbage_text",
        D,
        blob,
        rows=1,
        quarantined={1: "cannot be split into fields"},
        file_error="cannot be split into fields",
    )


@transaction_case
def garbage_parquet(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    junk = b"PAR1" + random.Random(9).randbytes(3000) + b"PAR1"  # noqa: S311 - test data
    return Case(
        "garbage_parquet",
        D,
        junk,
        rows=len(lines_of(junk)),
        quarantined=dict.fromkeys(lines_of(junk), "not a readable Parquet file"),
        file_error="not a readable Parquet file",
        ext="parquet",
    )


# ---- day D+1: trans_num seen on day D


@transaction_case
def duplicate_trans_num_across_days(k: int, sim_day: pd.DataFrame, built: dict[str, Case]) -> Case:
    negative = built["negative_and_zero_amounts"]
    quarantined_on_d = sorted(negative.absent)[0]
    order = built["wrong_column_order"]
    rows = [
        tx(D1, k, 0, trans_num=sim_day["trans_num"].iloc[1]),
        tx(D1, k, 1, trans_num=sim_day["trans_num"].iloc[2], amt="1.00"),
        tx(D1, k, 2, trans_num=next(iter(order.validated))),
        tx(D1, k, 3, trans_num=quarantined_on_d),  # quarantined on day D, never validated: accepted now
        tx(D1, k, 4),
    ]
    seen = "trans_num already ingested on an earlier day"
    expected = outcome(rows, dict.fromkeys(range(3), seen))
    expected["absent"] = set()  # the repeated ones stay validated on day D (checked there)
    return Case("duplicate_trans_num_across_days", D1, to_csv(rows).encode(), **expected)


def transaction_cases(sim_day: pd.DataFrame) -> list[Case]:
    """Every transaction case, built in table order; ``sim_day``: day D's good feed."""
    built: dict[str, Case] = {}
    for k, (kind, build) in enumerate(TRANSACTION_CASES.items(), start=1):
        built[kind] = build(k, sim_day, built)
        assert built[kind].kind == kind, (kind, built[kind].kind)
    return list(built.values())


# --------------------------------------------------------------------------- the label files


def label_rows(rows: list[tuple[str, str, str]]) -> bytes:
    return to_csv([dict(zip(LABEL_HEADER, r, strict=True)) for r in rows], LABEL_HEADER).encode()


def label_cases(sim_day: pd.DataFrame, transactions: dict[str, Case]) -> tuple[list[Case], dict[date, pd.DataFrame]]:
    """Day D: a good label file (the store). Day D+1: a good one and one per kind of bad label."""
    pool = iter(sim_day["trans_num"].iloc[10:].tolist())  # day D's good feed, validated
    at = {day: f"{day} 12:00:00" for day in (D, D1)}
    stored = pd.DataFrame({"trans_num": [next(pool) for _ in range(50)]})
    stored["is_fraud"] = [i % 2 for i in range(len(stored))]
    fresh = pd.DataFrame({"trans_num": [next(pool) for _ in range(50)], "is_fraud": 0})
    good = {D: stored, D1: fresh}
    x0, x1 = stored["trans_num"].iloc[0], stored["trans_num"].iloc[1]  # stored as 0 and 1
    cases: list[Case] = []

    def add(kind: str, rows: list[tuple[str, str, str]], bad: dict[int, str], **extra: object) -> None:
        named = [{"trans_num": t, "is_fraud": f, "confirmed_at": c} for t, f, c in rows]
        expected = outcome(named, bad)
        expected.update(extra)
        cases.append(Case(kind, D1, label_rows(rows), dataset=LANDING_LABELS, **expected))

    control = (next(pool), "1", at[D1])
    quarantined_on_d = sorted(transactions["negative_and_zero_amounts"].absent)[1:]  # [0] is resent on D+1
    unknown = "trans_num of no ingested transaction"
    add(
        "label_unknown_trans_num",
        [("f" * 32, "1", at[D1]), ("0" * 31 + "1", "0", at[D1]), ("no-such-transaction", "1", at[D1])]
        + [(t, "1", at[D1]) for t in quarantined_on_d[:2]]  # quarantined transactions are not ingested
        + [control],
        dict.fromkeys(range(5), unknown),
    )
    y = next(pool)
    conflict = "conflicting labels for the same trans_num"
    add(
        "label_conflicting_in_file",
        [(y, "1", at[D1]), (y, "0", f"{D1} 13:00:00"), (next(pool), "0", at[D1])],
        {0: conflict, 1: conflict},
    )
    add(
        "label_conflicting_with_store",
        [(x0, "1", at[D1]), (x1, "1", at[D1]), (next(pool), "1", at[D1])],
        {0: conflict, 1: "label already stored on an earlier day"},
        absent=set(),  # both stay stored on day D (checked there)
    )
    z, w = next(pool), next(pool)
    add(
        "label_repeated_in_file",
        [(z, "1", at[D1]), (z, "1", f"{D1} 18:00:00"), (w, "0", at[D]), (w, "0", at[D1])],
        {1: "label repeated within the day", 2: "confirmed_at outside the logical day"},
    )
    add(
        "label_bad_values",
        [
            (next(pool), "yes", at[D1]),
            (next(pool), "2", at[D1]),
            (next(pool), "", at[D1]),
            (next(pool), "1", f"{D1:%d-%m-%Y} 12:00"),
            ("", "1", at[D1]),
            (next(pool), "0", at[D1]),
        ],
        {0: "is_fraud missing or not 0/1", 1: "is_fraud missing or not 0/1", 2: "is_fraud missing or not 0/1"}
        | {3: "confirmed_at missing or unparseable", 4: "trans_num missing"},
    )
    rows = [(next(pool), "1", at[D1]) for _ in range(3)]
    cases.append(
        Case(
            "label_missing_column",
            D1,
            to_csv([{"trans_num": t, "is_fraud": f} for t, f, _ in rows], LABEL_HEADER[:2]).encode(),
            rows=3,
            quarantined=dict.fromkeys(range(2, 5), "missing required column(s) ['confirmed_at']"),
            absent={t for t, _, _ in rows},
            file_error="missing required column(s) ['confirmed_at']",
            dataset=LANDING_LABELS,
        )
    )
    return cases, good


# --------------------------------------------------------------------------- the plan


@cache
def plan() -> Plan:
    """Every file of the module, sized so that days D and D+1 pass the quarantine-share gate and D+2 trips it."""
    limit = load_settings().quarantine_share_limit  # the configured default; STACK_SETTINGS leaves it alone
    assert 0 < limit < 1, f"FRAUD_QUARANTINE_SHARE_LIMIT={limit}: the gate can neither pass nor trip"
    probe = Simulator(SimulationConfig(seed=5, start=D, n_customers=50, transactions_per_day=10, label_delay_days=1))
    bad_rows = sum(len(c.quarantined) for c in transaction_cases(probe.transactions(D)))
    per_day = max(2000, math.ceil(2 * bad_rows / limit))  # at most half the limit quarantined on day D
    simulator = Simulator(
        SimulationConfig(seed=5, start=D, n_customers=1500, transactions_per_day=per_day, label_delay_days=1)
    )
    sim_day = simulator.transactions(D)
    cases = transaction_cases(sim_day)
    labels, good_labels = label_cases(sim_day, {c.kind: c for c in cases})
    gate_good = len(simulator.transactions(D2))
    names: set[str] = set()
    cards: set[str] = set()
    for day in (D, D1, D2):
        frame = simulator.transactions(day)
        names |= set(frame["first"]) | set(frame["last"])
        cards |= set(frame["cc_num"])
    for case in cases:
        for row in case.validated.values():
            names |= {row["first"], row["last"]}
            cards.add(row["cc_num"])
    return Plan(
        simulator=simulator,
        transactions={c.kind: c for c in cases},
        labels={c.kind: c for c in labels},
        good_labels=good_labels,
        gate_rows=math.floor(limit * gate_good / (1 - limit)) + 25,  # just above the limit
        names=names,
        cards=cards,
    )


TRANSACTION_KINDS = [
    "missing_column",
    "missing_column_parquet",
    "extra_column",
    "wrong_column_order",
    "delimiter_semicolon",
    "delimiter_mismatch",
    "delimiter_unknown",
    "line_ends_cr_only",
    "utf16_tab_export",
    "empty_file",
    "header_only",
    "no_final_line_break",
    "truncated_last_line",
    "truncated_inside_quotes",
    "truncated_mid_row",
    "non_utf8_rows",
    "non_utf8_header",
    "repeated_header_line",
    "null_keys",
    "negative_and_zero_amounts",
    "absurd_amounts",
    "unknown_category",
    "lat_long_out_of_range",
    "timestamp_outside_day",
    "unparseable_date",
    "date_other_format",
    "cc_num_scientific",
    "cc_num_float_parquet",
    "duplicate_trans_num_within_day",
    "garbage_binary",
    "garbage_text",
    "garbage_parquet",
    "duplicate_trans_num_across_days",
]
LABEL_KINDS = [
    "label_unknown_trans_num",
    "label_conflicting_in_file",
    "label_conflicting_with_store",
    "label_repeated_in_file",
    "label_bad_values",
    "label_missing_column",
]


def gate_file(rows: int) -> bytes:
    return to_csv([tx(D2, 900, i, amt="0") for i in range(rows)]).encode()


def labels_csv(frame: pd.DataFrame, day: date) -> bytes:
    rows = [(t, str(f), f"{day} 06:{i % 60:02d}:00") for i, (t, f) in enumerate(zip(*frame.values.T, strict=True))]
    return label_rows(rows)
