"""The PII scanner (tests/pii_scan.py) finds planted card numbers and names wherever they hide, and only them."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pii_scan import PiiScanner, distinctive_last_names

CARD = "4532015112830366"  # a Luhn-valid test number of the planted "input"
OTHER_CARD = "371449635398431"
NOT_A_CARD = "4532015112830367"


@pytest.fixture
def scanner() -> PiiScanner:
    return PiiScanner(
        card_numbers=[CARD, OTHER_CARD],
        customers=[("Jane", "Kirlin"), ("John", "Smith")],
        distinctive_last=["Kirlin"],
        ignore_phrases=["fraud_Kirlin and Sons", "fraud_Smith-Kirlin"],
    )


def kinds(findings) -> list[tuple[str, str]]:
    return sorted({(f.kind, f.value) for f in findings})


def test_card_in_compressed_parquet_is_found_only_by_decoding(scanner: PiiScanner) -> None:
    cards = pa.array([CARD, *[str(n) for n in range(4000)]] * 3)
    buffer = io.BytesIO()
    pq.write_table(pa.table({"trans_num": pa.array(["t"] * len(cards)), "card": cards}), buffer, compression="zstd")
    data = buffer.getvalue()
    assert CARD.encode() not in data  # the bytes alone would hide it
    findings = scanner.scan_bytes(data, "predictions.parquet")
    assert kinds(findings) == [("card number", "************0366")]
    assert findings[0].where == "predictions.parquet!parquet"


def test_card_in_a_compressed_arrow_ipc_file(scanner: PiiScanner) -> None:
    sink = io.BytesIO()
    table = pa.table({"cc_num": pa.array([OTHER_CARD] + [str(n) for n in range(3000)])})
    with pa.ipc.new_file(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_table(table)
    data = sink.getvalue()
    assert OTHER_CARD.encode() not in data
    (finding,) = scanner.scan_bytes(data, "score-2026-01-06/day-00000.arrow")
    assert finding.where.endswith("!arrow") and finding.value.endswith("8431")


def test_card_as_int64_column_and_as_raw_int64_bytes(scanner: PiiScanner) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"cc_num": pa.array([int(CARD), 7], pa.int64())}), buffer, compression="snappy")
    findings = scanner.scan_bytes(buffer.getvalue(), "x.parquet")
    assert ("x.parquet!parquet", "************0366") in [(f.where, f.value) for f in findings]
    raw = b"\x00\x01\x02" + np.array([int(OTHER_CARD)], dtype="<i8").tobytes() + b"tail"
    (finding,) = scanner.scan_bytes(raw, "array.bin")
    assert finding.kind == "card number" and "(int64 <i8)" in finding.value


def test_card_in_html_plain_and_entity_encoded(scanner: PiiScanner) -> None:
    page = f"<html><body><td>{CARD}</td></body></html>".encode()
    assert kinds(scanner.scan_bytes(page, "report.html")) == [("card number", "************0366")]
    encoded = "".join(f"&#{ord(c)};" for c in OTHER_CARD)
    (finding,) = scanner.scan_bytes(f"<p>card {encoded}</p>".encode(), "docs/index.html")
    assert finding.where == "docs/index.html (html-unescaped)"


def test_card_in_gzip_and_in_a_zip_member(scanner: PiiScanner) -> None:
    compressed = gzip.compress(f"log line cc={CARD}\n".encode() * 50)
    assert CARD.encode() not in compressed
    (finding,) = scanner.scan_bytes(compressed, "task.log.gz")
    assert finding.where == "task.log.gz!gunzip"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("model/clean.json", json.dumps({"features": ["amt"]}))
        zipped.writestr("model/leak.txt", f"{OTHER_CARD} " * 40)
    (finding,) = scanner.scan_bytes(archive.getvalue(), "model.skops")
    assert finding.where == "model.skops!model/leak.txt" and finding.value.endswith("8431")


def test_card_inside_a_longer_digit_run_and_as_a_full_precision_float(scanner: PiiScanner) -> None:
    assert kinds(scanner.scan_text(f"id=99{CARD}12", "t")) == [("card number", "************0366")]
    assert len(scanner.scan_text("4.532015112830366e+15", "t")) == 1
    # digits already lost (a spreadsheet's 4.53202E+15) and a different number are not this card
    assert scanner.scan_text(f"4.53202E+15 {NOT_A_CARD} 45320151128303", "t") == []


def test_card_in_sqlite_and_in_a_pickle(scanner: PiiScanner, tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE params (key TEXT, value INTEGER)")
        connection.execute("INSERT INTO params VALUES ('card', ?)", (int(CARD),))  # stored as a binary integer
    connection.close()
    findings = scanner.scan_file(db, "mlflow.db")
    assert any(f.where == "mlflow.db!sqlite-dump" for f in findings), findings
    pickled = pickle.dumps({"holder": ("Jane", "Kirlin"), "numbers": [int(OTHER_CARD)]}, protocol=5)
    assert kinds(scanner.scan_bytes(pickled, "model.pkl")) == [
        ("card number", "***********8431"),
        ("full name", "Jane Kirlin"),
    ]


def test_names_full_csv_json_and_distinctive_last_name_alone(scanner: PiiScanner) -> None:
    assert kinds(scanner.scan_text("holder: John Smith", "t")) == [("full name", "John Smith")]
    assert kinds(scanner.scan_text("2026-01-01,John,Smith,M", "t")) == [("full name", "John Smith")]
    record = json.dumps({"first": "Jane", "last": "Kirlin", "zip": "12345"})
    assert kinds(scanner.scan_text(record, "t")) == [("full name", "Jane Kirlin")]
    assert kinds(scanner.scan_text("owner=Kirlin", "t")) == [("last name", "Kirlin")]
    # a common surname alone, a merchant made of last names, other capitalisation and a longer word: no hit
    assert scanner.scan_text("Smith; fraud_Kirlin and Sons; fraud_Smith-Kirlin; KIRLINS kirlin", "t") == []


def test_tree_scan_names_the_file_and_lists_what_it_read(scanner: PiiScanner, tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "clean.log").write_text("nothing to see\n")
    (tmp_path / "logs" / "task.log").write_text(f"INFO row {{'cc_num': '{CARD}'}}\n")
    report = scanner.scan_tree(tmp_path)
    assert sorted(report.scanned) == ["logs/clean.log", "logs/task.log"]
    assert [(f.where, f.kind) for f in report.findings] == [("logs/task.log", "card number")]
    assert CARD not in report.summary()  # the failure message masks the card


def test_distinctive_last_names_leave_out_words_first_names_and_places() -> None:
    chosen = distinctive_last_names(
        ["Kirlin", "Black", "Jordan", "Washington", "Kub", "Schumm"],
        first_names=["Jordan"],
        other_words=["Washington Street", "Mill"],
    )
    assert chosen == {"Kirlin", "Schumm"}


def test_a_broken_archive_is_an_error_not_a_silent_skip(scanner: PiiScanner) -> None:
    with pytest.raises(ValueError, match=r"bundle\.zip: looks like an archive"):
        scanner.scan_bytes(b"PK\x03\x04" + b"\x00" * 40, "bundle.zip")


def test_scanner_needs_card_numbers_as_digit_strings() -> None:
    with pytest.raises(ValueError, match="digit strings"):
        PiiScanner(["4.5e15"], [])
