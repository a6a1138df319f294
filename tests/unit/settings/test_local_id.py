"""The generated local id: a readable three-word slug that is a valid site name."""

from __future__ import annotations

import re

from app.settings import generate_local_id, validate
from app.settings.local_id import _ADJECTIVES, _ANIMALS
from tests.unit.settings.samples import valid_raw


def test_local_id_is_adjective_adjective_animal() -> None:
    for _ in range(200):
        first, second, animal = generate_local_id().split("-")
        assert first in _ADJECTIVES and second in _ADJECTIVES and animal in _ANIMALS
        assert first != second


def test_local_id_is_a_valid_site_name() -> None:
    local_id = generate_local_id()
    assert re.fullmatch(r"[a-z]+-[a-z]+-[a-z]+", local_id)
    raw = valid_raw()
    raw["local_id"] = local_id
    assert validate(raw, platform="linux") == []


def test_local_ids_vary() -> None:
    assert len({generate_local_id() for _ in range(50)}) > 45


def test_word_lists_give_millions_of_names() -> None:
    assert len(set(_ADJECTIVES)) == len(_ADJECTIVES)
    assert len(set(_ANIMALS)) == len(_ANIMALS)
    assert len(_ADJECTIVES) * (len(_ADJECTIVES) - 1) * len(_ANIMALS) > 4_000_000
