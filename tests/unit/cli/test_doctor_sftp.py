"""`sitesync doctor` on an SFTP site, against the real test sshd: login, host key, roots."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from app.cli import main
from app.redact import clear_secrets
from tests.sftp_server import BROKEN_SFTP_SETUPS


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SITESYNC_CONFIG", str(tmp_path / "cfg" / "settings.json"))
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SITESYNC_LOG_DIR", str(tmp_path / "log"))
    monkeypatch.setenv("SITESYNC_LOCAL_ID", "artist")
    yield tmp_path
    clear_secrets()


def _doctor(home, capsys, sshd, **site_options) -> tuple[int, str]:
    local = home / "local"
    local.mkdir(exist_ok=True)
    remote = sshd.folder(f"doctor-{uuid.uuid4().hex[:8]}")
    site = {"provider": "sftp", **sshd.site_config(remote), **site_options}
    settings = {"publish_site": "local", "remote_site": "studio-sftp",
                "sites": {"local": {"provider": "local_drive", "root": {"work": str(local)}},
                          "studio-sftp": site}}
    (home / "cfg").mkdir(exist_ok=True)
    (home / "cfg" / "settings.json").write_text(json.dumps(settings))
    (local / "a.exr").write_bytes(b"frame")
    assert main(["publish", "--project", "demo", "--asset", "sh010", "--subset", "renderMain",
                 "--version", "1", "--name", "exr", str(local / "a.exr")]) == 0
    capsys.readouterr()
    code = main(["doctor"])
    return code, capsys.readouterr().out


def test_doctor_reports_login_trust_and_verification(home, capsys, sshd):
    code, out = _doctor(home, capsys, sshd)
    assert code == 0, out
    line = next(text for text in out.splitlines() if "site studio-sftp" in text)
    assert line.startswith("ok")
    assert f"logged in as {sshd.user}@127.0.0.1:{sshd.port}" in line
    assert f"host key checked against {sshd.known_hosts}" in line
    assert "verified by hashing on the server (openssl dgst -sha256 -r)" in line


def test_doctor_names_the_fix_for_an_unknown_host_key(home, capsys, sshd):
    code, out = _doctor(home, capsys, sshd, known_hosts=sshd.known_hosts_with("doctor", "empty"))
    assert code == 1
    line = next(text for text in out.splitlines() if "site studio-sftp" in text)
    assert line.startswith("FAIL") and "is not trusted" in line
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1" in line


def test_doctor_shows_a_refused_login_without_the_password(home, capsys, sshd):
    code, out = _doctor(home, capsys, sshd, sftp_key="", sftp_pass="s3cret-pass")
    assert code == 1
    assert "refused the login" in out and "s3cret-pass" not in out


def test_doctor_reports_a_missing_root_and_a_shell_less_server(home, capsys, sshd):
    code, out = _doctor(home, capsys, sshd, root={"work": "/nonexistent/projects"})
    assert code == 1 and "root 'work' of site 'studio-sftp' does not exist" in out
    code, out = _doctor(home, capsys, sshd, sftp_port=sshd.sftp_only_port)
    assert code == 0 and "uploads verified by reading them back" in out


@pytest.mark.parametrize("setup", BROKEN_SFTP_SETUPS, ids=lambda setup: setup.name)
def test_doctor_names_an_sftp_subsystem_that_cannot_start_and_the_line_to_fix(home, capsys, sshd,
                                                                              setup):
    port = setup.started(sshd)
    started = time.monotonic()
    code, out = _doctor(home, capsys, sshd, sftp_port=port)
    assert time.monotonic() - started < 5
    assert code == 1
    line = next(text for text in out.splitlines() if "site studio-sftp" in text)
    assert line.startswith("FAIL") and all(words in line for words in setup.says), line
    assert not any(words in line for words in setup.never_says), line
    assert "Traceback" not in out + capsys.readouterr().err


def test_doctor_checks_a_new_sftp_site_before_the_first_publish(home, capsys, sshd):
    remote = sshd.folder(f"doctor-{uuid.uuid4().hex[:8]}")
    site = {"provider": "sftp", **sshd.site_config(remote),
            "known_hosts": sshd.known_hosts_with("doctor-new", "wrong")}
    settings = {"publish_site": "local", "remote_site": "studio-sftp",
                "sites": {"local": {"provider": "local_drive", "root": {"work": str(home)}},
                          "studio-sftp": site}}
    (home / "cfg").mkdir()
    (home / "cfg" / "settings.json").write_text(json.dumps(settings))
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "no projects yet" in out
    line = next(text for text in out.splitlines() if "site studio-sftp" in text)
    assert line.startswith("FAIL") and "has CHANGED" in line
