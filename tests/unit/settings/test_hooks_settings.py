"""The `hooks` block: plugin folders, timing and per-plugin options, validated like the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.settings import HooksSettings, InvalidSettingsError, load_settings, validate
from tests.unit.settings.samples import valid_raw


def _with_hooks(hooks: object) -> dict:
    raw = valid_raw()
    raw["hooks"] = hooks
    return raw


def test_no_hooks_block_means_no_plugins(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(valid_raw()))
    hooks = load_settings(path, platform="linux").hooks
    assert hooks == HooksSettings()
    assert hooks.enabled and hooks.plugin_paths == () and hooks.gap_timeout_s == 60.0


def test_hooks_block_is_resolved(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "settings.json"
    path.parent.mkdir()
    path.write_text(json.dumps(_with_hooks({
        "plugin_paths": ["/opt/studio/plugins", "mine",
                         {"windows": "P:/plugins", "linux": "/mnt/plugins"},
                         {"windows": "P:/windows-only"}],
        "gap_timeout_s": 5, "batch_size": 50, "stuck_after_s": 2.5,
        "plugins": {"webhook_ready": {"url": "http://tracker/hook", "enabled": False},
                    "audit_log": {"path": "/var/log/sitesync.jsonl"}},
    })))
    hooks = load_settings(path, platform="linux").hooks
    assert hooks.plugin_paths == (Path("/opt/studio/plugins"), path.parent / "mine",
                                  Path("/mnt/plugins"))
    assert (hooks.gap_timeout_s, hooks.batch_size, hooks.stuck_after_s) == (5.0, 50, 2.5)
    assert not hooks.plugin_enabled("webhook_ready") and hooks.plugin_enabled("audit_log")
    assert hooks.plugin_enabled("unlisted")
    assert hooks.plugin_options("webhook_ready") == {"url": "http://tracker/hook"}
    assert hooks.plugin_options("unlisted") == {}


BAD = [
    ("plugin_paths", "/opt/plugins", "hooks.plugin_paths", '["/path/to/plugins"'),
    ("plugin_paths", ["/ok", 5], "hooks.plugin_paths.1", 'write "path"'),
    ("plugin_paths", [""], "hooks.plugin_paths.0", "write a folder"),
    ("plugin_paths", [{"linx": "/p"}], "hooks.plugin_paths.0", "did you mean 'linux'?"),
    ("gap_timeout_s", -1, "hooks.gap_timeout_s", "number from 0 to 86400"),
    ("gap_timeout_s", "60", "hooks.gap_timeout_s", "set it to a number"),
    ("batch_size", 0, "hooks.batch_size", "whole number from 1"),
    ("enabled", "yes", "hooks.enabled", "write true or false"),
    ("gap_timeout", 5, "hooks.gap_timeout", "did you mean 'gap_timeout_s'?"),
    ("plugins", [], "hooks.plugins", "write it as"),
    ("plugins", {"audit": 3}, "hooks.plugins.audit", "plugin's own options"),
    ("plugins", {"audit": {"enabled": "no"}}, "hooks.plugins.audit.enabled", "true or false"),
]


@pytest.mark.parametrize(("key", "value", "where", "fix"), BAD, ids=[b[2] + "=" + repr(b[1])
                                                                     for b in BAD])
def test_bad_hooks_values_name_the_key_and_the_fix(key, value, where, fix) -> None:
    [problem] = validate(_with_hooks({key: value}), platform="linux")
    assert problem.key == where and fix in problem.fix, (problem.key, problem.fix)


def test_hooks_must_be_a_mapping(tmp_path: Path) -> None:
    [problem] = validate(_with_hooks(["a"]), platform="linux")
    assert problem.key == "hooks"
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(_with_hooks({"plugin_paths": 3})))
    with pytest.raises(InvalidSettingsError) as excinfo:
        load_settings(path, platform="linux")
    assert "hooks.plugin_paths" in str(excinfo.value)
