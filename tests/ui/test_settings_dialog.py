"""Settings dialog: the loader's messages next to the fields, atomic save, applied live."""

from __future__ import annotations

import json

import pytest

from app.store.mongo import MongoStore
from app.store.sqlite import SqliteStore
from tests.ui.conftest import LOCAL_ID, started
from ui.settings_dialog import SettingsDialog


def file_doc(live) -> dict:
    return json.loads(live.settings_path.read_text())


def test_problems_show_next_to_their_field_and_nothing_is_written(live, qtbot):
    before = live.settings_path.read_bytes()
    dialog = SettingsDialog(live.settings)
    qtbot.addWidget(dialog)
    dialog.remote_site.setCurrentText("nosuch")
    dialog.local_id.setText("studio")
    dialog.database_url.setText("http://db.example:27017")
    assert dialog.save() is None
    remote = dialog.errors.labels["remote_site"]
    assert not remote.isHidden()
    assert "remote_site: site 'nosuch' is not configured" in remote.text()
    assert "Fix: add a site 'nosuch' under 'sites' or change remote_site" in remote.text()
    assert "reserved" in dialog.errors.labels["local_id"].text()
    assert "database_url" in dialog.errors.labels["database_url"].text()
    assert dialog.errors.labels["retry_cnt"].isHidden()
    assert dialog.tabs.tabText(0).endswith("⚠") and dialog.tabs.tabText(2).endswith("⚠")
    assert not dialog.tabs.tabText(1).endswith("⚠")
    assert live.settings_path.read_bytes() == before
    # Fixed values clear the messages and save.
    dialog.remote_site.setCurrentText("studio")
    dialog.local_id.setText("artist-two")
    dialog.database_url.setText("")
    with qtbot.waitSignal(dialog.saved) as saved:
        assert dialog.save() is not None
    assert saved.args[0].local_id == "artist-two"
    assert dialog.errors.labels["remote_site"].isHidden()


def test_save_is_atomic_and_keeps_keys_the_dialog_does_not_show(live, qtbot):
    dialog = SettingsDialog(live.settings)
    qtbot.addWidget(dialog)
    dialog.retry_cnt.setValue(7)
    dialog.loop_delay.setValue(30)
    dialog.workers.setValue(2)
    settings = dialog.save()
    assert settings is not None
    assert (settings.retry_cnt, settings.loop_delay, settings.engine.workers_per_site) == (7, 30, 2)
    doc = file_doc(live)
    assert doc["retry_cnt"] == 7 and doc["engine"]["workers_per_site"] == 2
    assert doc["projects"] == {"keepme": {"retry_cnt": 5}}  # not shown, kept
    assert doc["engine"]["lease_s"] == 6
    assert not list(live.settings_path.parent.glob(".settings.json.*.tmp"))
    assert live.settings_path.stat().st_mode & 0o777 == 0o600


def test_sites_are_added_edited_and_removed_with_checks(live, qtbot):
    dialog = SettingsDialog(live.settings)
    qtbot.addWidget(dialog)
    editor = dialog.site_editor()
    editor.name_edit.setText("nas")
    editor.set_roots({"work": "relative/folder"})
    assert not editor.try_accept()
    assert "is not an absolute path" in editor.errors.labels["root"].text()
    assert "Fix: use a full path" in editor.errors.labels["root"].text()
    editor.name_edit.setText("studio")
    assert not editor.try_accept()
    assert "exists already" in editor.errors.labels["name"].text()
    nas = live.tmp / "nas"
    nas.mkdir()
    editor.name_edit.setText("nas")
    editor.set_roots({"work": str(nas), "renders": str(nas / "renders")})
    assert editor.try_accept()
    dialog.apply_site(editor)
    names = [dialog.sites_table.item(r, 0).text() for r in range(dialog.sites_table.rowCount())]
    assert names == [LOCAL_ID, "studio", "nas"]

    edit = dialog.site_editor("nas")
    assert edit.roots.item(1, 0).text() == "renders"
    edit.name_edit.setText("nas2")
    assert edit.try_accept()
    dialog.apply_site(edit)
    dialog.remote_site.setCurrentText("nas2")
    settings = dialog.save()
    assert settings is not None and settings.defaults.remote_site == "nas2"
    assert file_doc(live)["sites"]["nas2"] == {"provider": "local_drive",
                                               "root": {"work": str(nas), "renders": str(nas / "renders")}}
    # Removing a site another key still names is refused, next to that key.
    dialog2 = SettingsDialog(settings)
    qtbot.addWidget(dialog2)
    dialog2.remove_site("nas2")
    assert dialog2.save() is None
    assert "site 'nas2' is not configured" in dialog2.errors.labels["remote_site"].text()


