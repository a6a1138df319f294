"""docs/configuration.md stays true to the settings table (app/settings/schema.py): every
key is documented with the default the loader uses, every provider has its own guide, and
every JSON example parses and, when it is a whole settings file, passes the same
validation as the loader."""

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
    PROVIDERS,
    validate,
)

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "configuration.md"
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


def documented_defaults(text: str, key: str) -> list[str]:
    """The default cell of every table row for ``key`` whose default is written as code
    (`8`, `""`, `"auto"`): rows saying "required" or "generated" have nothing to check."""
    return re.findall(rf"^\| `{re.escape(key)}` \| `([^`]*)`", text, flags=re.M)


def _shown(default):
    return list(default) if isinstance(default, tuple) else default


def _same(cell: str, default) -> bool:
    try:
        return json.loads(cell) == _shown(default)
    except ValueError:  # a bare word or URL: `https://www.googleapis.com/`
        return cell == str(default)


@pytest.mark.parametrize("option", [*GLOBAL_OPTIONS, *ENGINE_OPTIONS, *COMMON_SITE_OPTIONS,
                                    *(o for opts in PROVIDER_OPTIONS.values() for o in opts)],
                         ids=lambda o: o.key)
def test_documented_defaults_are_the_loaders(option):
    """In configuration.md and in the provider guides: a default that drifted from the
    schema would tell an admin the wrong behaviour for a key left out."""
    if option.default is None:
        return
    texts = [TEXT, *(p.read_text() for p in (REPO / "docs" / "providers").glob("*.md"))]
    cells = [cell for text in texts for cell in documented_defaults(text, option.key)]
    wrong = [cell for cell in cells if not _same(cell, option.default)]
    assert not wrong, (f"{option.key}: documented default {wrong} but the loader uses "
                       f"{_shown(option.default)!r} (app/settings/schema.py)")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_provider_has_a_guide_linked_from_the_readme_and_the_reference(provider):
    guide = REPO / "docs" / "providers" / f"{provider}.md"
    assert guide.is_file(), f"docs/providers/{provider}.md: the set-up guide of provider {provider}"
    assert f"(docs/providers/{provider}.md)" in (REPO / "README.md").read_text()
    assert f"(providers/{provider}.md)" in TEXT


#: Top-level keys of a settings file: an example made only of these is a settings example.
SETTINGS_TOP_KEYS = {o.key for o in GLOBAL_OPTIONS} | {a for o in GLOBAL_OPTIONS for a in o.aliases} | {
    "sites", "projects", "engine", "hooks"}


def settings_examples() -> list[tuple[str, str]]:
    """Every JSON example in every guide that is (a fragment of) a settings file: the
    provider guides show `"sites": {...}, "remote_site": ...`, which is read inside {}."""
    found = []
    for guide in sorted((REPO / "docs").rglob("*.md")):
        for n, block in enumerate(re.findall(r"```json\n(.*?)```", guide.read_text(), flags=re.S)):
            try:
                document = json.loads(block)
            except ValueError:
                document = json.loads("{" + block + "}")
            if isinstance(document, dict) and document and set(document) <= SETTINGS_TOP_KEYS:
                found.append((f"{guide.relative_to(REPO)}#{n}", block))
    return found


@pytest.mark.parametrize(("where", "example"), settings_examples(), ids=[w for w, _ in settings_examples()])
def test_every_guides_settings_example_is_valid(where, example):
    """A key or value in a guide that the loader refuses would stop a newcomer who
    copies it; every provider guide must have at least one such example."""
    try:
        document = json.loads(example)
    except ValueError:
        document = json.loads("{" + example + "}")
    assert validate({"local_id": "artist-one", **document}, platform="linux") == [], where


def test_every_provider_guide_has_a_settings_example():
    guides = {where.split("#")[0] for where, _ in settings_examples()}
    for provider in PROVIDERS:
        assert f"docs/providers/{provider}.md" in guides, provider
