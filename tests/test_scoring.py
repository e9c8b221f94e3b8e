"""Scoring internals that need no stack: what the local spill files hold."""

from __future__ import annotations

import pyarrow as pa

from training_lib.privacy import card_tokens
from training_lib.scoring import _read_spill, _spill

KEY = b"spill-test-key"


def test_spill_files_hold_card_tokens_never_card_numbers(tmp_path) -> None:
    cards = [f"4{i % 7:015d}" for i in range(50)]
    table = pa.table({"cc_num": cards, "amt": [float(i) for i in range(50)], "trans_num": [f"t{i}" for i in range(50)]})
    rows = _spill(iter(table.to_batches(max_chunksize=16)), 3, tmp_path, "day", KEY)
    files = sorted(tmp_path.glob("day-*.arrow"))
    assert rows == 50 and len(files) > 1
    spilled = pa.concat_tables([_read_spill(path) for path in files]).to_pydict()
    assert sorted(spilled["trans_num"]) == sorted(table.column("trans_num").to_pylist())
    expected = dict(zip(table.column("trans_num").to_pylist(), card_tokens(cards, KEY), strict=True))
    assert [expected[t] for t in spilled["trans_num"]] == spilled["cc_num"]
    raw = b"".join(path.read_bytes() for path in files)
    assert not any(card.encode() in raw for card in set(cards))
    for path in files:  # every card's rows are in one bucket: its history stays exact
        assert not set(_read_spill(path).column("cc_num").to_pylist()) & {
            c for other in files if other != path for c in _read_spill(other).column("cc_num").to_pylist()
        }