def test_saved_settings_are_applied_to_the_running_engine(live, make_controller, qtbot):
    controller = started(make_controller, qtbot)
    engine = controller.engine
    controller.open_settings()
    dialog = controller.settings_dialog
    dialog.retry_cnt.setValue(9)
    dialog.loop_delay.setValue(5)
    with qtbot.waitSignal(dialog.saved):
        dialog.save()
    qtbot.waitUntil(lambda: engine.settings.retry_cnt == 9)
    assert controller.engine is engine  # applied live, no restart
    assert controller.settings.loop_delay == 5
    # An open Sync Queue window follows the new settings.
    controller.open_queue()
    window = controller.window
    controller.open_settings()
    dialog = controller.settings_dialog
    dialog.retry_cnt.setValue(4)
    with qtbot.waitSignal(dialog.saved):
        dialog.save()
    assert window.settings.retry_cnt == 4 and controller.window is window
    # A concurrency change restarts the engine in the background; syncing continues.
    controller.open_settings()
    dialog = controller.settings_dialog
    dialog.workers.setValue(1)
    with qtbot.waitSignal(controller.session_ready, timeout=15000):
        dialog.save()
    assert controller.engine is not engine and engine.state == "stopped"
    assert controller.window is None  # it held the old engine; the next open makes a new one
    assert controller.engine.settings.engine.workers_per_site == 1
    store = live.open_store()
    repre = live.publish(store, LOCAL_ID, "after", files=2)
    qtbot.waitUntil(lambda: live.synced(store, repre, "studio"), timeout=20000)


def test_a_database_url_change_reopens_the_store_off_the_gui_thread(live, make_controller, qtbot,
                                                                    mongo_uri, request):
    controller = started(make_controller, qtbot)
    old_store = controller.store
    assert isinstance(old_store, SqliteStore)
    controller.open_settings()
    dialog = controller.settings_dialog
    dialog.database_url.setText(mongo_uri)
    dialog.database_name.setText("tray_" + request.node.name[-20:].replace("[", "_").strip("]"))
    with qtbot.waitSignal(controller.session_ready, timeout=20000):
        dialog.save()
    assert isinstance(controller.store, MongoStore)
    with pytest.raises(Exception):  # noqa: B017 - the old connection was closed
        old_store.list_projects()
    mongo = MongoStore(mongo_uri, database=controller.settings.database_name)
    try:
        repre = live.publish(mongo, LOCAL_ID, "on_mongo", files=2)
        qtbot.waitUntil(lambda: live.synced(mongo, repre, "studio"), timeout=30000)
    finally:
        mongo.close()


