"""Helpers for the Sync Queue tests: seeded projects on real stores, waiting for the model."""

from __future__ import annotations

from app.model import Status
from app.store.base import Store
from tests.helpers.seed import T0, later, make_repre
from ui.queue.summary_model import QueueContext, SummaryModel
from ui.queue.worker import TaskRunner

RETRY = 3
CTX = QueueContext("demo", "studio", "gdrive", RETRY, "local_drive", "local_drive")


def seed_status(i: int) -> Status:
    """The status representation ``i`` of :func:`seed` gets."""
    return {0: Status.FAILED, 1: Status.PAUSED, 2: Status.SYNCED, 3: Status.SYNCED}.get(
        i % 10, Status.QUEUED)


def seed(store: Store, count: int, project: str = "demo", files: int = 2) -> list[str]:
    """``count`` representations sh000, sh001, …: every 10th failed on gdrive, the next
    paused, two synced, the rest queued (published on studio)."""
    store.ensure_project(project)
    kinds = {
        Status.FAILED: {"studio": {"created_dt": T0}, "gdrive": {"tries": RETRY, "error": "quota exceeded"}},
        Status.PAUSED: {"studio": {"created_dt": T0}, "gdrive": {"paused": True}},
        Status.SYNCED: {"studio": {"created_dt": T0}, "gdrive": {"created_dt": later(5)}},
        Status.QUEUED: {"studio": {"created_dt": T0}, "gdrive": {}},
    }
    return [
        store.insert_representation(make_repre(project=project, asset=f"sh{i:03d}", files=files,
                                               sites=kinds[seed_status(i)]))
        for i in range(count)
    ]


def make_model(store: Store, runner: TaskRunner, page_size: int = 25,
               ctx: QueueContext = CTX) -> SummaryModel:
    model = SummaryModel(store, runner, page_size=page_size, min_merge_interval_s=0.05)
    model.set_context(ctx)
    return model


def settle(qtbot, model: SummaryModel, runner: TaskRunner, timeout: int = 15_000) -> None:
    """Wait until every query, page and update the model started has been applied."""
    qtbot.waitUntil(lambda: model.idle and runner.pending == 0, timeout=timeout)
