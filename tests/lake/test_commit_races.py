"""Commits that S3 enforces, raced on moto's S3 server: of two committers exactly one wins, nothing is lost.

The race is made deterministic: the losing committer reads the manifest, then — inside its conditional PUT,
before the request leaves — the other committer commits. Both requests reach the real server in that order.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pytest
from lake_tables import DAY, make_table, part_keys

from training_lib.config import Settings
from training_lib.lake.objects import LakeConflict, LakeError
from training_lib.lake.storage import Lake


def writer(settings: Settings, scope: str) -> Lake:
    lake = Lake(settings)
    lake.scope = scope
    return lake


def commit_racing(loser: Lake, staged: dict[str, Any], winner_commit: Callable[[], Any]) -> Any:
    """``loser`` commits ``staged``; the other writer's commit runs between the loser's read and its PUT."""
    put_json = loser.put_json

    def put_after_the_winner(key: str, obj: Any, **conditions: Any) -> str:
        winner_commit()
        return put_json(key, obj, **conditions)

    loser.put_json = put_after_the_winner  # type: ignore[method-assign]
    try:
        return loser.commit_partition(staged)
    finally:
        loser.put_json = put_json  # type: ignore[method-assign]


@pytest.mark.parametrize("first_publish", [True, False], ids=["first-publish", "replace"])
def test_of_two_racing_committers_exactly_one_wins(settings: Settings, dataset: str, first_publish: bool) -> None:
    a, b = writer(settings, "aaaaaaaa"), writer(settings, "bbbbbbbb")
    if not first_publish:
        a.publish_partition(dataset, DAY, make_table(30, tag="old"))
    staged_a = a.stage_partition(dataset, DAY, make_table(40, tag="a"))
    staged_b = b.stage_partition(dataset, DAY, make_table(50, tag="b"))
    won: list[dict[str, Any]] = []

    with pytest.raises(LakeConflict, match=r"another writer committed version .* re-run to stage on the new state"):
        commit_racing(a, staged_a, lambda: won.append(b.commit_partition(staged_b)))

    manifest = a.partition_manifest(dataset, DAY)
    assert manifest == won[0] and manifest["version"] == staged_b["version"]
    assert part_keys(a, dataset) == staged_b["files"]  # the loser's parts are gone, the winner's all there
    assert a.read_partition(dataset, DAY).equals(make_table(50, tag="b"))  # no mix, no row lost


def test_a_racing_committer_of_the_same_content_gets_the_winners_version(settings: Settings, dataset: str) -> None:
    a, b = writer(settings, "aaaaaaaa"), writer(settings, "bbbbbbbb")
    staged_a = a.stage_partition(dataset, DAY, make_table(40))
    staged_b = b.stage_partition(dataset, DAY, make_table(40))
    won: list[dict[str, Any]] = []

    result = commit_racing(a, staged_a, lambda: won.append(b.commit_partition(staged_b)))

    assert result == won[0] == a.partition_manifest(dataset, DAY)
    assert part_keys(a, dataset) == staged_b["files"]


def test_the_loser_can_commit_after_staging_again_on_the_new_state(settings: Settings, dataset: str) -> None:
    a, b = writer(settings, "aaaaaaaa"), writer(settings, "bbbbbbbb")
    staged_a = a.stage_partition(dataset, DAY, make_table(40, tag="a"))
    staged_b = b.stage_partition(dataset, DAY, make_table(50, tag="b"))
    with pytest.raises(LakeConflict):
        commit_racing(a, staged_a, lambda: b.commit_partition(staged_b))

    again = a.publish_partition(dataset, DAY, make_table(40, tag="a"))

    assert a.partition_manifest(dataset, DAY) == again
    assert part_keys(a, dataset) == again["files"]  # the replaced version's parts swept
    assert a.read_partition(dataset, DAY).equals(make_table(40, tag="a"))


def test_a_commit_keeps_what_a_concurrent_writer_has_staged(settings: Settings, dataset: str) -> None:
    a, b = writer(settings, "aaaaaaaa"), writer(settings, "bbbbbbbb")
    staged_b = b.stage_partition(dataset, DAY, make_table(50, tag="b"))
    published = a.publish_partition(dataset, DAY, make_table(40, tag="a"))

    assert set(part_keys(a, dataset)) == set(published["files"]) | set(staged_b["files"])
    committed = b.commit_partition(staged_b)  # read after a's commit: a legitimate replacement, not a race
    assert part_keys(a, dataset) == committed["files"]
    assert a.read_partition(dataset, DAY).equals(make_table(50, tag="b"))


def test_a_commit_sweeps_its_own_runs_leftovers_and_old_orphans(settings: Settings, dataset: str) -> None:
    a, b = writer(settings, "aaaaaaaa"), writer(settings, "bbbbbbbb")
    leftover = a.stage_partition(dataset, DAY, make_table(10, tag="killed-try"))
    orphaned = b.stage_partition(dataset, DAY, make_table(10, tag="crashed-run"))
    grace_s = 4.0  # S3 dates objects to the second: fresh parts stay well under half of it
    impatient = writer(dataclasses.replace(settings, orphan_grace_hours=grace_s / 3600), "aaaaaaaa")
    time.sleep(grace_s + 1)  # the condition itself: b's parts become orphans

    published = impatient.publish_partition(dataset, DAY, make_table(40, tag="a"))

    assert part_keys(a, dataset) == published["files"]
    assert not any(a.exists(key) for key in leftover["files"] + orphaned["files"])
    with pytest.raises(LakeError, match="are gone"):
        b.commit_partition(orphaned)


def test_parts_staged_too_long_ago_are_not_committed(settings: Settings, dataset: str) -> None:
    staged = writer(settings, "aaaaaaaa").stage_partition(dataset, DAY, make_table(10))
    late = writer(dataclasses.replace(settings, orphan_grace_hours=1e-9), "aaaaaaaa")

    with pytest.raises(LakeError, match="more than half of FRAUD_ORPHAN_GRACE_HOURS"):
        late.commit_partition(staged)
    assert late.partition_manifest(dataset, DAY) is None
