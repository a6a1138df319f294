"""The detail view: every file with its status per site, tries, full error; big image
sequences are read a page at a time."""

from __future__ import annotations

from PySide6.QtGui import QGuiApplication

from app.model import Status
from tests.helpers.seed import T0, make_repre
from tests.ui.queue.helpers import CTX, make_model, settle
from ui.queue import detail

WAIT = 15_000  # ms; CI machines are shared and slow


def test_files_are_read_a_page_at_a_time(qtbot, store, runner, monkeypatch):
    monkeypatch.setattr(detail, "PAGE_FILES", 3)
    store.ensure_project("demo")
    error = "permission denied writing /mnt/gdrive/x.exr\nthe share is read-only: ask IT for write access"
    repre = make_repre(files=7, sites={"studio": {"created_dt": T0},
                                       "gdrive": {"tries": 3, "error": error, "last_failed_dt": T0}})
    store.insert_representation(repre)
    model = make_model(store, runner)
    settle(qtbot, model, runner)
    dialog = detail.DetailDialog(store, runner, CTX, model.row(0))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: dialog.model.rowCount() == 3, timeout=WAIT)
    assert dialog.status_label.text() == "3 of 7 files: 0 synced, 3 failed"
    assert dialog.more_button.isVisible()
    assert [d.file_id for d in dialog.model.files()] == [f.id for f in repre.files[:3]]
    assert dialog.model.index(0, 3).data() == "Failed (3 tries)"
    assert dialog.model.index(0, 2).data().startswith("Synced")

    dialog.table.selectRow(1)
    assert error in dialog.error_view.toPlainText()  # the full text, every line
    dialog.copy_button.click()
    assert error in QGuiApplication.clipboard().text()

    dialog.more_button.click()
    qtbot.waitUntil(lambda: dialog.model.rowCount() == 6, timeout=WAIT)
    assert dialog.table.currentIndex().row() == 1  # the selection survived the longer list
    dialog.more_button.click()
    qtbot.waitUntil(lambda: dialog.model.rowCount() == 7, timeout=WAIT)
    assert not dialog.more_button.isVisible()
    assert dialog.status_label.text() == "7 files: 0 synced, 7 failed"

    # A change to the representation is re-read in place.
    store.reset_site("demo", repre.id, "gdrive", repre.files[0].id)
    dialog.representations_changed({repre.id})
    qtbot.waitUntil(lambda: dialog.model.file(0).status is Status.QUEUED, timeout=WAIT)
    assert dialog.model.index(0, 3).data() == "Queued"
