"""S3 objects against a real S3 HTTP API (moto's server on a free port): round trips, listings, clear misses."""

from __future__ import annotations

import re

import pytest
from lake_tables import BUCKET

from training_lib.config import Settings, load_settings
from training_lib.lake.objects import LakeError, LakeKeyError
from training_lib.lake.storage import Lake


def test_objects_round_trip_list_paginated_and_delete(lake: Lake, dataset: str) -> None:
    keys = [f"{dataset}/obj/{name}" for name in ("c", "a", "b", "d", "e")]
    for key in keys:
        lake.put_bytes(key, key.encode(), "text/plain")
    assert lake.get_bytes(keys[0]) == keys[0].encode()
    assert lake.exists(keys[1]) and not lake.exists(f"{dataset}/obj/zzz")
    assert lake.list_keys(f"{dataset}/obj/", page_size=2) == sorted(keys)

    lake.put_json(f"{dataset}/x.json", {"a": [1, 2], "é": None})
    assert lake.get_json(f"{dataset}/x.json") == {"a": [1, 2], "é": None}
    assert lake.get_json(f"{dataset}/missing.json", missing_ok=True) is None

    assert lake.delete_prefix(f"{dataset}/obj/") == 5
    assert lake.list_keys(f"{dataset}/obj/") == []
    with pytest.raises(ValueError, match="empty prefix"):
        lake.delete_prefix("/")


def test_missing_objects_and_buckets_are_named(lake: Lake, settings: Settings, dataset: str) -> None:
    key = f"{dataset}/nothing.bin"
    with pytest.raises(LakeKeyError, match=re.escape(f"s3://{BUCKET}/{key}")) as missing:
        lake.get_bytes(key)
    assert isinstance(missing.value, KeyError)
    with pytest.raises(LakeKeyError, match=re.escape(f"s3://{BUCKET}/{key}")):
        lake.get_json(key)

    other = Lake(load_settings({**settings.env(), "FRAUD_BUCKET": "no-such-bucket-here"}))
    with pytest.raises(LakeError, match=re.escape("s3://no-such-bucket-here/a/b")):
        other.get_bytes("a/b")
