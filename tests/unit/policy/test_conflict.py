"""Conflict policies: their settings values, which rule applies to a pair, copy names."""

from __future__ import annotations

from datetime import datetime

import pytest

from app.policy.conflict import ConflictPolicyError, conflict_name, parse_conflict_policy


def test_policy_values():
    assert parse_conflict_policy("Other").for_pair("a", "b") == "other"
    policy = parse_conflict_policy({
        "studio>local": "this", "*>local": "newer", "studio>*": "other", "*>gdrive": "fail",
        "default": "other",
    })
    assert policy.for_pair("studio", "m1", local_id="m1") == "this"  # exact pair
    assert policy.for_pair("gdrive", "m1", local_id="m1") == "newer"  # target pattern
    assert policy.for_pair("studio", "backup") == "other"  # source pattern
    assert policy.for_pair("studio", "gdrive") == "fail"  # target pattern beats source's
    assert policy.for_pair("sftp", "backup") == "other"  # default
    assert parse_conflict_policy({}).for_pair("a", "b") == "other"
    assert "studio>local: this" in policy.text()


@pytest.mark.parametrize(("value", "words", "subpath"), [
    ("sometimes", "is not a conflict policy", ""),
    ({"studio>local": "keep"}, "is not a conflict policy", "studio>local"),
    ({"studio": "this"}, "is not SOURCE>TARGET", "studio"),
    ({"a>b>c": "this"}, "is not SOURCE>TARGET", "a>b>c"),
    (3, "must be a policy name or a mapping", ""),
])
def test_bad_policies_name_the_entry(value, words, subpath):
    with pytest.raises(ConflictPolicyError) as err:
        parse_conflict_policy(value)
    assert words in err.value.message and err.value.fix and err.value.subpath == subpath


def test_conflict_copy_names_keep_the_extension_and_never_collide():
    when = datetime(2024, 3, 1, 10, 15, 0)
    path = "{root[work]}/p/sh010/v001/sh010.1001.exr"
    assert conflict_name(path, "studio", when) == \
        "{root[work]}/p/sh010/v001/sh010.1001.sitesync-conflict-20240301-101500-studio.exr"
    taken = {conflict_name(path, "studio", when)}
    second = conflict_name(path, "studio", when, exists=taken.__contains__)
    assert second.endswith("sh010.1001.sitesync-conflict-20240301-101500-studio-2.exr")
    assert conflict_name("{root[work]}/.hidden", "m1", when).endswith(
        "/.hidden.sitesync-conflict-20240301-101500-m1")
    assert conflict_name("{root[work]}/README", "m1", when).endswith(
        "/README.sitesync-conflict-20240301-101500-m1")
