"""How a valid document becomes Settings: merging, "local", platforms, text numbers."""

from __future__ import annotations

import dataclasses

import pytest

from app.errors import ConfigError
from app.settings import Settings, current_platform, load_settings
from tests.unit.settings.samples import LOCAL_ID, valid_raw


@pytest.fixture
def load(write_settings):
    def load(raw, platform: str = "linux") -> Settings:
        write_settings(raw)
        return load_settings(platform=platform)

    return load


def test_project_not_listed_is_enabled_with_global_values(load) -> None:
    settings = load(valid_raw())

    project = settings.project("unlisted")

    assert project.project == "unlisted"
    assert project.enabled
    assert (project.retry_cnt, project.loop_delay) == (3, 60)
    assert (project.active_site, project.remote_site) == ("studio", "gdrive")
    assert set(project.sites) == {"studio", "gdrive", "sftp", LOCAL_ID}
    # Made once per name (the engine asks per file), and per name.
    assert settings.project("unlisted") is project
    assert settings.project("other").project == "other"
    assert settings == load(valid_raw())  # the cache is not part of the settings


def test_project_overrides_merge_over_globals(load) -> None:
    raw = valid_raw()
    raw["projects"] = {
        "demo": {
            "enabled": False,
            "retry_cnt": 9,
            "remote_site": "sftp",
            "always_accessible_on": ["local"],
            "sites": {
                "sftp": {"sftp_user": "demo_user"},
                "studio": {"root": {"publish": "/mnt/studio/publish"}},
            },
        }
    }
    settings = load(raw)

    demo = settings.project("demo")
    assert not demo.enabled
    assert demo.retry_cnt == 9
    assert demo.loop_delay == 60  # inherited
    assert demo.remote_site == "sftp"
    assert demo.always_accessible_on == (LOCAL_ID,)
    sftp = demo.site("sftp")
    assert sftp.options["sftp_user"] == "demo_user"
    assert sftp.options["sftp_host"] == "files.example.com"  # merged key by key
    assert demo.site("studio").roots == {"work": "/mnt/studio/work",
                                         "publish": "/mnt/studio/publish"}
    # the global view is untouched
    assert settings.site("sftp").options["sftp_user"] == "pipeline"
    assert settings.project("other").remote_site == "gdrive"
    assert settings.project_names == ("demo",)


def test_project_may_add_its_own_site(load) -> None:
    raw = valid_raw()
    raw["projects"] = {"p": {"remote_site": "nas", "sites": {
        "nas": {"provider": "local_drive", "root": {"work": "/mnt/nas"}}}}}

    project = load(raw).project("p")

    assert project.site("nas").roots == {"work": "/mnt/nas"}
    assert project.working_sites == ("studio", "nas")


def test_local_resolves_to_local_id(load) -> None:
    raw = valid_raw()
    raw["publish_site"] = "local"
    raw["remote_site"] = "studio"
    settings = load(raw)

    defaults = settings.project("x")
    assert defaults.active_site == LOCAL_ID
    local = settings.site("local")
    assert local.name == LOCAL_ID
    assert local.roots == {"work": "/home/artist/work"}
    assert settings.site(LOCAL_ID) == local
    assert "local" not in settings.sites


def test_site_named_after_local_id_wins_over_local(load) -> None:
    raw = valid_raw()
    raw["sites"][LOCAL_ID] = {"provider": "local_drive", "root": {"work": "/fast/ssd"}}

    assert load(raw).site("local").roots == {"work": "/fast/ssd"}


def test_studio_and_local_exist_without_configuration(load) -> None:
    raw = valid_raw()
    del raw["sites"]["studio"]
    del raw["sites"]["local"]
    raw["publish_site"] = "local"
    raw["remote_site"] = "studio"
    settings = load(raw)

    assert settings.site("studio").provider == "local_drive"
    assert settings.site("studio").roots == {}
    assert settings.site("local").provider == "local_drive"


def test_missing_site_raises_config_error_naming_it(load) -> None:
    settings = load(valid_raw())

    with pytest.raises(ConfigError) as info:
        settings.project("demo").site("dropbox")

    assert "'dropbox'" in info.value.message
    assert "demo" in info.value.message
    assert "add a site 'dropbox' under 'sites'" in info.value.fix
    assert info.value.key == "sites.dropbox"


