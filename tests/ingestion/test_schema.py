"""The canonical schemas: the validated partition's Arrow schema, the PII columns."""

from __future__ import annotations

from support import KAGGLE

from training_lib.ingestion.reader import read_transactions
from training_lib.ingestion.schema import (
    PII_COLUMNS,
    to_validated_arrow,
    transaction_arrow_schema,
)


def test_validated_arrow_schema_round_trip() -> None:
    table = to_validated_arrow(read_transactions(KAGGLE).frame)
    assert table.schema.equals(transaction_arrow_schema(with_label=True))
    assert table.column("cc_num").to_pylist() == ["2703186189652095", "630423337322"]


def test_pii_columns_are_flagged() -> None:
    assert {"cc_num", "first", "last", "street"} <= set(PII_COLUMNS)
