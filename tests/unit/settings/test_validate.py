"""Every kind of bad setting is reported with its key path and a fix that says what to do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.errors import ConfigError
from app.settings import InvalidSettingsError, load_settings, validate
from tests.unit.settings.samples import LOCAL_ID, valid_raw

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = raw
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


def _problems(mutate: Mutation, platform: str = "linux") -> list[ConfigError]:
    raw = valid_raw()
    mutate(raw)
    return validate(raw, platform=platform)


def _only(mutate: Mutation, platform: str = "linux") -> ConfigError:
    problems = _problems(mutate, platform)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_sample_document_is_valid() -> None:
    assert validate(valid_raw(), platform="linux") == []
    assert validate(valid_raw(), platform="darwin") == []


CASES = [
    # wrong types
    ("retry_cnt", "many", "retry_cnt", "set it to a whole number from 1 to 1000"),
    ("retry_cnt", True, "retry_cnt", "whole number"),
    ("retry_cnt", 2.5, "retry_cnt", "whole number"),
    ("loop_delay", [60], "loop_delay", "whole number"),
    ("database_name", 5, "database_name", "database name"),
    ("publish_site", 7, "publish_site", "write the site name in quotes"),
    ("always_accessible_on", "studio", "always_accessible_on", '["site1", "site2"]'),
    ("sites", [], "sites", "write it as"),
    ("projects", "demo", "projects", "write it as"),
    ("engine", 3, "engine", "write it as"),
    ("engine/workers_per_site", "8", "engine.workers_per_site", "whole number"),
    ("engine/lease_s", "60", "engine.lease_s", "set it to a number"),
    ("engine/progress_interval_s", 0, "engine.progress_interval_s", "set it to a number > 0"),
    ("sites/sftp/sftp_port", "ssh", "sites.sftp.sftp_port", "from 1 to 65535"),
    ("sites/sftp/insecure_skip_host_key_check", "yes", "sites.sftp.insecure_skip_host_key_check",
     "true or false"),
    ("sites/sftp/sftp_host", 1, "sites.sftp.sftp_host", "in quotes"),
    ("sites/gdrive/credentials_url", 5, "sites.gdrive.credentials_url", '{"windows": "...",'),
    ("sites/gdrive", "gdrive", "sites.gdrive", "write it as"),
    ("projects/demo", True, "projects.demo", "write it as"),
    ("projects/demo", {"enabled": "yes"}, "projects.demo.enabled", "true or false"),
    ("projects/demo", {"retry_cnt": "x"}, "projects.demo.retry_cnt", "whole number"),
    # negative numbers
    ("retry_cnt", -1, "retry_cnt", "set it to a whole number from 1 to 1000"),
    ("loop_delay", "-5", "loop_delay", "whole number from 1 to 86400"),
    ("engine/backoff_base_s", -1, "engine.backoff_base_s", "number from 0"),
    ("projects/demo", {"retry_cnt": 0}, "projects.demo.retry_cnt", "whole number from 1"),
    ("engine/backoff_max_s", 5, "engine.backoff_max_s", "at least 10"),
    # unknown provider
    ("sites/gdrive/provider", "gdive", "sites.gdrive.provider",
     "did you mean 'gdrive'? use one of: local_drive, gdrive, sftp"),
    ("sites/gdrive/provider", "dropbox", "sites.gdrive.provider",
     "use one of: local_drive, gdrive, sftp"),
    ("sites/gdrive/provider", None, "sites.gdrive.provider", "use one of"),
    # unknown / typo keys
    ("retry_count", 3, "retry_count", "did you mean 'retry_cnt'?"),
    ("remote_stie", "studio", "remote_stie", "did you mean 'remote_site'?"),
    ("colour", "red", "colour", "remove it; known keys here:"),
    ("engine/lease", 10, "engine.lease", "did you mean 'lease_s'?"),
    ("engine/turbo", True, "engine.turbo", "remove it"),
    ("projects/demo", {"remote_sites": "x"}, "projects.demo.remote_sites",
     "did you mean 'remote_site'?"),
    ("sites/gdrive/credential_url", "/x", "sites.gdrive.credential_url",
     "did you mean 'credentials_url'?"),
    ("sites/studio/roots", {"work": "/x"}, "sites.studio.roots", "did you mean 'root'?"),
    ("sites/sftp/provder", "sftp", "sites.sftp.provder", "did you mean 'provider'?"),
    # sites that are not configured
    ("remote_site", "dropbox", "remote_site",
     "add a site 'dropbox' under 'sites' or change remote_site"),
    ("publish_site", "gdrve", "publish_site", "did you mean 'gdrive'?"),
    ("always_accessible_on", ["nas"], "always_accessible_on.0", "add a site 'nas'"),
    ("engine/serve_site", "nas", "engine.serve_site", "add a site 'nas'"),
    ("projects/demo", {"remote_site": "nas"}, "projects.demo.remote_site",
     "add a site 'nas' under 'sites' or change remote_site"),
    # sites: provider missing, roots missing, bad roots
    ("sites/nas", {"root": {"work": "/mnt/nas"}}, "sites.nas.provider",
     'add "provider": one of local_drive, gdrive, sftp'),
    ("sites/nas", {"provider": "local_drive"}, "sites.nas.root", 'add "root": {"work":'),
    ("sites/studio/root", {}, "sites.studio.root", 'add "root"'),
    ("sites/studio/root", "/mnt/studio", "sites.studio.root", '{"work": \'/mnt/studio\'}'),
    ("sites/studio/root", {"windows": "P:/", "linux": "/mnt"}, "sites.studio.root",
     "wrap it in a root name"),
    ("sites/studio/root", {"work": {"windows": "P:/work", "darwin": "/Volumes/w"}},
     "sites.studio.root.work", 'add a "linux" folder for root \'work\''),
    ("sites/studio/root", {"work": {"windows": "P:/", "linux": "", "darwin": "/V"}},
     "sites.studio.root.work", 'add a "linux" folder'),
    ("sites/studio/root", {"work": {"linux": "/m", "linx": "/m"}}, "sites.studio.root.work",
     "did you mean 'linux'?"),
    ("sites/studio/root", {"work": "relative/dir"}, "sites.studio.root.work",
     "use a full path"),
    ("sites/studio/root", {"work": ""}, "sites.studio.root.work", "set root 'work' to a folder"),
    ("sites/studio/root", {"work": 5}, "sites.studio.root.work", 'write "path" or'),
    ("sites/studio/root", {"work": {"linux": 5}}, "sites.studio.root.work",
     "write the path in quotes"),
    # database
    ("database_url", "postgres://db/avalon", "database_url", "mongodb:// or mongodb+srv://"),
    ("database_url", "db.example.com:27017", "database_url", "mongodb://"),
    ("database_url", "mongodb://", "database_url", "mongodb://host:27017"),
    ("database_name", "my.db", "database_name", "letters, digits"),
    # site names and local_id
    ("sites/bad.name", {"provider": "local_drive", "root": {"work": "/x"}}, "sites.bad.name",
     "no dots"),
    ("local_id", "studio", "local_id", "choose another name"),
    ("local_id", "", "local_id", "generates one"),
]


@pytest.mark.parametrize(("path", "value", "key", "fix"), CASES,
                         ids=[f"{c[0]}={c[1]!r}"[:60] for c in CASES])
def test_bad_value_is_reported_with_key_path_and_fix(path, value, key, fix) -> None:
    problem = _only(_set(path, value))

    assert problem.key == key
    assert str(problem.message).startswith(f"{key}: ")
    assert fix in problem.fix


def test_missing_local_id_is_reported_by_validate() -> None:
    problem = _only(_delete("local_id"))
    assert problem.key == "local_id"


def test_studio_local_and_local_id_need_no_configuration() -> None:
    def mutate(raw: dict[str, Any]) -> None:
        del raw["sites"]["studio"]
        del raw["sites"]["local"]
        raw["publish_site"] = "local"
        raw["always_accessible_on"] = ["studio", LOCAL_ID]
        raw["projects"] = {"p": {"remote_site": LOCAL_ID, "sites": {"studio": {"enabled": False}}}}

    assert _problems(mutate) == []


def test_implicit_site_partially_configured_keeps_anatomy_roots() -> None:
    assert _problems(_set("sites/studio", {"provider": "local_drive"})) == []


def test_project_site_must_be_complete_when_new() -> None:
    problem = _only(_set("projects/demo", {"sites": {"nas": {"provider": "local_drive"}}}))
    assert problem.key == "projects.demo.sites.nas.root"


def test_project_site_override_problem_is_reported_under_the_project() -> None:
    problem = _only(_set("projects/demo", {"sites": {"sftp": {"sftp_port": 0}}}))
    assert problem.key == "projects.demo.sites.sftp.sftp_port"


def test_broken_global_site_is_reported_once_not_per_project() -> None:
    def mutate(raw: dict[str, Any]) -> None:
        raw["sites"]["nas"] = {"provider": "local_drive"}
        raw["projects"] = {"a": {"sites": {"nas": {"enabled": True}}}}

    assert [p.key for p in _problems(mutate)] == ["sites.nas.root"]


def test_root_for_the_current_platform_is_required_only_there() -> None:
    roots = {"work": {"windows": "P:/work", "linux": "", "darwin": ""}}
    assert _problems(_set("sites/studio/root", roots), platform="windows") == []
    problem = _only(_set("sites/studio/root", roots), platform="darwin")
    assert problem.key == "sites.studio.root.work"


def test_windows_paths_are_judged_by_windows_rules() -> None:
    mutate = _set("sites/studio/root", {"work": "P:/work"})
    assert _problems(mutate, platform="windows") == []
    assert _only(mutate, platform="linux").key == "sites.studio.root.work"


def test_both_publish_site_and_active_site_is_reported() -> None:
    problem = _only(_set("active_site", "studio"))
    assert problem.key == "active_site"
    assert "keep only 'publish_site'" in problem.fix


def test_active_site_is_not_mistaken_for_a_typo_of_remote_site() -> None:
    def mutate(raw: dict[str, Any]) -> None:
        raw["active_site"] = raw.pop("publish_site")

    assert _problems(mutate) == []


def test_unknown_provider_keys_are_allowed() -> None:
    assert _problems(_set("sites/gdrive/team_drive_id", "0ABC")) == []
    assert _problems(_set("sites/studio/verify_reread", True)) == []


def test_keys_of_another_provider_are_not_typos() -> None:
    assert _problems(_set("sites/gdrive/sftp_host", "x")) == []


def test_non_object_document_is_reported() -> None:
    assert [p.key for p in validate([1, 2])] == [""]
    assert validate("text")[0].fix.startswith("start the file with {")


@pytest.mark.parametrize(
    ("mutate", "secret"),
    [
        (_set("sites/sftp/sftp_pass", 12345678), None),
        (_set("sites/sftp/sftp_port", "hunter2-secret"), "hunter2-secret"),
        (_set("database_url", "http://admin:pa55word@db/x"), "pa55word"),
        (_set("database_url", "mongodb://admin:pa55word@"), "pa55word"),
        (_set("sites/sftp/sftp_key_pass", ["passphrase-123"]), "passphrase-123"),
        (_set("remote_site", "hunter2-secret"), "hunter2-secret"),
    ],
)
def test_secrets_never_appear_in_messages(mutate, secret, write_settings) -> None:
    raw = valid_raw()
    mutate(raw)
    problems = validate(raw, platform="linux")
    assert problems
    for problem in problems:
        text = f"{problem} {problem.key}"
        assert "hunter2-secret" not in text or problem.key.startswith("sites.sftp.sftp_pass")
        if secret:
            assert secret not in text
    write_settings(raw)
    with pytest.raises(InvalidSettingsError) as info:
        load_settings(platform="linux")
    if secret:
        assert secret not in str(info.value)
    assert "hunter2-secret" not in str(info.value)


@pytest.mark.parametrize(("path", "value", "key", "words"), [
    ("sites/studio/bwlimit", "fast", "sites.studio.bwlimit", "is not a rate"),
    ("sites/studio/bwlimit", "25:00,1M", "sites.studio.bwlimit", "no such time"),
    ("sites/studio/bwlimit", 10, "sites.studio.bwlimit", "must be text"),
    ("sites/studio/transfers", 0, "sites.studio.transfers", "out of range"),
    ("sites/studio/transfers", {"up": 1}, "sites.studio.transfers", "unknown key"),
    ("projects/p/sites/studio/bwlimit", "1M", "projects.p.sites.studio.bwlimit",
     "limit of this machine"),
])
def test_limits_are_checked_with_key_and_fix(path, value, key, words) -> None:
    problem = _only(_set(path, value))
    assert problem.key == key and words in problem.message and problem.fix


def test_limits_load_into_site_configs(write_settings) -> None:
    raw = valid_raw()
    raw["sites"]["studio"].update(bwlimit="08:00,1M:4M 19:00,off", transfers="2:6")
    settings = load_settings(write_settings(raw), platform="linux")
    studio = settings.site("studio")
    assert studio.bwlimit.is_timetable and studio.transfers.download == 6
    assert settings.site("gdrive").bwlimit is None and settings.site("gdrive").transfers is None


@pytest.mark.parametrize(("path", "value", "key", "words"), [
    ("conflict_policy", "sometimes", "conflict_policy", "is not a conflict policy"),
    ("conflict_policy", {"studio>local": "keep"}, "conflict_policy.studio>local",
     "is not a conflict policy"),
    ("conflict_policy", {"studio": "this"}, "conflict_policy.studio", "SOURCE>TARGET"),
    ("projects/p/conflict_policy", 1, "projects.p.conflict_policy", "policy name or a mapping"),
])
def test_conflict_policy_is_checked_with_key_and_fix(path, value, key, words) -> None:
    problem = _only(_set(path, value))
    assert problem.key == key and words in problem.message and problem.fix


def test_conflict_policy_per_project_and_pair(write_settings) -> None:
    raw = valid_raw()
    raw["conflict_policy"] = {"studio>local": "this", "default": "newer"}
    raw["projects"] = {"p": {"conflict_policy": "other"}}
    settings = load_settings(write_settings(raw), platform="linux")
    assert settings.project("q").conflict_policy_for("studio", LOCAL_ID) == "this"
    assert settings.project("q").conflict_policy_for("studio", "gdrive") == "newer"
    assert settings.project("p").conflict_policy_for("studio", LOCAL_ID) == "other"