@pytest.mark.parametrize(
    ("platform", "root", "credentials"),
    [
        ("linux", "/mnt/work", "/etc/creds.json"),
        ("windows", "P:/work", "C:/creds.json"),
        ("darwin", "/Volumes/work", "/Users/x/creds.json"),
    ],
)
def test_per_platform_values_resolve_for_the_platform(load, platform, root, credentials) -> None:
    raw = valid_raw()
    raw["sites"] = {"studio": {"provider": "local_drive", "root": {"work": {
        "windows": "P:/work", "linux": "/mnt/work", "darwin": "/Volumes/work"}}},
        "gdrive": raw["sites"]["gdrive"]}

    settings = load(raw, platform=platform)

    assert settings.site("studio").roots == {"work": root}
    assert settings.site("gdrive").options["credentials_url"] == credentials


def test_current_platform_mapping() -> None:
    assert current_platform("win32") == "windows"
    assert current_platform("darwin") == "darwin"
    assert current_platform("linux") == "linux"
    assert current_platform("freebsd13") == "linux"
    assert current_platform() in ("windows", "darwin", "linux")


def test_openpype_text_numbers_are_accepted(load) -> None:
    raw = valid_raw()
    raw["retry_cnt"] = "5"
    raw["loop_delay"] = " 30 "
    raw["sites"]["sftp"]["sftp_port"] = "2222"
    raw["projects"] = {"demo": {"retry_cnt": "2"}}
    settings = load(raw)

    assert settings.project("x").retry_cnt == 5
    assert settings.project("x").loop_delay == 30
    assert settings.project("demo").retry_cnt == 2
    assert settings.site("sftp").options["sftp_port"] == 2222


def test_openpype_active_site_is_accepted_as_publish_site(load) -> None:
    raw = valid_raw()
    del raw["publish_site"]
    raw["active_site"] = "local"
    raw["projects"] = {"p": {"active_site": "sftp"}}
    settings = load(raw)

    assert settings.project("x").active_site == LOCAL_ID
    assert settings.project("p").active_site == "sftp"


def test_engine_settings_are_typed(load) -> None:
    raw = valid_raw()
    raw["engine"] = {"workers_per_site": 2, "lease_s": 30, "serve_site": "studio"}
    settings = load(raw)

    assert settings.engine.workers_per_site == 2
    assert settings.engine.lease_s == 30.0
    assert isinstance(settings.engine.backoff_max_s, float)
    assert settings.serve_site == "studio"
    del raw["engine"]
    assert load(raw).serve_site == LOCAL_ID


def test_unknown_provider_keys_pass_through_to_the_provider(load) -> None:
    raw = valid_raw()
    raw["sites"]["gdrive"]["team_drive_id"] = "0AbC"
    raw["sites"]["gdrive"]["scopes"] = {"linux": "a", "windows": "b"}

    options = load(raw).site("gdrive").options

    assert options["team_drive_id"] == "0AbC"
    assert options["scopes"] == "a"  # per-platform shape resolved


def test_home_folder_in_local_roots_is_expanded(load, isolated_dirs) -> None:
    raw = valid_raw()
    raw["sites"]["local"]["root"] = {"work": "~/projects"}

    root = load(raw).site("local").roots["work"]

    assert root == str(isolated_dirs / "home" / "projects")


def test_settings_are_frozen_and_repr_hides_secrets(load) -> None:
    raw = valid_raw()
    raw["database_url"] = "mongodb://admin:s3cretpw@db:27017"
    settings = load(raw)

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.local_id = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.site("studio").roots["work"] = "/x"  # type: ignore[index]
    text = repr(settings) + repr(settings.sites) + repr(settings.projects)
    assert "hunter2-secret" not in text
    assert "s3cretpw" not in text


def test_no_sync_when_remote_is_empty_or_same_as_active(load) -> None:
    raw = valid_raw()
    raw["remote_site"] = ""
    assert not load(raw).project("x").syncing
    raw["remote_site"] = "studio"
    assert not load(raw).project("x").syncing
