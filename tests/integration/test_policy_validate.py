"""`sitesync validate`: adopt copies already on a site without moving bytes, report the
rest with what to do. Real local_drive sites, both stores; the CLI on the embedded one."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import datetime, timezone

import pytest

from app.cli import main
from app.events.types import IntegrityAlert, TransferStarted
from app.policy.adopt import validate_site
from app.publish import build_representation
from tests.integration.conftest import LOCAL_ID
from tests.integration.test_engine import _all_synced


def _path(env, site, rootless):
    return env.roots[site] / rootless.replace("{root[work]}/", "")


def _copy(env, rootless, source, target, data: bytes | None = None):
    dst = _path(env, target, rootless)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        shutil.copy2(_path(env, source, rootless), dst)
    else:
        dst.write_bytes(data)


def _openpype_publish(env, asset):
    """Published on the studio the way OpenPype does it: no content checksum recorded."""
    folder = env.roots["studio"] / "demo" / asset
    folder.mkdir(parents=True)
    (folder / f"{asset}.ma").write_bytes(b"maya scene " * 1000)
    repre = build_representation(
        "demo", [folder / f"{asset}.ma"], {"work": str(env.roots["studio"])}, asset=asset,
        subset="modelMain", version=1, name="ma", family="model", publish_site="studio",
        queued_sites=[LOCAL_ID], now=datetime.now(timezone.utc))
    files = tuple(dataclasses.replace(f, sites=tuple(dataclasses.replace(s, checksum=None)
                                                     for s in f.sites)) for f in repre.files)
    return env.store.insert_representation(dataclasses.replace(repre, files=files))


@pytest.fixture
def seeded(sync_env):
    """A machine whose disk was seeded by hand, with every kind of case on it."""
    env = sync_env
    ids = {
        "seeded": env.publish("studio", "seeded", files=4, size=20_000),
        "untracked": env.publish("studio", "untracked", files=2, queued=()),
        "local": env.publish(LOCAL_ID, "local", files=3),
        "clash": env.publish("studio", "clash", files=1),
        "openpype": _openpype_publish(env, "prop"),
    }
    files = {name: env.store.get_representation("demo", i).files for name, i in ids.items()}
    for f in files["seeded"][:3]:
        _copy(env, f.path, "studio", LOCAL_ID)  # file 3 stays absent
    for f in files["untracked"]:
        _copy(env, f.path, "studio", LOCAL_ID)  # no entry for this machine at all
    _path(env, LOCAL_ID, files["local"][0].path).write_bytes(b"edited after publishing")
    size = files["local"][1].size
    _path(env, LOCAL_ID, files["local"][1].path).write_bytes(b"\0" * size)  # same size
    _path(env, LOCAL_ID, files["local"][2].path).unlink()
    _copy(env, files["clash"][0].path, "studio", LOCAL_ID, b"someone else's file")
    _copy(env, files["openpype"][0].path, "studio", LOCAL_ID)
    return env, ids, files


def test_validate_adopts_matches_and_reports_the_rest(seeded):
    env, ids, files = seeded
    alerts = []
    report = validate_site(env.store, env.settings, LOCAL_ID, ["demo"],
                           now=datetime.now(timezone.utc), publish=alerts.append)
    assert report.counts == {"adopted": 5, "absent": 1, "changed": 2, "missing": 1,
                             "different": 1, "unverified": 1}
    assert report.problems == 4
    by_file = {f.file_id: f for f in report.findings}
    assert "different file is at the published path" in by_file[files["clash"][0].id].detail
    changed = by_file[files["local"][0].id]
    assert "changed after it was published" in changed.detail and "re-publish" in changed.action
    assert "same size, different content" in by_file[files["local"][1].id].detail
    assert by_file[files["local"][2].id].kind == "missing"
    assert "--reference" in by_file[files["openpype"][0].id].action
    assert {(a.file_id, a.site) for a in alerts} == {
        (f.id, LOCAL_ID) for f in files["local"]}
    for name, adopted in (("seeded", 3), ("untracked", 2)):
        repre = env.store.get_representation("demo", ids[name])
        states = [f.site(LOCAL_ID) for f in repre.files]
        assert sum(1 for s in states if s is not None and s.available) == adopted
        assert all(s.checksum == f.site("studio").checksum
                   for s, f in zip(states, repre.files, strict=True) if s and s.available)
    # With a reference site the file OpenPype published (no checksum) is compared too.
    again = validate_site(env.store, env.settings, LOCAL_ID, ["demo"], reference="studio",
                          now=datetime.now(timezone.utc))
    assert again.counts["adopted"] == 1 and again.counts["verified"] == 5
    # A copy that is on the studio too can be fetched again: that is what it says.
    _path(env, LOCAL_ID, files["seeded"][0].path).write_bytes(b"rotted")
    third = validate_site(env.store, env.settings, LOCAL_ID, ["demo"],
                          now=datetime.now(timezone.utc))
    rotted = next(f for f in third.findings if f.file_id == files["seeded"][0].id)
    assert rotted.kind == "changed"
    assert rotted.action.startswith("fetch a good copy from studio: sitesync reset --project demo")
    _copy(env, files["seeded"][0].path, "studio", LOCAL_ID)
    # The engine then moves only what was not there: the one absent file.
    engine = env.engine()
    engine.start()
    env.wait_for(lambda: _all_synced(env, ids["seeded"], LOCAL_ID))
    assert [e.file_id for e in env.of_type(TransferStarted)
            if e.repre_id == ids["seeded"]] == [files["seeded"][3].id]


def test_dry_run_records_nothing(seeded):
    env, ids, _ = seeded
    report = validate_site(env.store, env.settings, LOCAL_ID, ["demo"], dry_run=True,
                           now=datetime.now(timezone.utc))
    assert report.counts["adopted"] == 5
    repre = env.store.get_representation("demo", ids["untracked"])
    assert all(f.site(LOCAL_ID) is None for f in repre.files)


@pytest.mark.parametrize("store_factory", ["sqlite"], indirect=True)  # the CLI's own store
def test_validate_command(seeded, monkeypatch, capsys):
    env, _ids, _files = seeded
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(env.tmp))
    config = str(env.settings_path)
    assert main(["--config", config, "validate", "--site", "local", "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "site artist-one: 11 file(s) checked" in out and "would adopt 5 file(s)" in out
    assert "CHANGED" in out and "MISSING" in out and "DIFFERENT" in out
    assert "what to do: no other site has this file" in out  # published here: the only copy
    assert main(["--config", config, "validate", "--site", "local", "--json",
                 "--reference", "studio"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["counts"]["adopted"] == 6 and result["integrity_alerts"] == 3
    assert main(["--config", config, "validate", "--site", "nowhere"]) == 2
    assert "site 'nowhere' is not configured" in capsys.readouterr().err


def test_a_site_that_is_not_mounted_is_refused_before_anything(sync_env):
    env = sync_env
    env.publish("studio", "x", files=1)
    shutil.rmtree(env.roots[LOCAL_ID])
    from app.errors import UserFixableError

    with pytest.raises(UserFixableError, match="cannot be checked"):
        validate_site(env.store, env.settings, LOCAL_ID, ["demo"], now=datetime.now(timezone.utc))
    assert not any(isinstance(e, IntegrityAlert) for e in env.events)
