"""docs/configuration.md stays true to the settings table (app/settings/schema.py): every
key is documented, and every JSON example parses and, when it is a whole settings file,
passes the same validation as the loader."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.settings import (
    COMMON_SITE_OPTIONS,
    ENGINE_OPTIONS,
    GLOBAL_OPTIONS,
    HOOKS_OPTIONS,
    PROVIDER_OPTIONS,
    validate,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
TEXT = DOC.read_text()
EXAMPLES = re.findall(r"```json\n(.*?)```", TEXT, flags=re.S)


def every_key() -> list[str]:
    options = [*GLOBAL_OPTIONS, *ENGINE_OPTIONS, *COMMON_SITE_OPTIONS,
               *(o for opts in PROVIDER_OPTIONS.values() for o in opts)]
    return sorted({o.key for o in options})


@pytest.mark.parametrize("key", every_key())
def test_every_settings_key_is_documented(key):
    assert f"| `{key}` |" in TEXT, (
        f"settings key {key!r} (app/settings/schema.py) has no row in docs/configuration.md: "
        "add one with its default and meaning")


@pytest.mark.parametrize("option", HOOKS_OPTIONS, ids=lambda o: o.key)
def test_every_hooks_key_is_documented_with_its_default(option):
    row = re.search(rf"^\| `hooks\.{re.escape(option.key)}` \| `([^`]*)` \|", TEXT, flags=re.M)
    assert row, (f"settings key hooks.{option.key} (app/settings/schema.py) has no row in "
                 "docs/configuration.md: add one with its default and meaning")
    default = list(option.default) if isinstance(option.default, tuple) else option.default
    assert json.loads(row.group(1)) == default


def test_per_plugin_options_are_documented():
    assert "| `hooks.plugins.<name>` |" in TEXT


def test_there_are_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("example", EXAMPLES)
def test_examples_are_valid_settings(example):
    document = json.loads(example)
    assert isinstance(document, dict)
    if "sites" in document or "local_id" in document:
        assert validate(document, platform="linux") == []
    else:  # a fragment: it must be valid inside a default settings file
        full = {"local_id": "artist-one", **document}
        assert validate(full, platform="linux") == []
