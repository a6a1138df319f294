"""Icons stay crisp on a HiDPI screen (device pixel ratio 2).

Qt fixes the device pixel ratio when the QApplication starts, so the check runs in a
child process started with ``QT_SCALE_FACTOR=2`` (the offscreen platform honours it like a
real 2x display). It opens the real Sync Queue table on a real store and compares what
the table would paint with the SVG rendered at the physical size: an image drawn at 16
pixels and blown up would differ from it visibly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CHILD = textwrap.dedent("""
    import json, sys, time
    from PySide6.QtCore import QSize, Qt
    from PySide6.QtGui import QImage
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    from app.store.sqlite import SqliteStore
    from tests.ui.queue.helpers import CTX, make_model, seed
    from ui.icons import ICON_DIR, provider_icon, state_icon, STATE_NAMES
    from ui.queue.cells import ACTIVE
    from ui.queue.table import QueueTable
    from ui.queue.worker import TaskRunner

    def diff(a: QImage, b: QImage) -> int:
        a = a.convertToFormat(QImage.Format.Format_ARGB32)
        b = b.convertToFormat(QImage.Format.Format_ARGB32)
        assert a.size() == b.size(), (a.size(), b.size())
        worst = 0
        for y in range(a.height()):
            for x in range(a.width()):
                p, q = a.pixel(x, y), b.pixel(x, y)
                worst = max(worst, *(abs(((p >> s) & 255) - ((q >> s) & 255)) for s in (0, 8, 16, 24)))
        return worst

    def sharp(icon) -> QImage:
        return icon.pixmap(QSize(16, 16), 2.0).toImage()

    def blown_up(icon) -> QImage:
        return icon.pixmap(QSize(16, 16), 1.0).toImage().scaled(32, 32)

    store = SqliteStore(sys.argv[1])
    seed(store, 3)
    runner = TaskRunner()
    model = make_model(store, runner)
    table = QueueTable(model)
    table.resize(1200, 300)
    table.show()
    deadline = time.monotonic() + 30
    while not (model.idle and runner.pending == 0 and model.rowCount() == 3):
        assert time.monotonic() < deadline, "the table did not load"
        app.processEvents()
        time.sleep(0.01)
    cell = model.index(0, ACTIVE).data(Qt.ItemDataRole.DecorationRole)
    icon = provider_icon(CTX.active_provider, CTX.active_site)
    painted = cell.toImage().copy(0, 0, 32, 32)
    grab = table.grab()
    states = {name: state_icon(name).pixmap(QSize(22, 22)) for name in STATE_NAMES}
    print(json.dumps({
        "app_dpr": app.devicePixelRatio(),
        "cell_dpr": cell.devicePixelRatio(),
        "cell_size": [cell.width(), cell.height()],
        "cell_vs_sharp": diff(painted, sharp(icon)),
        "cell_vs_blown_up": diff(painted, blown_up(icon)),
        "grab_dpr": grab.devicePixelRatio(),
        "grab_size": [grab.width(), grab.height()],
        "table_size": [table.width(), table.height()],
        "states": {n: [p.width(), p.height(), p.devicePixelRatio()] for n, p in states.items()},
        "icon_files": sorted(p.suffix for p in ICON_DIR.iterdir()),
    }))
    runner.shutdown()
    store.close()
""")


def test_icons_and_site_cells_are_rendered_at_the_screens_pixel_density(tmp_path, qapp):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_SCALE_FACTOR": "2",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "db.sqlite")], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["app_dpr"] == 2.0
    # The site cell's provider icon + progress bar: drawn for 2x, pixel for pixel the SVG
    # at 32 physical pixels, not a 16-pixel image scaled up.
    assert result["cell_dpr"] == 2.0 and result["cell_size"] == [108, 32]
    assert result["cell_vs_sharp"] <= 8
    assert result["cell_vs_blown_up"] > 40  # the comparison can tell the two apart
    assert result["grab_dpr"] == 2.0
    assert result["grab_size"] == [2 * v for v in result["table_size"]]
    # Tray states come from SVG at any density: 22 logical pixels are 44 physical ones.
    assert set(result["states"]) == {"idle", "syncing", "paused", "error", "offline"}
    assert all(v == [44, 44, 2.0] for v in result["states"].values()), result["states"]
    assert set(result["icon_files"]) == {".svg"}
