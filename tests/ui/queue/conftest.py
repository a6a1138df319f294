"""Fixtures for the Sync Queue tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ui.queue.worker import TaskRunner


@pytest.fixture
def runner(qapp) -> Iterator[TaskRunner]:
    task_runner = TaskRunner()
    yield task_runner
    task_runner.shutdown()
