"""The reader: Kaggle-layout CSV and Parquet files as they are published, every row accounted for."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import KAGGLE

from training_lib.ingestion.reader import SchemaError, read_labels, read_transactions
from training_lib.ingestion.schema import (
    TRANSACTION_COLUMN_NAMES,
)


def test_kaggle_file_with_its_unnamed_index_column() -> None:
    result = read_transactions(KAGGLE, name="fraudTrain.csv")
    frame = result.frame
    assert list(frame.columns) == list(TRANSACTION_COLUMN_NAMES)
    assert len(frame) == 2 and result.rejected.empty and result.parse_errors.empty
    assert frame["cc_num"].tolist() == ["2703186189652095", "630423337322"]
    assert frame["merchant"][0] == "fraud_Rippin, Kub and Mann"  # quoted comma kept
    assert frame["amt"].tolist() == [4.97, 107.23]
    assert frame["trans_date_trans_time"][1] == pd.Timestamp("2019-01-01 00:00:44")
    assert frame["dob"][0] == pd.Timestamp("1988-03-09")
    assert frame["is_fraud"].tolist() == [0, 0]
    assert list(result.line_numbers) == [2, 3]
    assert result.extra_columns == []


@pytest.mark.parametrize(
    "transform",
    [
        lambda b: b.replace(b",trans_date", b"Unnamed: 0,trans_date", 1),  # pandas' to_csv of the read file
        lambda b: b"\n".join(line.split(b",", 1)[1] for line in b.split(b"\n") if line) + b"\n",  # no index
        lambda b: b.replace(b"\n", b"\r\n"),  # Windows line ends
        lambda b: b"\xef\xbb\xbf" + b,  # UTF-8 byte-order mark
    ],
    ids=["Unnamed: 0", "no index column", "CRLF", "BOM"],
)
def test_kaggle_variants_read_the_same(transform) -> None:
    expected = read_transactions(KAGGLE).frame
    result = read_transactions(transform(KAGGLE))
    assert result.rejected.empty and result.parse_errors.empty
    pd.testing.assert_frame_equal(result.frame, expected)


def test_parquet_input_with_integer_card_numbers_and_zip() -> None:
    frame = pd.read_csv(io.BytesIO(KAGGLE), index_col=0)  # what a notebook writes: cc_num and zip as int64
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    result = read_transactions(buffer.getvalue(), name="day.parquet")
    assert result.frame["cc_num"].tolist() == ["2703186189652095", "630423337322"]
    assert result.frame["zip"].tolist() == ["28654", "99160"]
    assert result.parse_errors.empty


def test_parquet_with_float_card_numbers_never_yields_another_card() -> None:
    frame = pd.read_csv(io.BytesIO(KAGGLE), index_col=0)
    frame["cc_num"] = frame["cc_num"].astype(float)
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame), buffer)
    result = read_transactions(buffer.getvalue(), name="floats.parquet")
    assert not result.frame["cc_num"].str.fullmatch(r"\d{12,19}").any()  # text like '2703186189652095.0'


def test_an_eleven_digit_card_number_gets_its_lost_leading_zero_back_and_no_other_length_changes() -> None:
    # the public Kaggle files store cc_num as integers: the 12-digit Maestro card 060416207185 reads 60416207185
    lost = read_transactions(KAGGLE.replace(b"630423337322", b"60416207185")).frame["cc_num"].tolist()
    kept = read_transactions(KAGGLE.replace(b"630423337322", b"060416207185")).frame["cc_num"].tolist()
    assert lost == kept == ["2703186189652095", "060416207185"]  # one card, so one token and one history
    for other in (b"6041620718", b"6041620718512", b"0604162071"):  # 10, 13 digits, a 10-digit with a zero
        assert read_transactions(KAGGLE.replace(b"630423337322", other)).frame["cc_num"][1] == other.decode()
    # a damaged number (a digit lost at the end) fails the Luhn check: never turned into a made-up card
    assert read_transactions(KAGGLE.replace(b"630423337322", b"63042333732")).frame["cc_num"][1] == "63042333732"
    frame = pd.read_csv(io.BytesIO(KAGGLE.replace(b"630423337322", b"060416207185")), index_col=0)
    assert frame["cc_num"].tolist()[1] == 60416207185  # an integer-typed column, as the public files are
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    assert read_transactions(buffer.getvalue(), name="day.parquet").frame["cc_num"][1] == "060416207185"


def test_zip_codes_lose_no_leading_zero() -> None:
    data = KAGGLE.replace(b",NC,28654,", b",MA,2134,")
    assert read_transactions(data).frame["zip"][0] == "02134"


def test_unsplittable_and_non_utf8_lines_are_rejected_with_line_numbers() -> None:
    bad_bytes = KAGGLE.split(b"\n")[1].replace(b"Jennifer", b"Jos\xe9")  # Latin-1 in a UTF-8 file
    data = KAGGLE + bad_bytes + b"\n" + b"7,2019-01-01 00:09:00,4111\n"
    result = read_transactions(data)
    assert len(result.frame) == 2
    assert result.rejected["line"].tolist() == [4, 5]
    assert "UTF-8" in result.rejected["error"][0] and "fields" in result.rejected["error"][1]
    assert result.rows_read == 4


def test_parse_errors_name_row_column_and_value() -> None:
    data = KAGGLE.replace(b"4.97", b"4,97").replace(b"2019-01-01 00:00:44", b"01/01/2019 00:00")
    result = read_transactions(data)
    assert result.rejected["line"].tolist() == [2]  # "4,97" adds a field: the line cannot be split
    errors = result.parse_errors.set_index("column")["value"].to_dict()
    assert errors == {"trans_date_trans_time": "01/01/2019 00:00"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"trans_num;amt\n1;2\n", "missing required column"),
        (b"a|b|c\n", "missing required column"),
    ],
)
def test_files_that_cannot_be_transactions_raise_naming_the_file(data: bytes, message: str) -> None:
    with pytest.raises(SchemaError, match=message) as error:
        read_transactions(data, name="landing/x.csv")
    assert "landing/x.csv" in str(error.value)


def test_header_only_file_has_no_rows() -> None:
    result = read_transactions(KAGGLE.split(b"\n")[0] + b"\n")
    assert result.rows_read == 0 and list(result.frame.columns) == list(TRANSACTION_COLUMN_NAMES)


def test_a_file_without_header_never_echoes_its_first_line() -> None:
    no_header = b"\n".join(KAGGLE.split(b"\n")[1:])
    with pytest.raises(SchemaError) as error:
        read_transactions(no_header, name="noheader.csv")
    text = str(error.value)
    assert "2703186189652095" not in text and "Jennifer" not in text and "Banks" not in text
    assert "header line missing" in text


def test_label_files() -> None:
    result = read_labels(b"trans_num,is_fraud,confirmed_at\nabc,1,2026-01-08 10:00:00\ndef,2,2026-01-08 10:00:00\n")
    assert result.frame["is_fraud"].tolist()[0] == 1 and pd.isna(result.frame["is_fraud"][1])
    assert result.parse_errors["column"].tolist() == ["is_fraud"]


def test_a_huge_field_is_a_rejected_line_and_a_huge_first_line_a_file_error() -> None:
    result = read_transactions(KAGGLE + b"2," + b"x" * 200_000 + b"\n")
    assert len(result.frame) == 2 and result.rejected["line"].tolist() == [4]
    assert "cannot be split" in result.rejected["error"][0]
    with pytest.raises(SchemaError, match="cannot be split into fields") as error:
        read_transactions(b"A" * 200_000 + b"\n", name="blob.csv")
    assert error.value.first_data_line == 1  # no header: line 1 is data, to be quarantined


@pytest.mark.parametrize(
    "encode",
    [lambda b: b.replace(b"\n", b"\r"), lambda b: b.decode().encode("utf-16")],
    ids=["CR line ends", "UTF-16 with BOM"],
)
def test_old_mac_and_utf16_exports_read_the_same(encode) -> None:
    result = read_transactions(encode(KAGGLE))
    assert result.rejected.empty and result.parse_errors.empty
    pd.testing.assert_frame_equal(result.frame, read_transactions(KAGGLE).frame)


def test_whole_numbers_beyond_float_precision_are_unparseable_never_wrapped() -> None:
    data = KAGGLE.replace(b",3495,", b",1e30,").replace(b"1325376044", b"1e300")
    result = read_transactions(data)
    assert result.frame["city_pop"].isna()[0] and result.frame["unix_time"].isna()[1]
    assert sorted(result.parse_errors["column"]) == ["city_pop", "unix_time"]


def test_null_spellings_are_missing_values() -> None:
    data = KAGGLE.replace(b"0b242abb623afc578575680df30655b9", b"NULL").replace(b",Orient,", b",#N/A,")
    frame = read_transactions(data).frame
    assert frame["trans_num"].isna()[0] and frame["city"].isna()[1]


def test_a_complete_last_line_without_line_break_is_a_row() -> None:
    result = read_transactions(KAGGLE[:-1])  # many exporters end the file without a line break
    assert result.rejected.empty and result.parse_errors.empty and result.unterminated_last_line == 3
    pd.testing.assert_frame_equal(result.frame, read_transactions(KAGGLE).frame)
    assert read_transactions(KAGGLE).unterminated_last_line is None


def test_a_last_line_cut_off_is_rejected_with_its_line_number() -> None:
    cut_fields = read_transactions(KAGGLE[:-4])  # '...,-118.18646': the is_fraud field is gone
    assert len(cut_fields.frame) == 1 and cut_fields.rejected["line"].tolist() == [3]
    assert "no line break: the file may be cut off there (has 22 fields" in cut_fields.rejected["error"][0]
    quoted = KAGGLE.replace(b"Special educational needs teacher,", b'"Special educational needs teacher,')
    open_quote = read_transactions(quoted[: quoted.index(b"needs")])  # cut inside a quoted field
    assert len(open_quote.frame) == 1 and open_quote.rejected["line"].tolist() == [3]
    assert open_quote.rejected["error"][0] == "is the last line and has no line break: the file may be cut off there"
    assert cut_fields.unterminated_last_line is None and open_quote.unterminated_last_line is None
    # text after a closing quote splits as on any other line (only an unclosed quote means cut off)
    spaced = read_transactions(
        KAGGLE.replace(b"Special educational needs teacher,", b'"Special educational needs teacher" ,')[:-1]
    )
    assert spaced.rejected.empty and spaced.unterminated_last_line == 3
    assert spaced.frame["job"][1] == "Special educational needs teacher"
    # a cut right after a delimiter still splits into every field: nothing can tell, the line is named
    looks_complete = read_transactions(KAGGLE[:-2])  # '...,-118.186462,': is_fraud empty
    assert looks_complete.rejected.empty and looks_complete.unterminated_last_line == 3
    assert looks_complete.frame["is_fraud"].isna().tolist() == [False, True]


def test_parquet_without_a_required_column_carries_its_rows_for_quarantine() -> None:
    frame = pd.read_csv(io.BytesIO(KAGGLE), index_col=0).drop(columns=["amt"])
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    with pytest.raises(SchemaError, match=r"missing required column\(s\) \['amt'\]") as error:
        read_transactions(buffer.getvalue(), name="noamt.parquet")
    assert [number for number, _ in error.value.records] == [1, 2]
    assert "0b242abb623afc578575680df30655b9" in error.value.records[0][1]
