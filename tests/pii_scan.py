"""A scanner for card numbers and customer names in whatever the platform wrote (a test helper).

:class:`PiiScanner` is built from the input's secrets (``PiiScanner.from_simulator``): every card number
(``cc_num``) and every customer's first and last name. It scans text, bytes, files, folders and an S3
bucket, and decodes what would otherwise hide a string from a byte search:

* Parquet (``PAR1``) and Arrow IPC (Feather, spill files): read with pyarrow, every column rendered as
  text, plus the schema metadata;
* gzip and zip (a zip member at a time, so also ``.skops``/``.whl``/``.npz``-style archives);
* SQLite databases (MLflow's backend store, Airflow's metadata DB): every table dumped as SQL text;
* pickles (cloudpickled models): the opcodes' string, bytes and integer arguments, without unpickling;
* HTML/URL escapes (``&#52;``, ``%20``) as a second text view;
* 8-byte integers (little and big endian, any alignment): a card number stored as an ``int64``.

What counts as a hit:

* **card number**: a card of the input as a digit string, also inside a longer run of digits
  (``x4111…1111y`` with digits around it), or as a float's scientific notation that still carries every
  digit (``4.111111111111111e+15``); a number that lost digits (``2.70319E+15``) is not a card any more;
* **full name**: a customer's ``First`` followed within :data:`NAME_WINDOW` characters by the same
  customer's ``Last``, case as in the input. That covers "First Last", CSV ("First,Last"), a dataframe
  printout ("First   Last") and a JSON record (``"first": "First", "last": "Last"``);
* **distinctive last name** alone, as a whole word with the input's capitalisation. Only names that
  cannot be mistaken for anything else count (:func:`distinctive_last_names`): not a first name, a street,
  city or job word, at least 5 letters, and not an everyday word or a name that libraries print for
  other reasons (:data:`AMBIGUOUS_LAST_NAMES`). Merchant names are made of last names ("fraud_Kirlin and
  Sons") and are no personal data: every merchant name of the input is blanked out before names are
  looked for.
"""

from __future__ import annotations

import gzip
import html
import io
import json
import pickletools
import re
import sqlite3
import urllib.parse
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from training_lib.simulation.simulator import Simulator

NAME_WINDOW = 32  # characters between a first name and the last name of the same customer
MIN_DISTINCTIVE_LENGTH = 5
MAX_DECODE_DEPTH = 4  # archive in archive in ...: deeper than this is scanned as raw bytes only
INT64_MAX = 2**63 - 1
SQLITE_MAGIC = b"SQLite format 3\x00"

