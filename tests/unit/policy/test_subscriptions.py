"""Subscription rules and the scanner that finds new publishes, on both stores."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from bson import ObjectId

from app.model import RepresentationHead
from app.policy.staging import staged_path
from app.policy.subscriptions import (
    SubscriptionError,
    SubscriptionRule,
    SubscriptionScanner,
    parse_subscriptions,
)
from tests.helpers.seed import make_repre


def _head(**context) -> RepresentationHead:
    base = {"asset": "sh010", "subset": "renderMain", "representation": "exr", "family": "render"}
    return RepresentationHead(id="x", project="demo", key="1", context={**base, **context})


def test_rules_from_settings():
    [rule] = parse_subscriptions([{"project": "demo", "asset": "SH01*", "subset": ["render*", "comp*"],
                                   "representation": "exr", "family": ["render"],
                                   "mode": "when_complete", "priority": 70, "name": "shots"}])
    assert rule.when_complete and rule.priority == 70 and rule.site == "local"
    assert rule.matches("demo", _head())  # globs are case-insensitive
    assert rule.matches("demo", _head(subset="compMain"))
    assert not rule.matches("demo", _head(asset="sh020"))
    assert not rule.matches("other", _head())
    assert not rule.matches("demo", _head(representation="png"))
    assert not rule.matches("demo", _head(family="plate"))
    assert rule.matches("demo", _head(family=None, families=["review", "render"]))
    assert not dataclasses.replace(rule, enabled=False).matches("demo", _head())
    assert parse_subscriptions([{}])[0].matches("any", _head(asset="anything"))
    assert "asset SH01*" in rule.describe() and rule.label(3) == "shots"
    assert parse_subscriptions(None) == ()


@pytest.mark.parametrize(("value", "words", "subpath"), [
    ({"mode": "sometimes"}, "is not a mode", "0.mode"),
    ({"asset": 3}, "pattern or a list of patterns", "0.asset"),
    ({"asset": ["ok", ""]}, "pattern or a list of patterns", "0.asset"),
    ({"priority": 101}, "is not a priority", "0.priority"),
    ({"priority": True}, "is not a priority", "0.priority"),
    ({"enabled": "yes"}, "true or false", "0.enabled"),
    ({"project": ""}, "non-empty text", "0.project"),
    ({"assets": "sh*"}, "unknown key 'assets'", "0.assets"),
    ("rule", "must be a mapping", "0"),
])
def test_bad_rules_name_their_key(value, words, subpath):
    with pytest.raises(SubscriptionError) as err:
        parse_subscriptions([value])
    assert words in err.value.message and err.value.fix and err.value.subpath == subpath
    with pytest.raises(SubscriptionError, match="must be a list"):
        parse_subscriptions({"asset": "x"})


def _scan(scanner, rules):
    applied = []
    scanner.scan(["demo"], rules, lambda p, head, rule, i: applied.append((head.id, i)))
    return applied


def test_scanner_applies_each_new_publish_once_and_remembers_where_it_was(store, tmp_path):
    store.ensure_project("demo")
    old = store.insert_representation(make_repre(asset="sh010"))
    state = tmp_path / "state" / "subscriptions.json"
    rules = (SubscriptionRule(assets=("sh*",)), SubscriptionRule(representations=("abc",)))
    scanner = SubscriptionScanner(store, state)
    assert _scan(scanner, rules) == []  # first look: from now on, the old one is left alone
    new = store.insert_representation(make_repre(asset="sh020"))
    cache = store.insert_representation(make_repre(asset="prop", name="abc"))
    store.insert_representation(make_repre(asset="prop", name="ma"))
    assert _scan(scanner, rules) == [(new, 0), (cache, 1)]
    assert _scan(scanner, rules) == []
    restarted = SubscriptionScanner(store, state)  # a restart does not re-apply
    assert _scan(restarted, rules) == []
    later = store.insert_representation(make_repre(asset="sh030"))
    assert _scan(restarted, rules) == [(later, 0)]
    everything = []
    restarted.apply_existing("demo", rules[:1], lambda p, h, r, i: everything.append(h.id))
    assert everything == [old, new, later]


def test_a_late_insert_with_an_older_mongo_id_is_not_missed(store, tmp_path):
    """ObjectIds are made by the publishing client: one made a minute ago may be inserted
    after newer ones. MongoDB scans re-read an overlap; SQLite keys are exact anyway."""
    store.ensure_project("demo")
    store.insert_representation(make_repre(asset="sh000"))
    scanner = SubscriptionScanner(store, tmp_path / "subscriptions.json")
    rules = (SubscriptionRule(),)
    _scan(scanner, rules)
    first = store.insert_representation(make_repre(asset="sh010"))
    assert _scan(scanner, rules) == [(first, 0)]
    early_id = str(ObjectId.from_datetime(ObjectId(first).generation_time - timedelta(seconds=60)))
    late = store.insert_representation(dataclasses.replace(make_repre(asset="sh005"), id=early_id))
    assert _scan(scanner, rules) == [(late, 0)]
    assert _scan(scanner, rules) == []


def test_staged_names():
    assert staged_path("{root[work]}/p/sh010/sh010.1001.exr") == \
        "{root[work]}/p/sh010/.sh010.1001.exr.sitesync-staged"
    long_name = "x" * 250 + ".exr"
    staged = staged_path("{root[work]}/p/" + long_name)
    assert staged.startswith("{root[work]}/p/.") and staged.endswith(".sitesync-staged")
    assert len(staged.rsplit("/", 1)[1]) <= 255
