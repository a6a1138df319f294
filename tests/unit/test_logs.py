"""Log files in the log folder, rotated by size (app/logs.py)."""

from __future__ import annotations

import logging

import pytest

from app.logs import close_log, log_to_file


@pytest.fixture
def clean_root():
    root = logging.getLogger()
    handlers, levels = list(root.handlers), {h: h.level for h in root.handlers}
    level = root.level
    yield root
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    for handler, old in levels.items():
        handler.setLevel(old)


def test_close_log_stops_the_file(tmp_path, monkeypatch, clean_root):
    monkeypatch.setenv("SITESYNC_LOG_DIR", str(tmp_path))
    handler = log_to_file("serve.log")
    close_log(handler)
    assert handler not in logging.getLogger().handlers
    logging.getLogger("sitesync").warning("after")
    assert "after" not in (tmp_path / "serve.log").read_text()


def test_records_go_to_the_log_folder_and_rotate(tmp_path, monkeypatch, clean_root):
    monkeypatch.setenv("SITESYNC_LOG_DIR", str(tmp_path / "log"))
    handler = log_to_file("serve.log", max_bytes=2_000, backups=2)
    path = tmp_path / "log" / "serve.log"
    assert handler.baseFilename == str(path)
    log = logging.getLogger("sitesync.serve")
    log.debug("not at the default level")
    for n in range(200):
        log.info("synced studio shots/sh010/frame.%04d.exr", n)
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["serve.log", "serve.log.1", "serve.log.2"]
    assert all(p.stat().st_size <= 2_000 for p in path.parent.iterdir())
    text = path.read_text()
    assert "frame.0199.exr" in text and "INFO sitesync.serve" in text
    assert "not at the default level" not in text + (path.parent / "serve.log.2").read_text()


def test_debug_records_with_debug(tmp_path, monkeypatch, clean_root):
    monkeypatch.setenv("SITESYNC_LOG_DIR", str(tmp_path))
    handler = log_to_file("tray.log", debug=True)
    logging.getLogger("sitesync.x").debug("details")
    handler.flush()
    assert "DEBUG sitesync.x: details" in (tmp_path / "tray.log").read_text()


def test_an_unusable_log_folder_is_no_error(tmp_path, monkeypatch, clean_root):
    not_a_folder = tmp_path / "log"
    not_a_folder.write_text("a file where the log folder should be")
    monkeypatch.setenv("SITESYNC_LOG_DIR", str(not_a_folder))
    assert log_to_file("serve.log") is None
