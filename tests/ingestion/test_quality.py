"""The GX quality gate: each expectation catches its bad row, counts reconcile, no card data in Data Docs."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest

from training_lib.ingestion.expectations import data_docs_files, load_suite
from training_lib.ingestion.quality import (
    QualityGateError,
    enforce_quarantine_limit,
    validate_labels,
    validate_transactions,
)
from training_lib.ingestion.quarantine import REASON, SOURCE_FILE, SOURCE_LINE
from training_lib.ingestion.schema import CATEGORIES, TRANSACTION_COLUMN_NAMES

DAY = date(2026, 3, 1)
HEADER = ["", *TRANSACTION_COLUMN_NAMES]


def good_row(i: int) -> dict[str, str]:
    return {
        "trans_date_trans_time": f"2026-03-01 {i % 24:02d}:{i % 60:02d}:07",
        "cc_num": f"4{i:015d}",
        "merchant": f"fraud_Merchant {i}",
        "category": CATEGORIES[i % len(CATEGORIES)],
        "amt": f"{10 + i * 1.5:.2f}",
        "first": f"Firstname{i}",
        "last": f"Lastname{i}",
        "gender": "F" if i % 2 else "M",
        "street": f"{i} Main Street",
        "city": "Springfield",
        "state": "IL",
        "zip": "62701",
        "lat": "39.78",
        "long": "-89.65",
        "city_pop": "116250",
        "job": "Engineer, civil",
        "dob": "1980-05-17",
        "trans_num": f"{i:032x}",
        "unix_time": "1772323627",
        "merch_lat": "39.9",
        "merch_long": "-89.1",
        "is_fraud": "0",
    }


def to_csv(rows: list[dict[str, str]], header: list[str] = HEADER, delimiter: str = ",") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    for index, row in enumerate(rows):
        writer.writerow([str(index) if h == "" else row.get(h, "") for h in header])
    return buffer.getvalue().encode()


BAD_VALUES = [
    ("amt", "-5.00", "amt not in (0, 100000]"),
    ("amt", "0", "amt not in (0, 100000]"),
    ("amt", "99999999", "amt not in (0, 100000]"),
    ("amt", "twelve", "amt missing or unparseable"),
    ("category", "crypto", "category unknown"),
    ("lat", "123.4", "lat outside [-90, 90]"),
    ("long", "-200", "long outside [-180, 180]"),
    ("merch_lat", "-91", "merch_lat outside [-90, 90]"),
    ("trans_date_trans_time", "2026-02-28 23:59:59", "trans_date_trans_time outside the logical day"),
    ("trans_date_trans_time", "01-03-2026 10:15", "trans_date_trans_time missing or unparseable"),
    ("trans_date_trans_time", "not a date", "trans_date_trans_time missing or unparseable"),
    ("cc_num", "2.70319E+15", "cc_num not a 12-19 digit card number"),
    ("cc_num", "12345", "cc_num not a 12-19 digit card number"),
    ("cc_num", "", "cc_num missing or unparseable"),
    ("trans_num", "", "trans_num missing or unparseable"),
    ("dob", "1850-01-01", "dob implausible (age outside 10-110 years)"),
    ("dob", "2024-01-01", "dob implausible (age outside 10-110 years)"),
    ("city_pop", "-3", "city_pop negative"),
    ("unix_time", "soon", "unix_time unparseable"),
    ("is_fraud", "7", "is_fraud unparseable"),
]


@pytest.mark.parametrize(("column", "value", "reason"), BAD_VALUES, ids=[f"{c}={v!r}" for c, v, _ in BAD_VALUES])
def test_each_expectation_catches_its_bad_row(column: str, value: str, reason: str) -> None:
    rows = [good_row(i) for i in range(5)]
    rows[2] = {**rows[2], column: value}
    outcome = validate_transactions([("day.csv", to_csv(rows))], DAY)
    assert len(outcome.validated) == 4
    assert len(outcome.quarantined) == 1
    bad = outcome.quarantined.iloc[0]
    assert reason in bad[REASON].split("; ")
    assert bad[SOURCE_FILE] == "day.csv"
    assert bad[SOURCE_LINE] == 4  # header is line 1, the third data row is line 4
    assert bad["trans_num"] == rows[2]["trans_num"] or column == "trans_num"
    assert (bad[column] or "") == value  # quarantine keeps the text as it arrived


def test_mixed_day_splits_exactly_into_good_and_bad_rows() -> None:
    rows = [good_row(i) for i in range(40)]
    corrupt = {3: ("amt", "-1"), 7: ("category", "??"), 11: ("cc_num", "2.70319E+15"), 19: ("lat", "95")}
    for index, (column, value) in corrupt.items():
        rows[index] = {**rows[index], column: value}
    rows.append(dict(rows[5]))  # exact duplicate of a good row: the first copy stays
    outcome = validate_transactions([("a.csv", to_csv(rows[:20])), ("b.csv", to_csv(rows[20:]))], DAY)
    assert outcome.rows_in == 41
    assert len(outcome.validated) + len(outcome.quarantined) == 41
    good_nums = {rows[i]["trans_num"] for i in range(40) if i not in corrupt}
    assert set(outcome.validated["trans_num"]) == good_nums
    assert len(outcome.validated) == len(good_nums) == 36
    dup = outcome.quarantined[outcome.quarantined[REASON].str.contains("repeated")]
    assert list(dup[SOURCE_FILE]) == ["b.csv"] and dup.iloc[0]["trans_num"] == rows[5]["trans_num"]
    summary = outcome.summary(limit=0.5)
    assert summary["validated"] == 36 and summary["quarantined"] == 5
    assert summary["reasons"]["amt not in (0, 100000]"] == 1


def test_validated_rows_are_typed_and_complete() -> None:
    outcome = validate_transactions([("day.csv", to_csv([good_row(i) for i in range(3)]))], DAY)
    frame = outcome.validated
    assert list(frame.columns) == list(TRANSACTION_COLUMN_NAMES)
    assert str(frame["amt"].dtype) == "float64"
    assert str(frame["trans_date_trans_time"].dtype).startswith("datetime64")
    assert frame["cc_num"].iloc[1] == "4000000000000001"  # the real number, unmasked, in the validated zone


def test_trans_num_seen_on_an_earlier_day_is_quarantined() -> None:
    rows = [good_row(i) for i in range(4)]
    outcome = validate_transactions([("day.csv", to_csv(rows))], DAY, earlier_trans_nums={rows[1]["trans_num"]})
    assert list(outcome.quarantined["trans_num"]) == [rows[1]["trans_num"]]
    assert outcome.quarantined.iloc[0][REASON] == "trans_num already ingested on an earlier day"


def test_unsplittable_lines_are_quarantined_with_their_line_number() -> None:
    data = to_csv([good_row(i) for i in range(3)]) + b"99,2026-03-01 10:00:00,4111\n"
    outcome = validate_transactions([("cut.csv", data)], DAY)
    assert len(outcome.validated) == 3
    bad = outcome.quarantined.iloc[0]
    assert bad[SOURCE_LINE] == 5 and "fields" in bad[REASON] and bad["_raw_line"].startswith("99,")


def test_a_file_without_required_columns_is_quarantined_whole() -> None:
    header = [h for h in HEADER if h != "amt"]
    data = to_csv([good_row(i) for i in range(3)], header=header)
    outcome = validate_transactions([("noamt.csv", data), ("ok.csv", to_csv([good_row(9)]))], DAY)
    assert len(outcome.validated) == 1
    assert len(outcome.quarantined) == 3
    assert outcome.quarantined[REASON].str.contains("missing required column").all()
    assert outcome.quarantined[REASON].str.contains("amt").all()
    assert outcome.files[0].error and "noamt.csv" in outcome.files[0].error


def test_garbage_file_is_quarantined_line_by_line() -> None:
    garbage = b"\x00\x01binary junk\nmore junk\xff\xfe\n\nlast line"
    outcome = validate_transactions([("junk.bin", garbage)], DAY)
    # no known column name on line 1: it is data, not a header, and is quarantined too
    assert outcome.rows_in == 3 and len(outcome.quarantined) == 3 and len(outcome.validated) == 0
    assert list(outcome.quarantined[SOURCE_LINE]) == [1, 2, 4]
    assert outcome.quarantined["_raw_line"][1] == "more junk\\xff\\xfe"  # the bytes as they were
    assert outcome.files[0].quarantined == 3 and outcome.files[0].validated == 0


def test_semicolon_file_with_reordered_and_extra_columns_is_accepted() -> None:
    header = [*reversed(TRANSACTION_COLUMN_NAMES), "loyalty_tier"]
    rows = [{**good_row(i), "loyalty_tier": "gold"} for i in range(4)]
    outcome = validate_transactions([("export.csv", to_csv(rows, header=header, delimiter=";"))], DAY)
    assert len(outcome.validated) == 4
    assert outcome.files[0].delimiter == ";" and outcome.files[0].extra_columns == ["loyalty_tier"]


def test_the_gate_fails_loudly_above_the_limit() -> None:
    rows = [{**good_row(i), "amt": "-1" if i < 3 else "5"} for i in range(10)]
    outcome = validate_transactions([("day.csv", to_csv(rows))], DAY)
    enforce_quarantine_limit(outcome, limit=0.5)  # 30 % is within 50 %
    with pytest.raises(QualityGateError, match="3 of 10 rows"):
        enforce_quarantine_limit(outcome, limit=0.05)


def test_data_docs_are_built_without_card_numbers_or_names(tmp_path) -> None:
    rows = [good_row(i) for i in range(6)]
    rows[1] = {**rows[1], "cc_num": "4111-1111-1111-1111"}  # a full PAN that fails the digit check
    rows[2] = {**rows[2], "amt": "-3"}
    outcome = validate_transactions([("day.csv", to_csv(rows))], DAY, docs_dir=tmp_path)
    published = data_docs_files(tmp_path)
    pages = [path for relative, path in published if relative.endswith(".html")]
    assert any("validations/" in relative for relative, _ in published)
    text = "\n".join(page.read_text(errors="replace") for page in pages)
    assert "-3" in text or "-3.0" in text  # the docs do show failing values
    for row in rows:
        assert row["cc_num"] not in text and row["cc_num"].replace("-", "") not in text
        assert row["first"] not in text and row["last"] not in text and row["street"] not in text
    assert outcome.data_docs_dir == tmp_path
    assert not any(relative.startswith("static/fonts/") for relative, _ in published)


def test_suite_file_lists_the_schema_categories() -> None:
    suite = load_suite("transactions")
    sets = [
        e["kwargs"]["value_set"]
        for e in suite["expectations"]
        if e["kwargs"].get("column") == "category" and e["type"] == "expect_column_values_to_be_in_set"
    ]
    assert sets == [list(CATEGORIES)]
    assert all(e["meta"]["reason"] for e in suite["expectations"])


def label_csv(rows: list[tuple[str, str, str]]) -> bytes:
    return ("trans_num,is_fraud,confirmed_at\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows)).encode()


def test_labels_quarantine_unknown_conflicting_and_repeated() -> None:
    known = {"t1", "t2", "t3", "t4"}
    rows = [
        ("t1", "1", "2026-03-01 08:00:00"),
        ("t2", "0", "2026-03-01 08:00:00"),
        ("zz", "0", "2026-03-01 08:00:00"),  # unknown transaction
        ("t3", "1", "2026-03-01 08:00:00"),
        ("t3", "0", "2026-03-01 09:00:00"),  # conflicts within the batch
        ("t2", "0", "2026-03-01 10:00:00"),  # identical repeat
        ("t4", "1", "2026-03-01 08:00:00"),  # conflicts with the store (stored as 0)
        ("t1", "maybe", "2026-03-01 08:00:00"),
    ]
    outcome = validate_labels([("labels.csv", label_csv(rows))], DAY, known, stored_labels={"t4": 0})
    assert outcome.rows_in == 8
    assert sorted(outcome.validated["trans_num"]) == ["t1", "t2"]
    reasons = dict(zip(outcome.quarantined[SOURCE_LINE], outcome.quarantined[REASON], strict=True))
    assert "trans_num of no ingested transaction" in reasons[4]
    assert "conflicting labels for the same trans_num" in reasons[5]
    assert "conflicting labels for the same trans_num" in reasons[6]
    assert reasons[7] == "label repeated within the day"
    assert "conflicting labels for the same trans_num" in reasons[8]
    assert "is_fraud missing or not 0/1" in reasons[9]


def test_a_repeated_trans_num_keeps_the_first_copy_that_passes() -> None:
    rows = [good_row(i) for i in range(3)]
    rows.insert(1, {**rows[2], "amt": "-4"})  # a bad first copy of row 2's trans_num, then the corrected one
    rows.append(dict(rows[0]))  # an exact repeat of row 0
    outcome = validate_transactions([("day.csv", to_csv(rows))], DAY)
    assert sorted(outcome.validated["trans_num"]) == sorted(r["trans_num"] for r in rows[:1] + rows[2:4])
    reasons = dict(zip(outcome.quarantined[SOURCE_LINE], outcome.quarantined[REASON], strict=True))
    assert reasons == {
        3: "amt not in (0, 100000]; trans_num repeated within the day",
        6: "trans_num repeated within the day",
    }
    assert (outcome.files[0].rows, outcome.files[0].validated, outcome.files[0].quarantined) == (5, 3, 2)


def test_the_gate_error_names_where_the_quarantine_is() -> None:
    rows = [{**good_row(i), "amt": "0"} for i in range(3)]
    outcome = validate_transactions([("zero.csv", to_csv(rows))], DAY)
    with pytest.raises(QualityGateError, match=r"held back.*in s3://b/q/dt=2026-03-01/.*zero\.csv', 3, 3"):
        enforce_quarantine_limit(outcome, limit=0.05, quarantine_uri="s3://b/q/dt=2026-03-01/")


def test_a_label_identical_to_the_store_is_not_stored_twice() -> None:
    rows = [
        ("t1", "1", "2026-03-01 08:00:00"),  # already stored as 1
        ("t2", "0", "2026-02-28 08:00:00"),  # confirmed the day before: quarantined ...
        ("t2", "0", "2026-03-01 09:00:00"),  # ... so this copy is the one kept
    ]
    outcome = validate_labels([("labels.csv", label_csv(rows))], DAY, {"t1", "t2"}, stored_labels={"t1": 1})
    assert list(outcome.validated["trans_num"]) == ["t2"]
    reasons = dict(zip(outcome.quarantined[SOURCE_LINE], outcome.quarantined[REASON], strict=True))
    assert reasons == {
        2: "label already stored on an earlier day",
        3: "confirmed_at outside the logical day; label repeated within the day",
    }
