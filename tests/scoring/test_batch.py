"""Scoring internals that need no stack: spill files, shard assignment, and sharded scoring on a moto S3 lake
(a stand-in model: no MLflow)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from support import drop_bucket, moto_settings

from training_lib.config import Settings
from training_lib.lake.layout import PREDICTIONS, REPORTS_SCORING
from training_lib.lake.storage import Lake
from training_lib.privacy import card_tokens
from training_lib.scoring.batch import score_day
from training_lib.scoring.champion import Champion
from training_lib.scoring.commit import commit_scoring
from training_lib.scoring.plan import IncompleteScoring, plan_scoring
from training_lib.scoring.shard import score_shard
from training_lib.scoring.spill import CardPlacer, assign_cards, card_hashes, read_spill, spill_by_card
from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulator import Simulator, publish_validated_days

KEY = b"spill-test-key"
BUCKET = "scoring-test"
START = date(2026, 2, 1)
DAYS = [START + timedelta(days=i) for i in range(4)]
SCORED = DAYS[-1]


def _cards_table(n: int = 600, cards: int = 97) -> pa.Table:
    numbers = [f"4{i % cards:015d}" for i in range(n)]
    return pa.table({"cc_num": numbers, "amt": [float(i) for i in range(n)], "trans_num": [f"t{i}" for i in range(n)]})


def test_spill_files_hold_card_tokens_never_card_numbers(tmp_path) -> None:
    cards = [f"4{i % 7:015d}" for i in range(50)]
    table = pa.table({"cc_num": cards, "amt": [float(i) for i in range(50)], "trans_num": [f"t{i}" for i in range(50)]})
    rows = spill_by_card(iter(table.to_batches(max_chunksize=16)), 3, tmp_path, "day", KEY)
    files = sorted(tmp_path.glob("day-*.arrow"))
    assert rows == 50 and len(files) > 1
    spilled = pa.concat_tables([read_spill(path) for path in files]).to_pydict()
    assert sorted(spilled["trans_num"]) == sorted(table.column("trans_num").to_pylist())
    expected = dict(zip(table.column("trans_num").to_pylist(), card_tokens(cards, KEY), strict=True))
    assert [expected[t] for t in spilled["trans_num"]] == spilled["cc_num"]
    raw = b"".join(path.read_bytes() for path in files)
    assert not any(card.encode() in raw for card in set(cards))
    for path in files:  # every card's rows are in one bucket: its history stays exact
        assert not set(read_spill(path).column("cc_num").to_pylist()) & {
            c for other in files if other != path for c in read_spill(other).column("cc_num").to_pylist()
        }


def test_assignment_uses_the_card_hash_and_one_shard_gives_the_unsharded_buckets() -> None:
    tokens = card_tokens([f"4{i:015d}" for i in range(500)], KEY)
    hashes = card_hashes(pa.array(tokens))
    assert np.array_equal(hashes, pd.util.hash_array(np.asarray(tokens, dtype=object), categorize=False))
    shards, buckets = assign_cards(hashes, 1, 5)
    assert (shards == 0).all() and np.array_equal(buckets, (hashes % np.uint64(5)).astype(np.int64))
    shards, buckets = assign_cards(hashes, 4, 2)
    assert set(shards) == set(range(4)) and set(buckets) == {0, 1}
    for shard in range(4):  # buckets use h // shards: a shard's cards still spread over all its buckets
        assert set(buckets[shards == shard]) == {0, 1}


def test_the_card_placer_gives_each_cards_token_and_hash_and_forgets_past_its_limit() -> None:
    rng = np.random.default_rng(3)
    cards = [f"4{int(n):015d}" for n in rng.integers(0, 900, 6000)]
    for limit in (700, 5000):  # fewer than the distinct cards (memory cleared on the way), or all remembered
        placer = CardPlacer(KEY, limit=limit)
        for batch in (cards[:2500], cards[2500:], [None, cards[0], None, cards[-1]], cards[:2500]):
            half = len(batch) // 2  # a table's column is a chunked array
            tokens, hashes = placer.place(pa.chunked_array([batch[:half], batch[half:]], pa.string()))
            expected = card_tokens(batch, KEY)
            assert tokens.to_pylist() == expected
            assert np.array_equal(hashes, card_hashes(expected))
            assert len(placer._known) <= limit


def test_shards_partition_the_cards_and_cover_every_row(tmp_path) -> None:
    table = _cards_table()
    batches = table.to_batches(max_chunksize=128)
    per_shard = []
    for shard in range(3):
        folder = tmp_path / f"s{shard}"
        folder.mkdir()
        rows = spill_by_card(iter(batches), 2, folder, "day", KEY, shards=3, shard=shard)
        files = sorted(folder.glob("day-*.arrow"))
        assert files and all(path.name.startswith(f"day-{shard:05d}-") for path in files)
        spilled = pa.concat_tables([read_spill(path) for path in files])
        assert spilled.num_rows == rows
        per_shard.append(spilled.to_pydict())
    trans = [set(s["trans_num"]) for s in per_shard]
    assert sum(len(t) for t in trans) == table.num_rows and set().union(*trans) == set(table["trans_num"].to_pylist())
    cards = [set(s["cc_num"]) for s in per_shard]
    assert all(not cards[a] & cards[b] for a in range(3) for b in range(a + 1, 3))  # each card in one shard
    everything = tmp_path / "all"
    everything.mkdir()
    assert spill_by_card(iter(batches), 2, everything, "day", KEY, shards=3) == table.num_rows  # all shards at once
    for shard in range(3):
        files = sorted(everything.glob(f"day-{shard:05d}-*.arrow"))
        assert set(pa.concat_tables([read_spill(p) for p in files])["trans_num"].to_pylist()) == trans[shard]
    one = tmp_path / "one"
    one.mkdir()
    spill_by_card(iter(batches), 4, one, "day", KEY, shards=1)
    for path in sorted(one.glob("day-*.arrow")):  # one shard: the buckets are h % buckets, as unsharded
        bucket = int(path.stem.rsplit("-", 1)[1])
        tokens = read_spill(path).column("cc_num")
        assert set((card_hashes(tokens) % np.uint64(4)).tolist()) == {bucket}


# --------------------------------------------------------------------------- sharded scoring on moto S3


class StandInModel:
    """Deterministic scores from the amount and the card's history features (wrong history, other scores)."""

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        raw = 0.002 * frame["amt"] + 0.05 * frame["card_tx_count_7d"] + 0.001 * frame["card_amt_sum_24h"]
        score = 1.0 - 1.0 / (1.0 + raw.to_numpy(dtype="float64"))
        return np.column_stack([1.0 - score, score])


