# ruff: noqa: F811 - the contract suite's fixtures are imported by name
"""`Provider.move`, run against every provider of the contract suite (HARNESSES).

Conflict copies and "when complete" downloads rename files within a site; a move must
keep the bytes, remove the old name, and never replace an existing file. Both the
provider's own move and the generic one in providers.base (a verified copy, then delete)
are run, so a provider that only inherits the generic move is covered too.
"""

from __future__ import annotations

import pytest

from app.errors import PermanentError
from providers.base import Provider
from tests.contract.test_provider_contract import (  # noqa: F401 - fixtures
    _payload,
    _put,
    _read,
    harness,
    provider,
)

MOVES = {"own": lambda p, a, b: p.move(a, b), "generic": lambda p, a, b: Provider.move(p, a, b)}


@pytest.fixture(params=list(MOVES))
def move(request):
    return MOVES[request.param]


def test_move_keeps_bytes_and_drops_the_old_name(harness, provider, move):
    data = _payload(300_000, seed=7)
    source, target = f"{harness.base}/a/.x.exr.sitesync-staged", f"{harness.base}/b/x.exr"
    _put(provider, source, data)
    info = move(provider, source, target)
    assert info.size == len(data) and info.path == target
    assert provider.stat(source) is None
    assert _read(provider, target) == data


def test_move_never_replaces_a_file(harness, provider, move):
    source, target = f"{harness.base}/new.exr", f"{harness.base}/old.exr"
    _put(provider, source, b"incoming")
    _put(provider, target, b"already here")
    with pytest.raises(PermanentError, match="already exists"):
        move(provider, source, target)
    assert _read(provider, target) == b"already here"
    assert _read(provider, source) == b"incoming"


def test_moving_a_missing_file_is_a_permanent_error(harness, provider, move):
    with pytest.raises(PermanentError, match="does not exist"):
        move(provider, f"{harness.base}/nothing.exr", f"{harness.base}/else.exr")
