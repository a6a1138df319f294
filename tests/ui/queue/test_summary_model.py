"""SummaryModel against real stores: paging, sorting, filters and counts, row-level updates
that keep the selection and the scroll position, and the live progress overlay."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt

from app.events.types import FileProgress
from app.model import Direction, Status
from tests.helpers.seed import make_repre
from tests.ui.queue.helpers import CTX, RETRY, make_model, seed, seed_status, settle
from ui.queue.cells import SITE_ROLE
from ui.queue.columns import column_index
from ui.queue.table import QueueTable

WAIT = 15_000  # ms; CI machines are shared and slow


def _ids(model):
    return [model.row(i).repre_id for i in range(model.rowCount())]


def _assets(model):
    return [model.row(i).asset for i in range(model.rowCount())]


def test_pages_are_fetched_as_the_table_asks(qtbot, store, runner):
    seed(store, 60)
    model = make_model(store, runner, page_size=25)
    settle(qtbot, model, runner)
    assert model.rowCount() == 25 and model.total == 60
    assert _assets(model) == [f"sh{i:03d}" for i in range(25)]
    assert model.canFetchMore()
    model.fetchMore()
    assert not model.canFetchMore()  # one page at a time
    settle(qtbot, model, runner)
    assert model.rowCount() == 50
    model.fetchMore()
    settle(qtbot, model, runner)
    assert model.rowCount() == 60 and not model.canFetchMore()
    assert _assets(model) == [f"sh{i:03d}" for i in range(60)]
    assert len(set(_ids(model))) == 60


def test_the_view_asks_for_pages_as_the_user_scrolls(qtbot, store, runner):
    seed(store, 90)
    model = make_model(store, runner, page_size=40)
    view = QueueTable(model)
    qtbot.addWidget(view)
    view.resize(900, 300)  # about ten rows on screen
    view.show()
    settle(qtbot, model, runner)
    assert model.rowCount() == 40  # the first page fills the screen; no more asked yet
    view.scrollToBottom()
    qtbot.waitUntil(lambda: model.rowCount() == 80, timeout=WAIT)
    view.scrollToBottom()
    qtbot.waitUntil(lambda: model.rowCount() == 90, timeout=WAIT)
    settle(qtbot, model, runner)
    assert _assets(model) == [f"sh{i:03d}" for i in range(90)]
    # Clicking a header sorts on the server, from the first page again.
    view.horizontalHeader().setSortIndicator(column_index("asset"), Qt.SortOrder.DescendingOrder)
    qtbot.waitUntil(lambda: model.rowCount() and model.row(0).asset == "sh089", timeout=WAIT)
    settle(qtbot, model, runner)
    assert view.verticalScrollBar().value() == 0


def test_site_headers_name_the_sites_and_are_never_cut_off(qtbot, runner, store_factory):
    store = store_factory()
    long_site = "valiant-frosty-ferret-on-the-workstation-upstairs"
    model = make_model(store, runner, ctx=replace(CTX, active_site=long_site))
    view = QueueTable(model)
    qtbot.addWidget(view)
    header = view.horizontalHeader()
    active, remote = column_index("active"), column_index("remote")
    assert model.items.headerData(active, Qt.Orientation.Horizontal) == f"Active site\n{long_site}"
    assert model.items.headerData(remote, Qt.Orientation.Horizontal) == "Remote site\ngdrive"
    assert view.columnWidth(active) >= header.sectionSizeHint(active) > 180
    assert view.columnWidth(remote) == 180  # short labels keep OpenPype's width
    view.setColumnWidth(active, 600)  # the user widened it: a new project never narrows it
    model.set_context(replace(CTX, project="other"))
    assert view.columnWidth(active) == 600
    settle(qtbot, model, runner)


def test_statuses_come_from_the_store_with_the_projects_retry_cnt(qtbot, store, runner):
    ids = seed(store, 20)
    model = make_model(store, runner, page_size=50)
    settle(qtbot, model, runner)
    assert [model.row(i).status for i in range(20)] == [seed_status(i) for i in range(20)]
    status_col = column_index("status")
    assert model.index(0, status_col).data() == "Failed"
    cell = model.index(0, column_index("remote")).data(SITE_ROLE)
    assert cell.status is Status.FAILED and cell.error == "quota exceeded" and cell.tries == 2 * RETRY
    assert "quota exceeded" in model.index(0, status_col).data(Qt.ItemDataRole.ToolTipRole)
    # With a higher retry_cnt the same entries are merely queued (OpenPype hard-coded 3).
    lenient = make_model(store, runner, page_size=50, ctx=CTX.__class__(**{**CTX.__dict__, "retry_cnt": 10}))
    settle(qtbot, lenient, runner)
    assert lenient.row(lenient.row_of(ids[0])).status is Status.QUEUED


def test_sort_text_and_status_filters_with_counts(qtbot, store, runner):
    seed(store, 40)
    model = make_model(store, runner, page_size=100)
    settle(qtbot, model, runner)
    with qtbot.waitSignal(model.page_loaded, timeout=WAIT):
        model.sort(column_index("asset"), Qt.SortOrder.DescendingOrder)
    settle(qtbot, model, runner)
    assert _assets(model)[:3] == ["sh039", "sh038", "sh037"]

    model.set_text_filter("SH01")
    settle(qtbot, model, runner)
    assert sorted(_assets(model)) == [f"sh{i:03d}" for i in range(10, 20)]
    assert model.total == 10 and model.unfiltered_total == 10 and model.counts_ready
    assert model.status_counts == {Status.FAILED: 1, Status.PAUSED: 1, Status.SYNCED: 2,
                                   Status.QUEUED: 6}

    model.set_status_filter({Status.FAILED, Status.PAUSED})
    settle(qtbot, model, runner)
    assert sorted(_assets(model)) == ["sh010", "sh011"]
    assert model.total == 2 and model.unfiltered_total == 10  # counts ignore the status filter

    model.set_text_filter("")
    settle(qtbot, model, runner)
    assert model.total == 8 and model.unfiltered_total == 40
    assert {model.row(i).status for i in range(model.rowCount())} == {Status.FAILED, Status.PAUSED}


def test_typing_fast_applies_only_the_last_filter(qtbot, store, runner):
    seed(store, 30)
    model = make_model(store, runner, page_size=100)
    for text in ("s", "sh", "sh0", "sh02", "sh021"):
        model.set_text_filter(text)
    settle(qtbot, model, runner)
    assert _assets(model) == ["sh021"]


def test_live_updates_change_rows_in_place_keeping_selection_and_scroll(qtbot, store, runner):
    ids = seed(store, 80)
    model = make_model(store, runner, page_size=100)
    view = QueueTable(model)
    qtbot.addWidget(view)
    view.resize(900, 300)
    view.show()
    settle(qtbot, model, runner)
    assert model.rowCount() == 80
    view.verticalScrollBar().setValue(30)
    top = view.top_repre_id()
    selection = view.selectionModel()
    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    for row in (31, 32, 40):
        selection.select(model.index(row, 0), flags)
    selected = {model.row(i.row()).repre_id for i in selection.selectedRows()}
    resets = []
    model.about_to_reset.connect(lambda: resets.append(1))

    # Two rows change in the store: a retry of a failed one, a new priority on another.
    store.reset_site("demo", ids[40], "gdrive")
    store.set_priority("demo", ids[31], "studio", 90)
    model.refresh_rows({ids[40], ids[31]})
    settle(qtbot, model, runner)
    assert model.row(40).status is Status.QUEUED
    assert model.row(31).priority == 90
    # A publish that sorts above the screen is inserted in place, the view stays put.
    store.insert_representation(make_repre(asset="sh000b", sites={"studio": {}, "gdrive": {}}))
    new = store.insert_representation(make_repre(asset="sh000a"))
    model.refresh_rows({new})
    settle(qtbot, model, runner)
    assert _assets(model)[:4] == ["sh000", "sh000a", "sh000b", "sh001"]
    assert model.total == 82 and model.rowCount() == 82

    assert resets == []
    assert {model.row(i.row()).repre_id for i in selection.selectedRows()} == selected
    assert view.top_repre_id() == top
    assert view.verticalScrollBar().value() == 32


def test_rows_leaving_the_filter_are_removed_and_counted(qtbot, store, runner):
    ids = seed(store, 30)
    model = make_model(store, runner, page_size=100)
    model.set_status_filter({Status.FAILED})
    settle(qtbot, model, runner)
    assert model.total == 3
    store.reset_site("demo", ids[10], "gdrive")  # no longer failed
    with qtbot.waitSignal(model.items.rowsRemoved, timeout=WAIT):
        model.refresh_rows({ids[10]})
    settle(qtbot, model, runner)
    assert {model.row(i).repre_id for i in range(model.rowCount())} == {ids[0], ids[20]}
    assert model.total == 2
    assert model.status_counts[Status.FAILED] == 2 and model.status_counts[Status.QUEUED] == 19


def test_unloaded_changes_only_refresh_counts_and_paging_stays_consistent(qtbot, store, runner):
    ids = seed(store, 60)
    model = make_model(store, runner, page_size=20)
    settle(qtbot, model, runner)
    store.reset_site("demo", ids[50], "gdrive")  # beyond the loaded window: failed -> queued
    model.refresh_rows({ids[50]})
    settle(qtbot, model, runner)
    assert model.rowCount() == 20
    assert model.status_counts[Status.FAILED] == 5
    model.fetchMore()
    settle(qtbot, model, runner)
    model.fetchMore()
    settle(qtbot, model, runner)
    assert _assets(model) == [f"sh{i:03d}" for i in range(60)]
    assert model.row(50).status is Status.QUEUED


def _progress(repre_id, file_id, done, size, target="gdrive", project="demo"):
    return FileProgress(datetime.now(UTC), project, repre_id, file_id, "p", "studio", target,
                        Direction.UPLOAD, bytes_done=done, size=size, bytes_per_s=1.0)


def test_live_progress_overlay_never_counts_a_file_twice(qtbot, store, runner):
    store.ensure_project("demo")
    repre = make_repre(files=4)
    store.insert_representation(repre)
    model = make_model(store, runner)
    view = QueueTable(model)
    qtbot.addWidget(view)
    view.show()
    settle(qtbot, model, runner)
    row = model.row(0)
    assert model.side_progress(row, "remote") == 0.0
    f0, f1 = repre.files[0], repre.files[1]
    with qtbot.waitSignal(model.items.dataChanged, timeout=WAIT):
        model.apply_progress({("demo", repre.id, f0.id, "gdrive"):
                              _progress(repre.id, f0.id, f0.size // 2, f0.size)})
    assert model.side_progress(row, "remote") == pytest.approx(0.5 / 4, abs=0.01)
    assert model.side_progress(row, "active") == 1.0
    # Other projects, other sites and unknown rows are ignored.
    model.apply_progress({
        ("x", repre.id, f1.id, "gdrive"): _progress(repre.id, f1.id, 5, 10, project="x"),
        ("demo", "nope", f1.id, "gdrive"): _progress("nope", f1.id, 5, 10),
        ("demo", repre.id, f1.id, "dropbox"): _progress(repre.id, f1.id, 5, 10, target="dropbox"),
    })
    assert model.side_progress(row, "remote") == pytest.approx(0.5 / 4, abs=0.01)

    # The file finishes: whole until the row is re-read, then the store's number, once.
    now = datetime.now(UTC)
    work = [w for w in store.find_work("demo", "studio", "gdrive", RETRY, now) if w.file_id == f0.id]
    claim = store.claim(work[0], "e1", now + timedelta(seconds=60), now)
    assert store.record_success(claim, "f0", None, now)
    model.file_finished("demo", repre.id, f0.id, "gdrive", synced=True)
    assert model.side_progress(row, "remote") == pytest.approx(0.25)
    model.apply_progress({("demo", repre.id, f1.id, "gdrive"): _progress(repre.id, f1.id, 1, 4)})
    model.refresh_rows({repre.id})
    settle(qtbot, model, runner)
    row = model.row(0)
    assert row.remote.progress == pytest.approx(0.25)
    assert model.side_progress(row, "remote") == pytest.approx(0.25)  # f1's 25% was rebased
    model.apply_progress({("demo", repre.id, f1.id, "gdrive"): _progress(repre.id, f1.id, 3, 4)})
    assert model.side_progress(row, "remote") == pytest.approx(0.25 + 0.5 / 4)
    model.file_finished("demo", repre.id, f1.id, "gdrive", synced=False)  # failed: back to store
    assert model.side_progress(row, "remote") == pytest.approx(0.25)


def test_a_store_error_is_reported_not_raised(qtbot, store, runner):
    seed(store, 3)
    model = make_model(store, runner)
    settle(qtbot, model, runner)
    store.close()
    with qtbot.waitSignal(model.failed, timeout=WAIT) as blocker:
        model.requery()
    assert blocker.args[0] and "internal error" not in blocker.args[0]
    assert model.rowCount() == 3  # the last good rows stay on screen