@pytest.fixture(scope="module")
def settings(moto_endpoint: str) -> Iterator[Settings]:
    settings = moto_settings(
        moto_endpoint,
        BUCKET,
        {
            "FRAUD_CARD_TOKEN_KEY": "scoring-unit-test-key",
            "FRAUD_SCORING_BUCKET_ROWS": "300",
            "FRAUD_SCORING_SHARD_ROWS": "600",  # 3 shards of ~2 buckets for a ~1 600-row day
        },
    )
    simulator = Simulator(SimulationConfig(seed=3, start=START, n_customers=400, transactions_per_day=1500))
    publish_validated_days(Lake(settings), simulator, DAYS)
    yield settings
    drop_bucket(settings)


@pytest.fixture(scope="module")
def lake(settings: Settings) -> Lake:
    return Lake(settings)


@pytest.fixture(scope="module")
def champion() -> Champion:
    return Champion("stand-in", "7", "run-7", 0.5, StandInModel())


def _sorted_predictions(lake: Lake) -> pd.DataFrame:
    return lake.read_partition(PREDICTIONS, SCORED).to_pandas().sort_values("trans_num").reset_index(drop=True)


def test_a_plan_has_one_json_spec_per_shard(settings: Settings, lake: Lake, champion: Champion) -> None:
    specs = plan_scoring(settings, SCORED, "plan-run", lake=lake, champion=champion)
    rows = lake.partition_manifest("validated/transactions", SCORED)["rows"]
    assert json.loads(json.dumps(specs)) == specs
    assert [spec["shard"] for spec in specs] == list(range(3)) and {spec["shards"] for spec in specs} == {3}
    assert {spec["buckets"] for spec in specs} == {math.ceil(rows / 3 / 300)}
    assert {(spec["model_version"], spec["validated_rows"], spec["scored_at"]) for spec in specs} == {
        ("7", rows, specs[0]["scored_at"])
    }
    capped = plan_scoring(
        dataclasses.replace(settings, scoring_max_shards=2), SCORED, "r", lake=lake, champion=champion
    )
    assert len(capped) == 2 and capped[0]["buckets"] == math.ceil(rows / 2 / 300)
    single = plan_scoring(
        dataclasses.replace(settings, scoring_shard_rows=10**6), SCORED, "r", lake=lake, champion=champion
    )
    assert len(single) == 1 and single[0]["buckets"] == math.ceil(rows / 300)
    with pytest.raises(LookupError, match="no validated partition"):
        plan_scoring(settings, SCORED + timedelta(days=1), "r", lake=lake, champion=champion)


