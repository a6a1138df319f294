"""Property: whatever JSON a user puts under the known keys, loading fails only with
ConfigError (never a traceback), and anything accepted resolves completely."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import ConfigError
from app.settings import (
    ENGINE_OPTIONS,
    GLOBAL_OPTIONS,
    HOOKS_OPTIONS,
    PROVIDER_OPTIONS,
    Settings,
    load_settings,
    validate,
)
from tests.unit.settings.samples import valid_raw

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "3", "-1", "local", "studio", "gdrive", "sftp", "local_drive",
                       "/abs/path", "rel/path", "~/home", "C:/win", "mongodb://u:p@h",
                       "mongodb://", "http://x", "60", "1e3", "windows", "linux"])
)
_JSON = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["work", "linux", "windows", "darwin", "x", "provider",
                                       "root", "enabled", "retry_cnt"]) | st.text(max_size=5),
                      children, max_size=3),
    max_leaves=8,
)

_TOP = [o.key for o in GLOBAL_OPTIONS] + ["active_site", "sites", "projects", "engine", "hooks"]
_HOOKS = [o.key for o in HOOKS_OPTIONS] + ["plugins"]
_ENGINE = [o.key for o in ENGINE_OPTIONS]
_SITE = ["provider", "root", "enabled", "alternative_sites"] + [
    o.key for opts in PROVIDER_OPTIONS.values() for o in opts
]
_PROJECT = ["enabled", "retry_cnt", "loop_delay", "publish_site", "remote_site",
            "always_accessible_on", "sites"]


@st.composite
def documents(draw: st.DrawFn) -> Any:
    """Mostly-valid documents with random values dropped in at known keys."""
    raw = valid_raw()
    for key in draw(st.lists(st.sampled_from(_TOP), max_size=3)):
        raw[key] = draw(_JSON)
    for key in draw(st.lists(st.sampled_from(_ENGINE), max_size=2)):
        if isinstance(raw.get("engine"), dict):
            raw["engine"][key] = draw(_JSON)
    for key in draw(st.lists(st.sampled_from(_HOOKS), max_size=2)):
        hooks = raw.setdefault("hooks", {})
        if isinstance(hooks, dict):
            hooks[key] = draw(_JSON)
    sites = raw.get("sites")
    if isinstance(sites, dict):
        for name in draw(st.lists(st.sampled_from([*sites, "local", "new"]), max_size=2)):
            site = sites.setdefault(name, {})
            if isinstance(site, dict):
                for key in draw(st.lists(st.sampled_from(_SITE), max_size=3)):
                    site[key] = draw(_JSON)
    if draw(st.booleans()) and isinstance(raw.get("projects"), dict):
        block = {k: draw(_JSON) for k in draw(st.lists(st.sampled_from(_PROJECT), max_size=3))}
        raw["projects"][draw(st.sampled_from(["demo", "", "p.x"]))] = block
    if draw(st.integers(0, 20)) == 0:
        return draw(_JSON)  # sometimes the whole document is nonsense
    return raw


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=documents(), platform=st.sampled_from(["linux", "windows", "darwin"]))
def test_any_values_at_known_keys_raise_only_config_error(
    raw: Any, platform: str, config_file: Path
) -> None:
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(json.dumps(raw), encoding="utf-8")

    # load_settings fills in a missing local_id, so that one is not a problem for it.
    problems = [p for p in validate(raw, platform=platform) if "is missing" not in p.message]
    try:
        loaded = load_settings(config_file, platform=platform)
    except ConfigError as exc:
        assert str(exc)
        return
    assert not problems
    assert isinstance(loaded, Settings)
    project = loaded.project("demo")
    for name in project.working_sites:
        try:
            site = project.site(name)
        except ConfigError:
            continue
        assert isinstance(dict(site.roots), dict)
    assert isinstance(loaded.engine.lease_s, float)
    assert all(isinstance(p, Path) and p.is_absolute() for p in loaded.hooks.plugin_paths)
    assert all(isinstance(o, Mapping) for o in loaded.hooks.plugins.values())
    assert isinstance(project.retry_cnt, int) and project.retry_cnt >= 1
