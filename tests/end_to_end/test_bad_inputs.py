"""Bad input through the real ingestion DAGs: each kind is handled, nothing is lost, counts reconcile.

One stack, one backfill of ``transactions_daily`` over three days and one of ``labels_daily`` over two:

* day D: a good simulated feed (``00-good-feed.csv``) and one landing file per kind of bad input,
  ``landing/transactions/dt=D/<kind>.<ext>``;
* day D+1: a good feed, a file repeating day D's trans_num (cross-day duplicates), and the label files
  (a good one and one per kind of bad label); day D has a good label file (the store the conflicts meet);
* day D+2: a good feed and a file of zero amounts just big enough to trip the quarantine-share gate.

Every kind is one test case that checks the rows of its own file: the file's data rows (counted here from
the bytes) = its rows in the validated partition (found by trans_num) + its rows in quarantine (found by
``_source_file``), every quarantined row has its line number and the expected reason, the quality report
counts the file the same way, and a whole-file reject names the file in its error and in the task log.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import math
import random
import re
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training_lib.config import load_settings
from training_lib.ingestion.quality import REASON, SOURCE_FILE, SOURCE_LINE
from training_lib.ingestion.schema import CATEGORIES, TRANSACTION_COLUMN_NAMES
from training_lib.lake.layout import (
    LABELS,
    LANDING_LABELS,
    LANDING_TRANSACTIONS,
    QUARANTINE_LABELS,
    QUARANTINE_TRANSACTIONS,
    REPORTS_QUALITY,
    VALIDATED_TRANSACTIONS,
    partition_prefix,
)
from training_lib.lake.storage import Lake, PartitionNotFound
from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulate import Simulator

pytestmark = [pytest.mark.integration, pytest.mark.slow]

D = date(2026, 2, 10)
D1, D2 = D + timedelta(days=1), D + timedelta(days=2)
TX_DAYS = [D.isoformat(), D1.isoformat(), D2.isoformat()]
LABEL_DAYS = [D.isoformat(), D1.isoformat()]
STACK_SETTINGS = {"FRAUD_MIN_NEW_LABELS": "1000000"}  # no retrain signal: this module is about ingestion
FEED = ["", *(c for c in TRANSACTION_COLUMN_NAMES if c != "is_fraud")]  # the daily feed: Kaggle index, no label
LABEL_HEADER = ["trans_num", "is_fraud", "confirmed_at"]
GOOD_FEED, GOOD_LABELS, GATE_FILE = "00-good-feed.csv", "00-good-labels.csv", "zero-amounts-feed.csv"
VALIDATE, INGEST_LABELS = "quality.validate", "ingest"


# --------------------------------------------------------------------------- the files


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


def transaction_cases(sim_day: pd.DataFrame) -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    n = iter(range(1, 1000))

    # ---- layout
    k = next(n)
    rows = [tx(D, k, i) for i in range(4)]
    add(
        Case(
            "missing_column",
            D,
            to_csv(rows, [h for h in FEED if h != "amt"]).encode(),
            rows=4,
            quarantined=dict.fromkeys(range(2, 6), "missing required column(s) ['amt']"),
            absent={r["trans_num"] for r in rows},
            file_error="missing required column(s) ['amt']",
        )
    )
    k = next(n)
    rows = [tx(D, k, i) for i in range(3)]
    add(
        Case(
            "missing_column_parquet",
            D,
            to_parquet(rows, [c for c in FEED[1:] if c != "category"]),
            rows=3,
            quarantined=dict.fromkeys(range(1, 4), "missing required column(s) ['category']"),
            absent={r["trans_num"] for r in rows},
            file_error="missing required column(s) ['category']",
            ext="parquet",
        )
    )
    k = next(n)
    rows = [{**tx(D, k, i), "loyalty_tier": "gold"} for i in range(4)]
    add(
        Case(
            "extra_column",
            D,
            to_csv(rows, [*FEED, "loyalty_tier"]).encode(),
            **outcome(rows, {}),
            report={"extra_columns": ["loyalty_tier"]},
        )
    )
    k = next(n)
    rows = [tx(D, k, i) for i in range(4)]
    add(Case("wrong_column_order", D, to_csv(rows, list(reversed(FEED[1:]))).encode(), **outcome(rows, {})))
    k = next(n)
    rows = [tx(D, k, i) for i in range(4)] + [tx(D, k, 4, amt="12,50")]  # a European export's decimal comma
    add(
        Case(
            "delimiter_semicolon",
            D,
            to_csv(rows, delimiter=";").encode(),
            **outcome(rows, {4: "amt missing or unparseable"}),
            report={"delimiter": ";"},
        )
    )
    k = next(n)
    rows = [tx(D, k, i) for i in range(3)]
    mixed = to_csv([], FEED) + to_csv(rows, FEED, delimiter=";").split("\n", 1)[1]  # header ',' rows ';'
    add(
        Case(
            "delimiter_mismatch",
            D,
            mixed.encode(),
            **outcome(rows, dict.fromkeys(range(3), f"the header has {len(FEED)}")),
        )
    )
    k = next(n)
    rows = [tx(D, k, i) for i in range(3)]
    add(  # ':' is no delimiter the reader knows: the first line is no header, so it is quarantined as data too
        Case(
            "delimiter_unknown",
            D,
            to_csv(rows, delimiter=":").encode(),
            rows=4,
            quarantined=dict.fromkeys(range(1, 5), "is the delimiter one of"),
            absent={r["trans_num"] for r in rows},
            file_error="is the delimiter one of",
        )
    )
    k = next(n)
    rows = [tx(D, k, i) for i in range(4)]
    add(Case("line_ends_cr_only", D, to_csv(rows, end="\r").encode(), **outcome(rows, {})))
    k = next(n)
    rows = [tx(D, k, i) for i in range(4)]
    add(Case("utf16_tab_export", D, to_csv(rows, delimiter="\t").encode("utf-16"), **outcome(rows, {})))
    add(Case("empty_file", D, b"", rows=0, file_error="the file is empty"))
    add(Case("header_only", D, to_csv([]).encode(), rows=0))

    # ---- damaged files
    k = next(n)
    rows = [tx(D, k, i) for i in range(5)]
    text = to_csv(rows)
    assert text.endswith(",-89.1\n")
    add(  # cut inside the last field: the line still splits into all its fields
        Case("truncated_last_line", D, text[:-2].encode(), **outcome(rows, {4: "has no line break"}))
    )
    k = next(n)
    rows = [tx(D, k, i) for i in range(5)]
    text = to_csv(rows)
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    add(
        Case(
            "truncated_mid_row",
            D,
            text[: len(text) - 1 - len(last) // 2].encode(),
            **outcome(rows, {4: "has no line break"}),
        )
    )
    k = next(n)
    rows = [tx(D, k, i, merchant=f"fraud_Café {i}" if i in (1, 3) else f"fraud_Merchant {k}-{i}") for i in range(5)]
    add(
        Case(
            "non_utf8_rows",
            D,
            to_csv(rows).encode("cp1252"),
            **outcome(rows, {1: "not UTF-8 text", 3: "not UTF-8 text"}),
        )
    )
    k = next(n)
    rows = [{**tx(D, k, i), "Währung": "USD"} for i in range(3)]
    add(  # an unreadable header is no header: its line is quarantined with the rows
        Case(
            "non_utf8_header",
            D,
            to_csv(rows, [*FEED, "Währung"]).encode("cp1252"),
            rows=4,
            quarantined=dict.fromkeys(range(1, 5), "the header line is not UTF-8 text"),
            absent={r["trans_num"] for r in rows},
            file_error="the header line is not UTF-8 text",
        )
    )
    k = next(n)
    rows = [tx(D, k, i) for i in range(3)]
    more = [tx(D, k, i) for i in range(3, 5)]
    text = to_csv(rows) + to_csv(more).replace("\n0,", "\n3,").replace("\n1,", "\n4,")  # two exports concatenated
    add(
        Case(
            "repeated_header_line",
            D,
            text.encode(),
            rows=6,
            validated={r["trans_num"]: r for r in rows + more},
            quarantined={5: "trans_date_trans_time missing or unparseable"},
        )
    )

    # ---- values
    k = next(n)
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
    add(Case("null_keys", D, to_csv(rows).encode(), **outcome(rows, {**bad, 5: "trans_num missing"})))
    k = next(n)
    amounts = ["-5.00", "0", "0.00", "-0.0", "-0.01"]
    rows = [tx(D, k, i, amt=a) for i, a in enumerate(amounts)] + [tx(D, k, 5, amt="0.01")]
    add(
        Case(
            "negative_and_zero_amounts",
            D,
            to_csv(rows).encode(),
            **outcome(rows, dict.fromkeys(range(5), "amt not in (0, 100000]")),
        )
    )
    k = next(n)
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
    add(Case("absurd_amounts", D, to_csv(rows).encode(), **outcome(rows, bad)))
    k = next(n)
    rows = [tx(D, k, i, category=c) for i, c in enumerate(["crypto", "GROCERY_POS", "grocery-pos", ""])]
    rows.append(tx(D, k, 4))
    bad = {0: "category unknown", 1: "category unknown", 2: "category unknown", 3: "category missing"}
    add(Case("unknown_category", D, to_csv(rows).encode(), **outcome(rows, bad)))
    k = next(n)
    rows = [
        tx(D, k, 0, lat="123.4"),
        tx(D, k, 1, long="-200"),
        tx(D, k, 2, merch_lat="-91"),
        tx(D, k, 3, merch_long="181"),
        tx(D, k, 4, lat="inf"),
        tx(D, k, 5, lat="-90", long="180", merch_lat="90", merch_long="-180"),
    ]
    bad = {0: "lat outside", 1: "long outside", 2: "merch_lat outside", 3: "merch_long outside", 4: "lat outside"}
    add(Case("lat_long_out_of_range", D, to_csv(rows).encode(), **outcome(rows, bad)))
    k = next(n)
    stamps = [f"{D - timedelta(days=1)} 23:59:59", f"{D1} 00:00:00", "2099-01-01 12:00:00"]
    rows = [tx(D, k, i, trans_date_trans_time=s) for i, s in enumerate(stamps)]
    rows += [tx(D, k, 3, trans_date_trans_time=f"{D} 00:00:00"), tx(D, k, 4, trans_date_trans_time=f"{D} 23:59:59")]
    add(
        Case(
            "timestamp_outside_day",
            D,
            to_csv(rows).encode(),
            **outcome(rows, dict.fromkeys(range(3), "trans_date_trans_time outside the logical day")),
        )
    )
    k = next(n)
    stamps = ["not a date", "2026-02-30 10:00:00", f"{D} 25:61:00", ""]
    rows = [tx(D, k, i, trans_date_trans_time=s) for i, s in enumerate(stamps)]
    rows += [tx(D, k, 4, dob="unknown"), tx(D, k, 5)]
    bad = dict.fromkeys(range(4), "trans_date_trans_time missing or unparseable") | {4: "dob missing or unparseable"}
    add(Case("unparseable_date", D, to_csv(rows).encode(), **outcome(rows, bad)))
    k = next(n)
    stamps = [f"{D:%d-%m-%Y} 14:35", f"{D:%m/%d/%Y} 14:35", f"{D:%d/%m/%Y} 14:35:00", f"{D:%d.%m.%Y %H:%M}"]
    rows = [tx(D, k, i, trans_date_trans_time=s) for i, s in enumerate(stamps)]
    rows += [tx(D, k, 4, dob="17/05/1980"), tx(D, k, 5, trans_date_trans_time=f"{D}T14:35:00")]  # ISO 'T': fine
    bad = dict.fromkeys(range(4), "trans_date_trans_time missing or unparseable") | {4: "dob missing or unparseable"}
    add(Case("date_other_format", D, to_csv(rows).encode(), **outcome(rows, bad)))
    k = next(n)
    spreadsheet = ["2.70319E+15", "4.00012E+15", "2.703186E+15", "2703186189652095.0", "2,70319E+15", "4.1111e15"]
    rows = [tx(D, k, i, cc_num=c) for i, c in enumerate(spreadsheet)] + [tx(D, k, 6)]
    add(
        Case(
            "cc_num_scientific",
            D,
            to_csv(rows).encode(),
            **outcome(rows, dict.fromkeys(range(6), "cc_num not a 12-19 digit card number")),
        )
    )
    k = next(n)
    rows = [tx(D, k, i) for i in range(4)]
    floats = [{**r, "cc_num": float(r["cc_num"])} for r in rows]  # a notebook's float64 card numbers
    add(
        Case(
            "cc_num_float_parquet",
            D,
            to_parquet(floats, FEED[1:], {"cc_num": pa.float64()}),
            **outcome(rows, dict.fromkeys(range(4), "cc_num not a 12-19 digit card number"), first_line=1),
            ext="parquet",
        )
    )

    # ---- duplicates within the day (the good feed sorts first: its copies are the first ones)
    k = next(n)
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
    add(Case("duplicate_trans_num_within_day", D, to_csv(rows).encode(), **expected))

    # ---- whole files of garbage
    k = next(n)
    gz = gzip.compress(to_csv([tx(D, k, i) for i in range(40)]).encode(), mtime=0)  # a .gz landed as .csv
    assert b"\n" in gz
    lines = lines_of(gz)
    add(
        Case(
            "garbage_binary",
            D,
            gz,
            rows=len(lines),
            quarantined=dict.fromkeys(lines, "file unreadable"),
            file_error="",
        )
    )
    blob = base64.b64encode(random.Random(8).randbytes(150_000)) + b"\n"  # noqa: S311 - test data
    add(
        Case(
            "garbage_text",
            D,
            blob,
            rows=1,
            quarantined={1: "cannot be split into fields"},
            file_error="cannot be split into fields",
        )
    )
    junk = b"PAR1" + random.Random(9).randbytes(3000) + b"PAR1"  # noqa: S311 - test data
    add(
        Case(
            "garbage_parquet",
            D,
            junk,
            rows=len(lines_of(junk)),
            quarantined=dict.fromkeys(lines_of(junk), "not a readable Parquet file"),
            file_error="not a readable Parquet file",
            ext="parquet",
        )
    )

    # ---- day D+1: trans_num seen on day D
    k = next(n)
    negative = next(c for c in cases if c.kind == "negative_and_zero_amounts")
    quarantined_on_d = sorted(negative.absent)[0]
    order = next(c for c in cases if c.kind == "wrong_column_order")
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
    add(Case("duplicate_trans_num_across_days", D1, to_csv(rows).encode(), **expected))
    return cases


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
    "truncated_last_line",
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


# --------------------------------------------------------------------------- the runs


def gate_file(rows: int) -> bytes:
    return to_csv([tx(D2, 900, i, amt="0") for i in range(rows)]).encode()


def labels_csv(frame: pd.DataFrame, day: date) -> bytes:
    rows = [(t, str(f), f"{day} 06:{i % 60:02d}:00") for i, (t, f) in enumerate(zip(*frame.values.T, strict=True))]
    return label_rows(rows)


@pytest.fixture(scope="module")
def lake(local_stack) -> Lake:
    """Every landing file of the module, in S3."""
    the_plan = plan()
    lake = Lake(local_stack.settings)
    for day in (D, D1, D2):
        lake.put_bytes(
            f"{partition_prefix(LANDING_TRANSACTIONS, day)}/{GOOD_FEED}", the_plan.simulator.day_csv_bytes(day)
        )
    lake.put_bytes(f"{partition_prefix(LANDING_TRANSACTIONS, D2)}/{GATE_FILE}", gate_file(the_plan.gate_rows))
    for day, frame in the_plan.good_labels.items():
        lake.put_bytes(f"{partition_prefix(LANDING_LABELS, day)}/{GOOD_LABELS}", labels_csv(frame, day))
    for case in [*the_plan.transactions.values(), *the_plan.labels.values()]:
        lake.put_bytes(case.key, case.data)
    return lake


@pytest.fixture(scope="module")
def tx_runs(local_stack, lake: Lake) -> dict[str, dict]:
    client = local_stack.airflow()
    client.wait_for_dag("transactions_daily", timeout=180)
    # Backfill first, then unpause: an unpause with the backfill created in the same instant once crashed the
    # scheduler on SQLite (StaleDataError on dag_run while it created the first scheduled run).
    client.create_backfill("transactions_daily", TX_DAYS[0], TX_DAYS[-1])
    client.set_paused("transactions_daily", False)
    runs = client.wait_for_backfill("transactions_daily", TX_DAYS, timeout=840)
    return {run["logical_date"][:10]: run for run in runs}


@pytest.fixture(scope="module")
def label_runs(local_stack, tx_runs: dict[str, dict]) -> dict[str, dict]:
    client = local_stack.airflow()
    client.wait_for_dag("labels_daily", timeout=180)
    # Backfill first, then unpause (see tx_runs).
    client.create_backfill("labels_daily", LABEL_DAYS[0], LABEL_DAYS[-1])
    client.set_paused("labels_daily", False)
    runs = client.wait_for_backfill("labels_daily", LABEL_DAYS, timeout=840)
    return {run["logical_date"][:10]: run for run in runs}


def task_states(local_stack, dag_id: str, run: dict) -> dict[str, dict]:
    return {ti["task_id"]: ti for ti in local_stack.airflow().task_instances(dag_id, run["dag_run_id"])}


def task_log(local_stack, dag_id: str, run: dict, task_id: str) -> str:
    """The task's log of its latest try, through the REST API (what the UI shows)."""
    client = local_stack.airflow()
    tries = task_states(local_stack, dag_id, run)[task_id]["try_number"]
    run_id = urllib.request.quote(run["dag_run_id"], safe="")
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{tries}?full_content=true"
    request = urllib.request.Request(f"{client.base_url}{path}")  # noqa: S310 - the local stack's API
    request.add_header("Authorization", f"Bearer {client.token()}")
    request.add_header("Accept", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        content = json.loads(response.read())["content"]
    return "\n".join(json.dumps(entry) if not isinstance(entry, str) else entry for entry in content)


@cache
def _partition(lake: Lake, dataset: str, day: date) -> pd.DataFrame:
    return lake.read_partition(dataset, day).to_pandas()


def quality_summary(lake: Lake, day: date) -> dict:
    return lake.get_json(lake.report_key(REPORTS_QUALITY, day, "summary.json"))


def check_case(case: Case, validated: pd.DataFrame, quarantine: pd.DataFrame) -> None:
    """The rows of one file (all of the same day): validated ones by trans_num, quarantined ones by source file
    and line."""
    assert case.rows == len(case.validated) + len(case.quarantined), "the test's own plan must add up"
    mine = quarantine[quarantine[SOURCE_FILE] == case.key]
    assert mine[SOURCE_LINE].is_unique
    assert set(mine[SOURCE_LINE]) == set(case.quarantined), mine[[SOURCE_LINE, REASON]].to_string()
    for line, reason in zip(mine[SOURCE_LINE], mine[REASON], strict=True):
        assert case.quarantined[line] in reason, (line, reason)
    assert mine[REASON].str.len().gt(0).all()
    kept = validated[validated["trans_num"].isin(set(case.validated))]
    assert sorted(kept["trans_num"]) == sorted(case.validated)  # each exactly once
    assert case.rows == len(kept) + len(mine)  # nothing lost, nothing counted twice
    assert not case.absent & set(validated["trans_num"].dropna())


def test_every_kind_has_a_case() -> None:
    the_plan = plan()
    assert sorted(the_plan.transactions) == sorted(TRANSACTION_KINDS)
    assert sorted(the_plan.labels) == sorted(LABEL_KINDS)


def test_the_good_days_run_through_and_the_gate_day_fails(local_stack, tx_runs: dict[str, dict]) -> None:
    for day in (D, D1):
        states = task_states(local_stack, "transactions_daily", tx_runs[day.isoformat()])
        assert tx_runs[day.isoformat()]["state"] == "success", {t: s["state"] for t, s in states.items()}
        assert {s["state"] for s in states.values()} <= {"success", "skipped"}
    assert tx_runs[D2.isoformat()]["state"] == "failed"


@pytest.mark.parametrize("kind", TRANSACTION_KINDS)
def test_bad_transactions_file(kind: str, lake: Lake, tx_runs) -> None:
    case = plan().transactions[kind]
    validated = _partition(lake, VALIDATED_TRANSACTIONS, case.day)
    quarantine = _partition(lake, QUARANTINE_TRANSACTIONS, case.day)
    check_case(case, validated, quarantine)
    kept = validated.set_index("trans_num")
    for trans_num, row in case.validated.items():  # the values of the copy that was kept, column by column
        got = kept.loc[trans_num]
        assert got["cc_num"] == row["cc_num"] and got["merchant"] == row["merchant"]
        assert got["category"] == row["category"] and got["amt"] == float(row["amt"])
        assert got["trans_date_trans_time"] == pd.Timestamp(row["trans_date_trans_time"])
    quarantined_text = quarantine[quarantine[SOURCE_FILE] == case.key]
    if case.ext == "csv" and case.file_error is None:  # rows kept as the text that arrived
        for line, raw in zip(quarantined_text[SOURCE_LINE], quarantined_text["_raw_line"], strict=True):
            assert pd.isna(raw) or raw, line
    [report] = [f for f in quality_summary(lake, case.day)["files"] if f["name"] == case.key]
    assert (report["rows"], report["validated"], report["quarantined"]) == (
        case.rows,
        len(case.validated),
        len(case.quarantined),
    )
    for name, value in case.report.items():
        assert report[name] == value
    if case.file_error is None:
        assert report["error"] is None
    else:
        assert case.key in report["error"] and case.file_error in report["error"]


def test_card_numbers_in_scientific_notation_never_become_another_card(lake: Lake, tx_runs) -> None:
    case = plan().transactions["cc_num_scientific"]
    quarantine = _partition(lake, QUARANTINE_TRANSACTIONS, D)
    mine = quarantine[quarantine[SOURCE_FILE] == case.key]
    texts = set(mine["cc_num"])
    assert {"2.70319E+15", "4.00012E+15", "2,70319E+15", "2703186189652095.0"} <= texts  # kept as they arrived
    expanded = {f"{float(t.replace(',', '.')):.0f}" for t in texts}
    validated = pd.concat([_partition(lake, VALIDATED_TRANSACTIONS, d) for d in (D, D1)])
    assert not expanded & set(validated["cc_num"])
    assert validated["cc_num"].str.fullmatch(r"\d{12,19}").all()


def test_day_totals_reconcile(lake: Lake, tx_runs) -> None:
    for day in (D, D1):
        summary = quality_summary(lake, day)
        validated = lake.partition_manifest(VALIDATED_TRANSACTIONS, day)["rows"]
        quarantined = lake.partition_manifest(QUARANTINE_TRANSACTIONS, day)["rows"]
        assert (summary["validated"], summary["quarantined"]) == (validated, quarantined)
        assert summary["rows_in"] == validated + quarantined == sum(f["rows"] for f in summary["files"])
        assert summary["held_back"] is False
        assert summary["quarantine_share"] <= summary["quarantine_share_limit"]
        keys = {f["name"] for f in summary["files"]}
        assert keys == set(lake.landing_files(LANDING_TRANSACTIONS, day))  # every landed file is accounted for
    good = plan().simulator.transactions(D)
    assert set(good["trans_num"]) <= set(_partition(lake, VALIDATED_TRANSACTIONS, D)["trans_num"])


def test_whole_file_rejects_are_named_in_the_task_log(local_stack, tx_runs) -> None:
    log = task_log(local_stack, "transactions_daily", tx_runs[D.isoformat()], VALIDATE)
    rejects = [c for c in plan().transactions.values() if c.day == D and c.file_error is not None]
    assert len(rejects) >= 5
    for case in rejects:
        lines = [line for line in log.splitlines() if "quarantining the whole file" in line and case.key in line]
        assert lines, case.key
        assert case.file_error in lines[0]
    for case in plan().transactions.values():  # one line per file with its counts
        if case.day == D:
            assert re.search(re.escape(case.key) + rf": {case.rows} row\(s\), {len(case.validated)} validated", log)
    cards = plan().cards
    assert not [card for card in cards if card in log]


def test_quarantine_gate_fails_clearly_and_publishes_the_quarantine(local_stack, lake: Lake, tx_runs) -> None:
    run = tx_runs[D2.isoformat()]
    states = task_states(local_stack, "transactions_daily", run)
    validate = states[VALIDATE]
    assert validate["state"] == "failed"
    assert validate["try_number"] == 1  # the same files would fail again: no retries
    assert states["quality.publish"]["state"] == "upstream_failed"
    log = task_log(local_stack, "transactions_daily", run, VALIDATE)
    limit = local_stack.settings.quarantine_share_limit
    rows = plan().gate_rows
    assert "QualityGateError" in log or "AirflowFailException" in log
    assert f"{rows} of " in log and f"above the limit of {limit:.1%}" in log and "held back" in log
    assert f"{QUARANTINE_TRANSACTIONS}/dt={D2}/" in log and GATE_FILE in log
    summary = quality_summary(lake, D2)
    assert summary["held_back"] is True and summary["quarantine_share"] > limit
    assert summary["quarantined"] == rows and summary["rows_in"] == rows + len(plan().simulator.transactions(D2))
    quarantine = lake.read_partition(QUARANTINE_TRANSACTIONS, D2).to_pandas()
    assert len(quarantine) == rows and (quarantine[SOURCE_FILE].str.endswith(GATE_FILE)).all()
    assert quarantine[REASON].eq("amt not in (0, 100000]").all()
    assert sorted(quarantine[SOURCE_LINE]) == list(range(2, rows + 2))
    assert lake.partition_manifest(QUARANTINE_TRANSACTIONS, D2)["metadata"]["held_back"] is True
    with pytest.raises(PartitionNotFound):
        lake.read_partition(VALIDATED_TRANSACTIONS, D2)  # nothing validated is published
    assert len(lake.landing_files(LANDING_TRANSACTIONS, D2)) == 2  # nothing deleted


def test_reports_hold_no_card_numbers_or_names(lake: Lake, tx_runs) -> None:
    the_plan = plan()
    keys = [k for day in (D, D1, D2) for k in lake.list_keys(partition_prefix(REPORTS_QUALITY, day) + "/")]
    assert any(k.endswith("summary.json") for k in keys) and any("/validations/" in k for k in keys)
    names = re.compile(r"\b(" + "|".join(sorted(map(re.escape, the_plan.names), key=len, reverse=True)) + r")\b")
    digits = re.compile(rb"\d{12,19}")
    for key in keys:
        data = lake.get_bytes(key)
        leaked = {m.decode() for m in digits.findall(data)} & the_plan.cards
        assert not leaked, key
        if "/static/" not in key:
            found = names.findall(data.decode("utf-8", "replace"))
            assert not found, (key, found[:5])


def test_label_days_run_through(local_stack, label_runs: dict[str, dict]) -> None:
    for day in LABEL_DAYS:
        states = task_states(local_stack, "labels_daily", label_runs[day])
        assert label_runs[day]["state"] == "success", {t: s["state"] for t, s in states.items()}


@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_bad_labels_file(kind: str, lake: Lake, label_runs) -> None:
    case = plan().labels[kind]
    stored = _partition(lake, LABELS, D1)
    quarantine = _partition(lake, QUARANTINE_LABELS, D1)
    check_case(case, stored, quarantine)
    kept = stored.set_index("trans_num")["is_fraud"]
    for trans_num, row in case.validated.items():
        assert kept[trans_num] == int(row["is_fraud"])


def test_conflicting_labels_leave_the_stored_label_alone(lake: Lake, label_runs) -> None:
    stored = plan().good_labels[D]
    day_d = _partition(lake, LABELS, D).set_index("trans_num")["is_fraud"]
    assert len(day_d) == len(stored)
    for trans_num, label in zip(stored["trans_num"], stored["is_fraud"], strict=True):
        assert day_d[trans_num] == label
    all_days = pd.concat([_partition(lake, LABELS, d) for d in (D, D1)])
    assert all_days["trans_num"].is_unique  # one label per transaction in the store


def test_label_totals_and_whole_file_rejects_are_logged(local_stack, lake: Lake, label_runs) -> None:
    landed = lake.landing_files(LANDING_LABELS, D1)
    stored, quarantined = (lake.partition_manifest(ds, D1)["rows"] for ds in (LABELS, QUARANTINE_LABELS))
    expected = len(plan().good_labels[D1]) + sum(c.rows for c in plan().labels.values())
    assert stored + quarantined == expected
    assert set(_partition(lake, QUARANTINE_LABELS, D1)[SOURCE_FILE]) <= set(landed)
    log = task_log(local_stack, "labels_daily", label_runs[D1.isoformat()], INGEST_LABELS)
    case = plan().labels["label_missing_column"]
    assert [line for line in log.splitlines() if "quarantining the whole file" in line and case.key in line]
    for case in plan().labels.values():
        assert re.search(re.escape(case.key) + rf": {case.rows} row\(s\), {len(case.validated)} validated", log)