def test_sharded_scoring_equals_one_shard_row_for_row(settings: Settings, lake: Lake, champion: Champion) -> None:
    one = dataclasses.replace(settings, scoring_shard_rows=10**6)
    summary = score_day(one, SCORED, "one-shard", lake=lake, champion=champion)
    assert summary["shards"] == 1
    expected = _sorted_predictions(lake)
    specs = plan_scoring(settings, SCORED, "sharded", lake=lake, champion=champion)
    results = [score_shard(settings, spec, lake=lake, champion=champion) for spec in specs]
    assert json.loads(json.dumps(results)) == results  # travels by XCom
    assert lake.partition_manifest(PREDICTIONS, SCORED)["metadata"]["scoring_run_id"] == "one-shard"  # staged only
    summary = commit_scoring(settings, specs, list(reversed(results)), lake=lake)
    manifest = lake.partition_manifest(PREDICTIONS, SCORED)
    assert summary["shards"] == 3 and summary["rows"] == len(expected) == manifest["rows"]
    assert manifest["files"] == [key for result in results for key in result["staged"]["files"]]  # shard order
    assert manifest["metadata"] == {
        "model_name": "stand-in", "model_version": "7", "scoring_run_id": "sharded", "scored_at": specs[0]["scored_at"],
        "model_fitted_through": None,  # a stand-in model: its training days are unknown
    }  # fmt: skip
    pd.testing.assert_frame_equal(_sorted_predictions(lake), expected)
    assert summary["alerts"] == int(expected["decision"].sum()) > 0
    assert sum(summary["score_histogram"]["counts"]) == len(expected)
    assert lake.get_json(lake.report_key(REPORTS_SCORING, SCORED, "summary.json")) == summary
    again = score_day(settings, SCORED, "sharded-again", lake=lake, champion=champion)  # same content: kept
    assert again["partition_unchanged"] and lake.partition_manifest(PREDICTIONS, SCORED) == manifest
    parts = [k for k in lake.list_keys(f"{PREDICTIONS}/dt={SCORED.isoformat()}/") if "/part-" in k]
    assert sorted(parts) == sorted(manifest["files"])


def test_commit_refuses_incomplete_or_foreign_shards(settings: Settings, lake: Lake, champion: Champion) -> None:
    specs = plan_scoring(settings, SCORED, "refused", lake=lake, champion=champion)
    results = [score_shard(settings, spec, lake=lake, champion=champion) for spec in specs]
    before = lake.partition_manifest(PREDICTIONS, SCORED)
    with pytest.raises(IncompleteScoring, match=r"shard\(s\) \[1\] of 3 missing"):
        commit_scoring(settings, specs, [results[0], results[2]], lake=lake)
    with pytest.raises(IncompleteScoring, match="shard 2 of 3 is there twice"):
        commit_scoring(settings, specs, [*results, results[2]], lake=lake)
    short = {**results[1], "rows": results[1]["rows"] - 1, "staged": {**results[1]["staged"]}}
    short["staged"]["rows"] -= 1
    with pytest.raises(IncompleteScoring, match="validated rows"):
        commit_scoring(settings, specs, [results[0], short, results[2]], lake=lake)
    other = plan_scoring(settings, SCORED, "another-run", lake=lake, champion=champion)
    with pytest.raises(IncompleteScoring, match="not by this plan"):
        commit_scoring(settings, other, results, lake=lake)
    assert lake.partition_manifest(PREDICTIONS, SCORED) == before  # nothing published


def test_a_shard_refuses_another_model_version(settings: Settings, lake: Lake, champion: Champion) -> None:
    [spec, *_] = plan_scoring(settings, SCORED, "r", lake=lake, champion=champion)
    with pytest.raises(ValueError, match="planned with stand-in v7"):
        score_shard(settings, spec, lake=lake, champion=dataclasses.replace(champion, version="8"))


def test_a_failing_shard_in_score_day_leaves_nothing_staged(
    settings: Settings, lake: Lake, champion: Champion, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0, "fail_at": 0}

    class FailsInTheLastBucket(StandInModel):
        def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
            calls["n"] += 1
            if calls["n"] == calls["fail_at"]:
                raise RuntimeError("injected: scoring worker died")
            return super().predict_proba(frame)

    counting = dataclasses.replace(champion, model=FailsInTheLastBucket())
    score_day(settings, SCORED, "before-failure", lake=lake, champion=counting)
    before = lake.partition_manifest(PREDICTIONS, SCORED)
    calls.update(fail_at=calls["n"], n=0)  # the next run fails in its last bucket (of the last shard)
    discarded: list[dict] = []
    discard = lake.discard_staged
    monkeypatch.setattr(lake, "discard_staged", lambda staged: (discarded.append(staged), discard(staged)))
    with pytest.raises(RuntimeError, match="injected"):
        score_day(settings, SCORED, "broken", lake=lake, champion=counting)
    assert [staged["metadata"]["shard"] for staged in discarded] == [0, 1]  # the shards staged before it
    assert lake.partition_manifest(PREDICTIONS, SCORED) == before
    parts = [k for k in lake.list_keys(f"{PREDICTIONS}/dt={SCORED.isoformat()}/") if "/part-" in k]
    assert sorted(parts) == sorted(before["files"])
