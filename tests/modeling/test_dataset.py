"""Dataset logic that needs no service: out-of-time splits."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from training_lib.modeling.dataset import NotEnoughData, split_days


def days(n: int) -> list[date]:
    return [date(2026, 1, 1) + timedelta(days=i) for i in range(n)]


@pytest.mark.parametrize(("n", "sizes"), [(3, (1, 1, 1)), (10, (6, 2, 2)), (30, (18, 6, 6)), (7, (5, 1, 1))])
def test_out_of_time_splits_keep_order_and_give_test_the_newest_days(n: int, sizes: tuple[int, int, int]) -> None:
    splits = split_days(days(n))
    assert tuple(len(splits[s]) for s in ("train", "validation", "test")) == sizes
    assert splits["train"] + splits["validation"] + splits["test"] == days(n)
    assert max(splits["train"]) < min(splits["validation"]) <= max(splits["validation"]) < min(splits["test"])


def test_too_few_days_is_a_clear_error() -> None:
    with pytest.raises(NotEnoughData, match="at least 3"):
        split_days(days(2))
