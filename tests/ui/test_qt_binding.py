"""The Qt binding itself: a regression guard for a PySide6 bug that aborts the app."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    fired = Signal(object)


def test_signal_emit_keeps_the_reference_count_of_true(qtbot):
    """PySide6 6.12.0 drops a reference to ``True`` on every ``Signal.emit()`` from
    Python; a tray that emits a few thousand signals then dies with "bool_dealloc".
    pyproject excludes that version; this test fails if it comes back."""
    emitter = _Emitter()
    received: list[int] = []
    emitter.fired.connect(received.append)
    before = sys.getrefcount(True)
    for i in range(200):
        emitter.fired.emit(i)
    assert len(received) == 200
    assert sys.getrefcount(True) - before > -10