def test_an_sftp_site_is_edited_with_its_own_options(live, qtbot):
    dialog = SettingsDialog(live.settings)
    qtbot.addWidget(dialog)
    editor = dialog.site_editor()
    editor.name_edit.setText("server")
    editor.provider.setCurrentIndex(editor.provider.findData("sftp"))
    fields = editor.option_widgets
    assert {"sftp_host", "sftp_port", "sftp_user", "sftp_pass"} <= set(fields)
    assert fields["sftp_pass"].echoMode() == fields["sftp_pass"].EchoMode.Password
    editor.set_roots({"work": "/srv/projects"})
    fields["sftp_host"].setText("127.0.0.1")
    fields["sftp_user"].setText("artist")
    fields["sftp_pass"].setText("s3cret-pw")
    fields["sftp_port"].setText("not a port")
    assert not editor.try_accept()
    assert "sftp_port" in editor.errors.labels["option.sftp_port"].text()
    assert "s3cret-pw" not in editor.errors.summary.text()
    fields["sftp_port"].setText("2222")
    fields["sftp_connect_timeout_s"].setText("7.5")
    assert editor.try_accept()
    assert editor.result_block["sftp_port"] == 2222
    assert editor.result_block["sftp_connect_timeout_s"] == 7.5
    dialog.apply_site(editor)
    settings = dialog.save()
    assert settings is not None
    site = settings.site("server")
    assert site.provider == "sftp" and site.options["sftp_user"] == "artist"
    # Switching provider drops the old provider's options (they would be unknown keys).
    edit = dialog.site_editor("server")
    edit.provider.setCurrentIndex(edit.provider.findData("local_drive"))
    edit.set_roots({"work": str(live.tmp)})
    assert edit.try_accept()
    assert not any(key.startswith("sftp_") for key in edit.result_block)


def test_per_site_limits_are_checked_saved_and_applied_without_a_restart(live, make_controller, qtbot):
    from app.model import Direction

    controller = started(make_controller, qtbot)
    engine = controller.engine
    assert engine.slots.limit("studio", Direction.UPLOAD) == 4  # engine.workers_per_site
    controller.open_settings()
    dialog = controller.settings_dialog
    editor = dialog.site_editor("studio")
    transfers, bwlimit = editor.limit_widgets["transfers"], editor.limit_widgets["bwlimit"]
    assert transfers.text() == "" and bwlimit.text() == ""
    transfers.setText("many")
    bwlimit.setText("fast")
    assert not editor.try_accept()
    assert "transfers" in editor.errors.labels["limit.transfers"].text()
    assert "Fix:" in editor.errors.labels["limit.transfers"].text()
    assert "bwlimit" in editor.errors.labels["limit.bwlimit"].text()
    # Switching provider keeps the limits (they are this machine's, not the provider's).
    editor.provider.setCurrentIndex(editor.provider.findData("local_drive"))
    transfers.setText("2:6")
    bwlimit.setText("10M")
    assert editor.try_accept()
    assert editor.result_block["transfers"] == "2:6" and editor.result_block["bwlimit"] == "10M"
    dialog.apply_site(editor)
    assert dialog.sites_table.item(1, 3).text() == "transfers at once 2:6, bandwidth limit 10M"
    with qtbot.waitSignal(dialog.saved):
        dialog.save()
    doc = file_doc(live)
    assert doc["sites"]["studio"]["transfers"] == "2:6" and doc["sites"]["studio"]["bwlimit"] == "10M"
    # Applied to the running engine: no restart, new slot limits per direction.
    qtbot.waitUntil(lambda: engine.slots.limit("studio", Direction.UPLOAD) == 2, timeout=5000)
    assert engine.slots.limit("studio", Direction.DOWNLOAD) == 6
    assert controller.engine is engine
    # A plain number is stored as a number; an emptied field goes back to the default.
    controller.open_settings()
    dialog = controller.settings_dialog
    editor = dialog.site_editor("studio")
    assert editor.limit_widgets["transfers"].text() == "2:6"
    editor.limit_widgets["transfers"].setText("3")
    editor.limit_widgets["bwlimit"].setText("")
    assert editor.try_accept()
    dialog.apply_site(editor)
    with qtbot.waitSignal(dialog.saved):
        dialog.save()
    assert file_doc(live)["sites"]["studio"]["transfers"] == 3
    assert "bwlimit" not in file_doc(live)["sites"]["studio"]
    qtbot.waitUntil(lambda: engine.slots.limit("studio", Direction.DOWNLOAD) == 3, timeout=5000)