# Last names of the simulator's list (5+ letters) that are everyday English words, capitalised at the start
# of a sentence, in titles or in identifiers of the JavaScript bundled into HTML reports ("Black", "Price",
# "Young"), or names of statistical tests and methods that drift and model reports print (Mann-Whitney,
# Anderson-Darling, Wilson interval, Ward linkage, Cook's distance). Alone they prove nothing; they still
# count as part of a full name. Shorter names ("Cox", "Kim", "Lee", "Long") are left out by length.
AMBIGUOUS_LAST_NAMES = frozenset(
    {
        # everyday English words
        "Baker", "Berry", "Black", "Brooks", "Brown", "Burns", "Butler", "Carpenter", "Carter", "Cooper",
        "Fisher", "Freeman", "Gardner", "Grant", "Green", "Griffin", "Grimes", "Hunter", "Knight", "Mason",
        "Miller", "Mills", "Palmer", "Parker", "Pierce", "Porter", "Price", "Spencer", "Stone", "Tucker",
        "Turner", "Walker", "Weaver", "Wells", "White", "Woods", "Wright", "Young", "Keeling", "Witting",
        # statistical tests and methods
        "Anderson", "Mann", "Wilson", "Ward", "Cook",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Finding:
    """One hit: where (object or file, and the decoding path), what kind, and which value (cards masked)."""

    where: str
    kind: str  # "card number" | "full name" | "last name"
    value: str
    context: str = ""

    def __str__(self) -> str:
        return f"{self.where}: {self.kind} {self.value!r} in …{self.context}…"


@dataclass
class ScanReport:
    """Findings plus what was scanned (so a test can check the scan covered what it should)."""

    findings: list[Finding] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)

    def extend(self, other: ScanReport) -> ScanReport:
        self.findings.extend(other.findings)
        self.scanned.extend(other.scanned)
        return self

    def summary(self, limit: int = 40) -> str:
        lines = [str(f) for f in self.findings[:limit]]
        more = len(self.findings) - limit
        return "\n".join(lines + ([f"… and {more} more"] if more > 0 else []))


def mask_card(number: str) -> str:
    return f"{'*' * (len(number) - 4)}{number[-4:]}"


def distinctive_last_names(
    last_names: Iterable[str], first_names: Iterable[str], other_words: Iterable[str]
) -> set[str]:
    """Last names that identify a customer even alone (see the module docstring for the rules)."""
    taken = {w.lower() for w in first_names} | {w.lower() for text in other_words for w in re.findall(r"\w+", text)}
    return {
        name
        for name in last_names
        if len(name) >= MIN_DISTINCTIVE_LENGTH and name not in AMBIGUOUS_LAST_NAMES and name.lower() not in taken
    }


class PiiScanner:
    """Looks for the given card numbers and customer names in text, bytes, files, folders and S3 objects."""

    def __init__(
        self,
        card_numbers: Iterable[str],
        customers: Iterable[tuple[str, str]],
        distinctive_last: Iterable[str] = (),
        ignore_phrases: Iterable[str] = (),
    ) -> None:
        self.cards = {str(c) for c in card_numbers}
        if not self.cards or not all(c.isdigit() for c in self.cards):
            raise ValueError("card numbers must be digit strings")
        self.card_lengths = sorted({len(c) for c in self.cards})
        self.card_ints = np.array(sorted(int(c) for c in self.cards if int(c) <= INT64_MAX), dtype=np.int64)
        self.first_of: dict[str, set[str]] = {}
        for first, last in customers:
            self.first_of.setdefault(last, set()).add(first)
        self.distinctive = set(distinctive_last)
        phrases = sorted({p for p in ignore_phrases if p}, key=len, reverse=True)
        self._ignore = re.compile("|".join(map(re.escape, phrases))) if phrases else None

    @classmethod
    def from_simulator(cls, simulator: Simulator) -> PiiScanner:
        """Every card and customer of a simulator; its merchant names are ignored (not personal data)."""
        customers = simulator.customers
        reference = simulator.reference
        other_words = [
            *reference.street_names,
            *reference.street_suffixes,
            *reference.jobs,
            *reference.cities["city"],
            *reference.cities["state"],
        ]
        first_names = [*reference.first_male, *reference.first_female]
        return cls(
            customers["cc_num"].astype(str),
            zip(customers["first"].astype(str), customers["last"].astype(str), strict=True),
            distinctive_last_names(set(customers["last"].astype(str)), first_names, other_words),
            simulator.merchants["merchant"].astype(str),
        )

    # ------------------------------------------------------------------ text

    def scan_text(self, text: str, where: str) -> list[Finding]:
        findings = self._card_hits(text, where)
        if self._ignore is not None:
            text = self._ignore.sub(" ", text)
        return findings + self._name_hits(text, where)

    def _card_hits(self, text: str, where: str) -> list[Finding]:
        hits: list[Finding] = []
        for match in re.finditer(rf"[0-9]{{{self.card_lengths[0]},}}", text):
            run = match.group()
            for length in self.card_lengths:
                for start in range(len(run) - length + 1):
                    candidate = run[start : start + length]
                    if candidate in self.cards:
                        hits.append(self._finding(where, "card number", mask_card(candidate), text, match.start()))
        # scientific notation that still carries every digit of a card: 4.111111111111111e+15
        for match in re.finditer(r"(?<![0-9.])([0-9])\.([0-9]{8,})[eE]\+?([0-9]{1,2})", text):
            digits, exponent = match.group(1) + match.group(2), int(match.group(3))
            whole = (digits + "0" * exponent)[: exponent + 1]
            if len(digits) <= exponent + 1 and whole in self.cards:
                hits.append(self._finding(where, "card number", mask_card(whole) + " (float)", text, match.start()))
        return hits

    def _name_hits(self, text: str, where: str) -> list[Finding]:
        words = set(re.findall(r"[A-Za-z]+", text))
        hits: list[Finding] = []
        present = [last for last in self.first_of if last in words]
        if not present:
            return hits
        pattern = re.compile(r"(?<![A-Za-z])(" + "|".join(map(re.escape, present)) + r")(?![A-Za-z])")
        for match in pattern.finditer(text):
            last = match.group(1)
            before = text[max(0, match.start() - NAME_WINDOW) : match.start()]
            firsts = [f for f in self.first_of[last] if re.search(rf"(?<![A-Za-z]){re.escape(f)}(?![A-Za-z])", before)]
            if firsts:
                hits.append(self._finding(where, "full name", f"{firsts[0]} {last}", text, match.start()))
            elif last in self.distinctive:
                hits.append(self._finding(where, "last name", last, text, match.start()))
        return hits

    @staticmethod
    def _finding(where: str, kind: str, value: str, text: str, at: int) -> Finding:
        context = text[max(0, at - 30) : at + 40]
        context = re.sub(r"\d{6,}", lambda m: "#" * len(m.group()), context)  # no card digits in test output
        return Finding(where, kind, value, context.replace("\n", "⏎"))

    # ------------------------------------------------------------------ bytes and formats

    def scan_bytes(self, data: bytes, where: str, depth: int = 0) -> list[Finding]:
        """Raw bytes as text, 8-byte integers, then whatever the format decodes into (recursively)."""
        findings: list[Finding] = []
        for label, text in self._text_views(data):
            findings += self.scan_text(text, f"{where}{label}")
        findings += self._binary_card_hits(data, where)
        if depth < MAX_DECODE_DEPTH:
            try:
                decoded_parts = list(self._decoded(data))
            except Exception as exc:  # a format's magic bytes but not its content: say so, never skip it
                raise ValueError(f"{where}: looks like an archive or data file but does not decode: {exc!r}") from exc
            for label, decoded in decoded_parts:
                if isinstance(decoded, bytes):
                    findings += self.scan_bytes(decoded, f"{where}!{label}", depth + 1)
                else:
                    findings += self.scan_text(decoded, f"{where}!{label}")
        return _unique(findings)

    @staticmethod
    def _text_views(data: bytes) -> Iterator[tuple[str, str]]:
        """The bytes as text, then the neighbourhood of every escape sequence, unescaped."""
        text = data.decode("latin-1")  # one character per byte: digits and ASCII letters stay as they are
        yield "", text
        for label, pattern, decode in ESCAPES:
            windows = _escaped_windows(text, pattern)
            if windows:
                yield f" ({label})", "\n\n".join(decode(window) for window in windows)

    def _binary_card_hits(self, data: bytes, where: str) -> list[Finding]:
        if len(data) < 8 or not len(self.card_ints):
            return []
        hits = []
        for order in ("<i8", ">i8"):
            for offset in range(8):
                count = (len(data) - offset) // 8
                if count <= 0:
                    continue
                values = np.frombuffer(data, dtype=order, count=count, offset=offset).astype(np.int64)
                at = np.minimum(np.searchsorted(self.card_ints, values), len(self.card_ints) - 1)
                found = values[self.card_ints[at] == values]
                hits += [
                    Finding(where, "card number", f"{mask_card(str(v))} (int64 {order})") for v in np.unique(found)
                ]
        return hits

    @staticmethod
    def _decoded(data: bytes) -> Iterator[tuple[str, bytes | str]]:
        if data[:4] == b"PAR1" and data[-4:] == b"PAR1":
            yield "parquet", _parquet_text(data)
        elif data[:6] == b"ARROW1" or data[:4] == b"\xff\xff\xff\xff":
            yield "arrow", _arrow_text(data)
        elif data[:2] == b"\x1f\x8b":
            yield "gunzip", gzip.decompress(data)
        elif data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in archive.infolist():
                    if not member.is_dir():
                        yield member.filename, archive.read(member)
        elif data[:16] == SQLITE_MAGIC:
            yield "sqlite-dump", _sqlite_text(data)
        elif len(data) > 2 and data[0] == 0x80 and data[1] <= 5:
            yield from _pickle_arguments(data)

    # ------------------------------------------------------------------ sources

    def scan_file(self, path: Path, label: str | None = None) -> list[Finding]:
        """A file's bytes; a live SQLite database is dumped from a consistent copy (the backup API)."""
        where = label or str(path)
        data = path.read_bytes()
        if data[:16] != SQLITE_MAGIC:
            return self.scan_bytes(data, where)
        findings = self.scan_bytes(data, where, depth=MAX_DECODE_DEPTH)  # raw pages, free pages included
        return _unique(findings + self.scan_text(_sqlite_file_text(path), f"{where}!sqlite-dump"))

    def scan_tree(self, root: Path, skip: tuple[str, ...] = ()) -> ScanReport:
        """Every regular file under ``root`` (logs, databases, anything) but those under the folders ``skip``
        (paths relative to ``root``)."""
        report = ScanReport()
        for path in sorted(root.rglob("*")):
            if path.relative_to(root).parts[0] in skip:
                continue
            if path.is_file() and not path.is_symlink():
                report.findings += self.scan_file(path, str(path.relative_to(root)))
                report.scanned.append(str(path.relative_to(root)))
        return report

    def scan_bucket(self, client: Any, bucket: str, skip_prefixes: tuple[str, ...] = ()) -> ScanReport:
        """Every object of ``bucket`` (body and user metadata) whose key starts with none of ``skip_prefixes``."""
        report = ScanReport()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                key = item["Key"]
                if key.startswith(skip_prefixes):
                    continue
                response = client.get_object(Bucket=bucket, Key=key)
                where = f"s3://{bucket}/{key}"
                report.findings += self.scan_bytes(response["Body"].read(), where)
                report.findings += self.scan_text(json.dumps(response.get("Metadata", {})), f"{where} (metadata)")
                report.scanned.append(key)
        return report


# --------------------------------------------------------------------------- decoders

ESCAPE_WINDOW = 80  # characters kept on each side of an escape sequence when decoding it
ESCAPES: tuple[tuple[str, re.Pattern[str], Callable[[str], str]], ...] = (
    ("html-unescaped", re.compile(r"&#?[0-9A-Za-z]{1,8};"), html.unescape),
    ("url-decoded", re.compile(r"%[0-9A-Fa-f]{2}"), lambda text: urllib.parse.unquote(text, encoding="latin-1")),
    (
        "unicode-unescaped",
        re.compile(r"\\u00[0-9A-Fa-f]{2}"),
        lambda text: re.sub(r"\\u00([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text),
    ),
)


def _escaped_windows(text: str, pattern: re.Pattern[str]) -> list[str]:
    """The stretches of ``text`` around matches of ``pattern`` (overlapping stretches merged)."""
    windows: list[str] = []
    start = end = -1
    for match in pattern.finditer(text):
        low, high = max(0, match.start() - ESCAPE_WINDOW), match.end() + ESCAPE_WINDOW
        if low > end:
            if end > start:
                windows.append(text[start:end])
            start = low
        end = high
    if end > start:
        windows.append(text[start:end])
    return windows


def _parquet_text(data: bytes) -> str:
    """Every value of every column as text, one column after the other, plus the schema's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return _table_text(pq.read_table(pa.BufferReader(data)))


def _table_text(table: Any) -> str:
    parts = [repr(table.schema.metadata or {})]
    for name in table.column_names:
        parts.append(name)
        parts.append("\n".join(map(str, table.column(name).to_pylist())))
    return "\n".join(parts)


def _arrow_text(data: bytes) -> str:
    """An Arrow IPC file (Feather v2, spill files) or stream, compressed or not, as text."""
    import pyarrow as pa

    try:
        reader = pa.ipc.open_file(pa.BufferReader(data)) if data[:6] == b"ARROW1" else pa.ipc.open_stream(data)
        return _table_text(reader.read_all())
    except pa.ArrowInvalid:  # four 0xff bytes that do not start an Arrow stream
        return ""


def _sqlite_text(data: bytes) -> str:
    connection = sqlite3.connect(":memory:")
    try:
        connection.deserialize(data)
        return "\n".join(connection.iterdump())
    finally:
        connection.close()


def _sqlite_file_text(path: Path) -> str:
    source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
    copy = sqlite3.connect(":memory:")
    try:
        source.backup(copy)
        return "\n".join(copy.iterdump())
    finally:
        source.close()
        copy.close()


def _pickle_arguments(data: bytes) -> Iterator[tuple[str, bytes | str]]:
    """String and integer arguments of a pickle's opcodes as text; bytes arguments (array buffers) as bytes.

    Walks the opcodes (``pickletools.genops``); nothing is unpickled or executed. Concatenated pickles and
    trailing data (joblib, cloudpickle with frames) are followed until the first opcode that does not parse.
    """
    texts: list[str] = []
    buffers: list[bytes] = []
    position = 0
    stream = io.BytesIO(data)
    try:
        while position < len(data):
            for _opcode, argument, _pos in pickletools.genops(stream):
                if isinstance(argument, str):
                    texts.append(argument)
                elif isinstance(argument, int):
                    texts.append(str(argument))
                elif isinstance(argument, bytes | bytearray) and len(argument) >= 8:
                    buffers.append(bytes(argument))
            if stream.tell() == position:
                break
            position = stream.tell()
    except ValueError:  # an opcode that does not parse: the rest is not a pickle
        pass
    if texts:
        yield "pickle-strings", "\n".join(texts)
    for index, buffer in enumerate(buffers):
        yield f"pickle-bytes[{index}]", buffer


def _unique(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for finding in findings:
        key = (finding.where.split(" (")[0], finding.kind, finding.value)
        if key not in seen:
            seen.add(key)
            out.append(finding)
    return out
