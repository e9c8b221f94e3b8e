"""Fixtures of the lake tests: one bucket on the shared moto server, a dataset prefix of its own per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from lake_tables import BUCKET
from support import drop_bucket, moto_settings

from training_lib.config import Settings
from training_lib.lake.storage import Lake


@pytest.fixture(scope="module")
def settings(moto_endpoint: str) -> Iterator[Settings]:
    settings = moto_settings(moto_endpoint, BUCKET)
    yield settings
    drop_bucket(settings)


@pytest.fixture
def lake(settings: Settings) -> Lake:
    return Lake(settings)


@pytest.fixture
def dataset() -> str:
    """A dataset prefix of its own for every test."""
    return f"t-{uuid.uuid4().hex[:8]}/validated/transactions"
