"""Settings files, beyond what tests/unit/settings checks value by value:

* a valid file damaged byte by byte (a bad edit, a truncated save, binary junk) loads or
  fails with ConfigError only, and is never rewritten;
* settings that load always let the engine start its work: every site's provider is
  built or refused with a SiteSyncError, and an engine on them finds its site pairs,
  looks for work and sweeps without any other exception.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.engine.engine import Engine
from app.errors import ConfigError, SiteSyncError
from app.settings import Settings, load_settings
from app.store.sqlite import SqliteStore
from providers.registry import create_provider
from tests.reliability.helpers import SCALE, report
from tests.unit.settings.samples import valid_raw
from tests.unit.settings.test_properties import documents

_SETTINGS = settings(max_examples=150 * SCALE, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A valid settings file with a few bytes replaced, inserted or cut off."""
    data = bytearray(json.dumps(valid_raw(), indent=2).encode())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        junk = draw(st.binary(min_size=1, max_size=4) | st.sampled_from(
            [b'"', b"{", b"}", b",", b"\\", b"\x00", b"\xff", b"null", b"1e999", b"-", b"[]"]))
        if action == "replace":
            data[at:at + len(junk)] = junk
        elif action == "insert":
            data[at:at] = junk
        elif action == "delete":
            del data[at:at + draw(st.integers(1, 20))]
        else:
            del data[at:]
    return bytes(data)


def test_a_damaged_settings_file_loads_or_says_why_and_stays_as_it_was(tmp_path: Path):
    config = tmp_path / "settings.json"
    outcomes = {"refused": 0, "loaded": 0}

    @_SETTINGS
    @given(content=damaged())
    def check(content: bytes) -> None:
        config.write_bytes(content)
        try:
            loaded = load_settings(config, platform="linux")
        except ConfigError as exc:
            assert str(exc).strip()
            assert config.read_bytes() == content  # never "repaired" behind the user's back
            outcomes["refused"] += 1
            return
        assert isinstance(loaded, Settings)
        outcomes["loaded"] += 1

    check()
    report("damaged_settings", **outcomes)


def test_settings_that_load_always_let_the_engine_start(tmp_path: Path):
    config = tmp_path / "settings.json"
    store = SqliteStore(tmp_path / "sitesync.db")
    store.ensure_project("demo")
    started = []
    try:
        @_SETTINGS
        @given(raw=documents())
        @example(raw=valid_raw())
        @example(raw={**valid_raw(), "publish_site": "local", "remote_site": "studio"})
        def check(raw: Any) -> None:
            config.write_text(json.dumps(raw), encoding="utf-8")
            try:
                loaded = load_settings(config, platform="linux")
            except ConfigError:
                return
            project = loaded.project("demo")
            for name in project.working_sites:
                try:
                    site = project.site(name)
                    provider = create_provider(site.provider, name,
                                               {"root": dict(site.roots), **dict(site.options)})
                except SiteSyncError:
                    continue
                if site.provider == "local_drive":  # the others would go to the network
                    assert all(isinstance(p, str) and p for p in provider.check())
                provider.close()
            engine = Engine(store, loaded, state_path=tmp_path / "engine.json")
            for pair in engine.pairs():
                engine._providers_ready(pair, loaded.project(pair.project))
            engine.sweep_partials()
            started.append(raw)

        check()
        assert len(started) >= 2, f"only {len(started)} documents loaded: the test proved little"
        report("settings_start_engine", loaded=len(started))
    finally:
        store.close()
