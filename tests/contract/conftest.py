"""Servers the provider contract modules share, stopped when the module ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def gdrive_contract_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One Drive emulator per contract module (each test works in its own folder)."""
    from tests.gdrive_emulator.fixtures import drive_env

    with drive_env(tmp_path_factory.mktemp("gdrive")) as env:
        yield env
