"""Qt tests run on the offscreen platform unless a display was chosen on purpose."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest


@pytest.fixture(autouse=True)
def _always_qapp(qapp):
    """Every UI test gets the QApplication first: touching Qt before it exists crashes."""
    yield
