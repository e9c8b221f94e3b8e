"""The canonical transaction and label schemas: columns, categories, the validated partitions' Arrow schemas.

The layout is the public Sparkov/Kaggle ``fraudTrain.csv`` / ``fraudTest.csv``: an unnamed index
column (optional), then 22 named columns and ``is_fraud`` (optional in a daily feed, where labels
arrive later in their own files). :mod:`training_lib.ingestion.reader` reads files into these columns.

``cc_num`` is an identifier: always text, never a float.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "string" | "float" | "int" | "timestamp" | "date" | "label"
    required: bool = True
    pii: bool = False  # identifies a person: never leaves the validated zone, never a model input
    description: str = ""


TRANSACTION_COLUMNS: tuple[Column, ...] = (
    Column("trans_date_trans_time", "timestamp", description="Transaction time, UTC, 'YYYY-MM-DD HH:MM:SS'"),
    Column(
        "cc_num",
        "string",
        pii=True,
        description="Card number (PAN), 12-19 digits, as text (11 Luhn-valid digits: a lost leading zero, put back)",
    ),
    Column("merchant", "string", description="Merchant name"),
    Column("category", "string", description="Merchant category (one of CATEGORIES)"),
    Column("amt", "float", description="Amount in USD"),
    Column("first", "string", pii=True, description="Card holder first name"),
    Column("last", "string", pii=True, description="Card holder last name"),
    Column("gender", "string", description="Card holder gender, M or F"),
    Column("street", "string", pii=True, description="Card holder street address"),
    Column("city", "string", description="Card holder city"),
    Column("state", "string", description="Card holder state (2 letters)"),
    Column("zip", "string", description="Card holder ZIP code, 5 digits as text"),
    Column("lat", "float", description="Card holder home latitude"),
    Column("long", "float", description="Card holder home longitude"),
    Column("city_pop", "int", description="Population of the card holder's city"),
    Column("job", "string", description="Card holder job"),
    Column("dob", "date", pii=True, description="Card holder date of birth"),
    Column("trans_num", "string", description="Unique transaction id (32 hex characters in Sparkov)"),
    Column("unix_time", "int", description="Transaction time as a Unix timestamp (Sparkov's is shifted)"),
    Column("merch_lat", "float", description="Merchant latitude"),
    Column("merch_long", "float", description="Merchant longitude"),
    Column("is_fraud", "label", required=False, description="1 fraud, 0 legitimate; absent in a daily feed"),
)
TRANSACTION_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in TRANSACTION_COLUMNS)
REQUIRED_TRANSACTION_COLUMNS: tuple[str, ...] = tuple(c.name for c in TRANSACTION_COLUMNS if c.required)
PII_COLUMNS: tuple[str, ...] = tuple(c.name for c in TRANSACTION_COLUMNS if c.pii)

LABEL_COLUMNS: tuple[Column, ...] = (
    Column("trans_num", "string", description="Transaction the label confirms"),
    Column("is_fraud", "label", description="1 fraud (chargeback), 0 confirmed legitimate"),
    Column("confirmed_at", "timestamp", description="When the label was confirmed, UTC"),
)
LABEL_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in LABEL_COLUMNS)

# Sparkov's merchant categories (its merchants' names all start with "fraud_"; that is not a label).
CATEGORIES: tuple[str, ...] = (
    "entertainment",
    "food_dining",
    "gas_transport",
    "grocery_net",
    "grocery_pos",
    "health_fitness",
    "home",
    "kids_pets",
    "misc_net",
    "misc_pos",
    "personal_care",
    "shopping_net",
    "shopping_pos",
    "travel",
)
ONLINE_CATEGORIES: tuple[str, ...] = ("grocery_net", "misc_net", "shopping_net")


def transaction_arrow_schema(with_label: bool = True) -> pa.Schema:
    """Arrow schema of a validated transactions partition."""
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "float": pa.float64(),
        "int": pa.int64(),
        "timestamp": pa.timestamp("us"),
        "date": pa.date32(),
        "label": pa.int8(),
    }
    return pa.schema(
        [
            pa.field(c.name, types[c.kind], nullable=not c.required or c.kind == "label")
            for c in TRANSACTION_COLUMNS
            if with_label or c.kind != "label"
        ]
    )


def label_arrow_schema() -> pa.Schema:
    """Arrow schema of the label store (``labels/dt=D/``)."""
    import pyarrow as pa

    return pa.schema([("trans_num", pa.string()), ("is_fraud", pa.int8()), ("confirmed_at", pa.timestamp("us"))])


def to_validated_arrow(frame: pd.DataFrame) -> pa.Table:
    """A normalised transactions frame as an Arrow table with the validated-partition schema."""
    import pyarrow as pa

    with_label = "is_fraud" in frame.columns
    schema = transaction_arrow_schema(with_label=with_label)
    columns = [c.name for c in TRANSACTION_COLUMNS if with_label or c.kind != "label"]
    out = frame[columns].copy()
    out["dob"] = out["dob"].dt.date
    return pa.Table.from_pandas(out, schema=schema, preserve_index=False)
