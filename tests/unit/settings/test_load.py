"""Loading, creating and saving the settings file."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from app import paths
from app.errors import ConfigError
from app.settings import (
    InvalidSettingsError,
    default_settings,
    load_settings,
    save_settings,
    update_settings,
    validate,
)
from tests.unit.settings.samples import LOCAL_ID, valid_raw

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def _stored(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_first_load_creates_defaults_with_a_local_id(config_file: Path) -> None:
    assert not config_file.exists()

    settings = load_settings()

    assert settings.path == config_file
    stored = _stored(config_file)
    assert stored["local_id"] == settings.local_id
    assert settings.local_id.count("-") == 2
    assert settings.database_url == ""
    assert settings.sqlite_path == paths.data_dir() / "sitesync.db"


def test_local_id_persists_across_loads(config_file: Path) -> None:
    first = load_settings().local_id
    assert load_settings().local_id == first
    assert load_settings(config_file).local_id == first


def test_defaults_sync_local_folder_with_studio_folder(tmp_path: Path) -> None:
    settings = load_settings()
    project = settings.project("any_project")

    data = tmp_path / "data"
    assert project.active_site == settings.local_id
    assert project.remote_site == "studio"
    assert project.syncing
    assert project.site("studio").roots == {"work": str(data / "sites" / "studio" / "work")}
    assert project.site("local").roots == {"work": str(data / "sites" / "local" / "work")}
    assert project.site(settings.local_id).provider == "local_drive"


def test_default_settings_is_a_complete_valid_document(tmp_path: Path) -> None:
    raw = default_settings(tmp_path / "d")
    assert set(raw) >= {"database_url", "database_name", "local_id", "retry_cnt", "loop_delay",
                        "publish_site", "remote_site", "sites", "projects", "engine"}
    assert raw["engine"] == {"workers_per_site": 8, "lease_s": 60, "backoff_base_s": 10,
                             "backoff_max_s": 3600, "progress_interval_s": 1.0,
                             "serve_site": "", "partial_max_age_h": 48}
    assert validate(raw) == []


def test_file_without_local_id_gets_one_saved_once(write_settings, config_file: Path) -> None:
    raw = valid_raw()
    del raw["local_id"]
    write_settings(raw)

    generated = load_settings(platform="linux").local_id

    assert _stored(config_file)["local_id"] == generated
    before = config_file.stat().st_mtime_ns
    assert load_settings(platform="linux").local_id == generated
    assert config_file.stat().st_mtime_ns == before  # not rewritten again


def test_invalid_file_without_local_id_is_not_rewritten(write_settings, config_file) -> None:
    raw = valid_raw()
    del raw["local_id"]
    raw["retry_cnt"] = -1
    write_settings(raw)
    before = config_file.read_bytes()

    with pytest.raises(ConfigError):
        load_settings(platform="linux")

    assert config_file.read_bytes() == before


@posix_only
def test_a_read_only_file_without_local_id_asks_for_one(write_settings, config_file) -> None:
    """A server's settings are root-owned and read-only to the service user (docs/deploy.md):
    the message must name the missing local_id, not only the failed write. The write is
    made to fail for real, also as root (CI), by a zero file-size limit."""
    import resource
    import subprocess

    raw = valid_raw()
    del raw["local_id"]
    write_settings(raw)
    before = config_file.read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "app", "status"], capture_output=True, text=True, timeout=60,
        check=False, cwd=Path(__file__).resolve().parents[3],
        env={**os.environ, "SITESYNC_CONFIG": str(config_file)},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0)))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "has no local_id, and the new one could not be saved" in done.stderr
    assert 'Fix: add "local_id":' in done.stderr and "Traceback" not in done.stderr
    assert config_file.read_bytes() == before


def test_sitesync_config_env_var_chooses_the_file(tmp_path, monkeypatch) -> None:
    other = tmp_path / "elsewhere" / "my.json"
    monkeypatch.setenv("SITESYNC_CONFIG", str(other))

    settings = load_settings()

    assert settings.path == other
    assert other.exists()


def test_sitesync_local_id_env_var_overrides_without_rewriting(
    write_settings, config_file, monkeypatch
) -> None:
    write_settings(valid_raw())
    monkeypatch.setenv("SITESYNC_LOCAL_ID", "render-node-7")

    settings = load_settings(platform="linux")

    assert settings.local_id == "render-node-7"
    assert settings.site("local").name == "render-node-7"
    assert settings.site("local").roots == {"work": "/home/artist/work"}
    assert _stored(config_file)["local_id"] == LOCAL_ID


def test_invalid_sitesync_local_id_is_reported(write_settings, monkeypatch) -> None:
    write_settings(valid_raw())
    monkeypatch.setenv("SITESYNC_LOCAL_ID", "bad.name")

    with pytest.raises(ConfigError) as info:
        load_settings(platform="linux")

    assert info.value.key == "SITESYNC_LOCAL_ID"
    assert "SITESYNC_LOCAL_ID" in str(info.value)


def test_corrupt_file_is_reported_with_line_and_column_and_not_overwritten(
    write_settings, config_file: Path
) -> None:
    text = '{\n  "retry_cnt": 3,\n  "loop_delay" 60\n}\n'
    write_settings(text)
    before = (config_file.read_bytes(), config_file.stat().st_mtime_ns)

    with pytest.raises(ConfigError) as info:
        load_settings()

    message = str(info.value)
    assert "line 3 column 16" in message
    assert "not valid JSON" in message
    assert "unchanged" in info.value.fix
    assert (config_file.read_bytes(), config_file.stat().st_mtime_ns) == before
    with pytest.raises(ConfigError):
        update_settings(lambda raw: raw.update(retry_cnt=4))
    assert config_file.read_bytes() == before[0]


@pytest.mark.parametrize(
    "content",
    [b"", b"\xff\xfe{}", b"[1, 2]", b"null", b"[" * 100_000,
     b'{"loop_delay": ' + b"1" * 5000 + b"}"],
    ids=["empty", "not-utf8", "list", "null", "deep", "huge-number"],
)
def test_unusable_content_raises_config_error_only(write_settings, config_file, content) -> None:
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_bytes(content)

    with pytest.raises(ConfigError):
        load_settings()

    assert config_file.read_bytes() == content


def test_utf8_bom_is_accepted(config_file: Path) -> None:
    config_file.parent.mkdir(parents=True)
    config_file.write_bytes(b"\xef\xbb\xbf" + json.dumps(valid_raw()).encode())

    assert load_settings(platform="linux").local_id == LOCAL_ID


def test_all_problems_are_reported_together_one_per_line(write_settings) -> None:
    raw = valid_raw()
    raw["retry_cnt"] = "many"
    raw["loop_delya"] = 5
    raw["sites"]["gdrive"]["provider"] = "gdive"
    write_settings(raw)

    with pytest.raises(InvalidSettingsError) as info:
        load_settings(platform="linux")

    error = info.value
    assert {p.key for p in error.problems} == {"retry_cnt", "loop_delya", "sites.gdrive.provider"}
    lines = [line for line in error.message.splitlines() if line.startswith("  - ")]
    assert len(lines) == 3
    assert "did you mean 'loop_delay'?" in error.message


@posix_only
def test_save_is_atomic_owner_only_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "new" / "settings.json"
    raw = valid_raw()

    save_settings(raw, target)
    save_settings({**raw, "retry_cnt": 5}, target)

    assert _stored(target)["retry_cnt"] == 5
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in target.parent.iterdir()) == ["settings.json"]


@posix_only
def test_created_default_file_is_owner_only(config_file: Path) -> None:
    load_settings()
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert [p.name for p in config_file.parent.iterdir()] == ["settings.json"]


def test_failed_save_leaves_old_file_and_no_temp_files(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "cfg" / "settings.json"
    save_settings(valid_raw(), target)
    before = target.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ConfigError) as info:
        save_settings({**valid_raw(), "retry_cnt": 9}, target)

    assert "No space left" in str(info.value)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["settings.json"]


def test_update_settings_mutates_validates_and_saves(write_settings, config_file) -> None:
    write_settings(valid_raw())

    settings = update_settings(
        lambda raw: raw["projects"].update(demo={"retry_cnt": 7}), platform="linux"
    )

    assert settings.project("demo").retry_cnt == 7
    assert _stored(config_file)["projects"] == {"demo": {"retry_cnt": 7}}


def test_update_settings_refuses_to_save_invalid_settings(write_settings, config_file) -> None:
    write_settings(valid_raw())
    before = config_file.read_bytes()

    with pytest.raises(ConfigError) as info:
        update_settings(lambda raw: raw.update(remote_site="nowhere"), platform="linux")

    assert "was not saved" in str(info.value)
    assert info.value.key == "remote_site"
    assert config_file.read_bytes() == before


def test_existing_file_is_never_replaced_by_defaults(write_settings, config_file) -> None:
    write_settings(valid_raw())
    from app.settings import load as load_module

    load_module._create(default_settings("/tmp/other"), config_file)  # lost race

    assert _stored(config_file)["local_id"] == LOCAL_ID


def test_unreadable_location_is_a_config_error(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "is_a_dir.json"
    folder.mkdir()
    monkeypatch.setenv("SITESYNC_CONFIG", str(folder))

    with pytest.raises(ConfigError) as info:
        load_settings()

    assert str(folder) in str(info.value)


def test_sqlite_path_is_none_with_a_database_url(write_settings) -> None:
    raw = valid_raw()
    raw["database_url"] = "mongodb://db.example.com:27017"
    write_settings(raw)

    settings = load_settings(platform="linux")

    assert settings.sqlite_path is None
    assert settings.database_url == "mongodb://db.example.com:27017"
