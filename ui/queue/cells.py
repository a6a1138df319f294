"""How a summary row looks in the table: the text, icons and colours of each cell.

The table's model is a plain C++ QStandardItemModel filled through these values, and the
site columns are an ordinary icon + text, not a Python delegate. That is deliberate: while
the engine's threads run Python, every call from Qt into Python (a model's ``data()``, a
delegate's ``paint()``) has to win the GIL first, and one repaint of a Python-backed table
makes about two thousand such calls; measured under load that turned a 12 ms repaint into
0.2 to 0.9 s. With the cells in C++ the GUI thread paints without touching Python.

A site cell shows the provider's icon with a small progress bar drawn into the same
pixmap (cached per provider, state and 5 % step), and as text the date the files arrived,
the percentage while they move, or the status in words.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPainter, QPixmap

from app.model import Status, SummaryRow
from ui.icons import provider_icon
from ui.queue.columns import COLUMNS, column_index, pretty_size, pretty_version

__all__ = [
    "ICON_SIZE",
    "SITE_ROLE",
    "SiteCell",
    "cell_roles",
    "cell_text",
    "device_pixel_ratio",
    "site_pixmap",
]

#: The SiteCell of a site column (for tests and tools; painting never reads it).
SITE_ROLE = int(Qt.ItemDataRole.UserRole) + 1

ACTIVE = column_index("active")
REMOTE = column_index("remote")
STATUS = column_index("status")
_RIGHT = {column_index(k) for k in ("version", "files", "size", "priority")}
_ALIGN_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

_ICON = 16
_BAR_WIDTH = 34
#: Icon + gap + bar; the table's iconSize is set to this so nothing is scaled.
ICON_SIZE = QSize(_ICON + 4 + _BAR_WIDTH, _ICON)
_STEPS = 20  # progress bar resolution: 5 %

_STATUS_COLORS = {
    Status.FAILED: QColor(200, 40, 40),
    Status.PAUSED: QColor(150, 110, 0),
    Status.IN_PROGRESS: QColor(30, 100, 200),
    Status.SYNCED: QColor(40, 140, 60),
}
_TINTS = {Status.FAILED: QColor(220, 50, 50, 45), Status.PAUSED: QColor(220, 160, 0, 40)}
_BAR_MOVING = QColor(60, 140, 220)
_BAR_DONE = QColor(60, 170, 90)
_BAR_FAILED = QColor(210, 60, 60)
_BAR_BACK = QColor(128, 128, 128, 90)


class SiteCell(NamedTuple):
    """One side of a row as the table shows it."""

    site: str
    provider: str
    progress: float
    status: Status
    date: str
    tries: int
    error: str | None


_pixmaps: dict[tuple[str, bool, int, bool, float], QPixmap] = {}


def device_pixel_ratio() -> float:
    """The highest device pixel ratio of the screens (2.0 on a typical HiDPI display): a
    pixmap drawn at it is sharp there and scaled down cleanly on a lower-density screen
    the window may be moved to."""
    app = QGuiApplication.instance()
    return float(app.devicePixelRatio()) if isinstance(app, QGuiApplication) else 1.0


def site_pixmap(provider: str, site: str, progress: float, failed: bool,
                dpr: float | None = None) -> QPixmap:
    """Provider icon (the studio site has its own) plus a progress bar, cached: a few
    dozen distinct images in all. Drawn at the screen's device pixel ratio (``dpr``,
    default :func:`device_pixel_ratio`), so the SVG icon is rendered at the physical
    size, not a 16-pixel image blown up on a HiDPI screen."""
    step = round(max(0.0, min(1.0, progress)) * _STEPS)
    ratio = dpr or device_pixel_ratio()
    key = (provider, site == "studio", step, failed, ratio)
    pixmap = _pixmaps.get(key)
    if pixmap is None:
        pixmap = QPixmap(ICON_SIZE * ratio)
        pixmap.setDevicePixelRatio(ratio)
        pixmap.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pixmap)
        provider_icon(provider, site).paint(painter, QRect(0, 0, _ICON, _ICON))
        bar = QRect(_ICON + 4, (_ICON - 6) // 2, _BAR_WIDTH, 6)
        painter.fillRect(bar, _BAR_BACK)
        if step:
            color = _BAR_FAILED if failed else _BAR_DONE if step == _STEPS else _BAR_MOVING
            painter.fillRect(QRect(bar.left(), bar.top(), bar.width() * step // _STEPS, 6), color)
        painter.end()
        _pixmaps[key] = pixmap
    return pixmap


def cell_text(cell: SiteCell) -> str:
    """The date once there, the percentage while moving, else the status in words."""
    if cell.progress >= 1.0:
        return cell.date
    if cell.status is Status.FAILED:
        return "Failed"  # when, how often and why: in the tooltip and the detail view
    if cell.status is Status.IN_PROGRESS or cell.progress > 0:
        return f"{cell.progress:.0%}"
    return cell.status.label


def _site_tooltip(cell: SiteCell) -> str:
    lines = [f"{cell.site} ({cell.provider or 'unknown provider'}): {cell.status.label}, "
             f"{cell.progress:.0%}" + (f", {cell.date}" if cell.date else "")]
    if cell.tries:
        lines.append(f"failed tries: {cell.tries}")
    if cell.error:
        lines.append(f"last error: {cell.error}")
    return "\n".join(lines)


def site_roles(cell: SiteCell) -> dict[int, Any]:
    """Every role of a site cell (QStandardItemModel.setItemData replaces them all)."""
    roles: dict[int, Any] = {
        int(Qt.ItemDataRole.DisplayRole): cell_text(cell),
        int(Qt.ItemDataRole.DecorationRole): site_pixmap(cell.provider, cell.site, cell.progress,
                                                         cell.status is Status.FAILED),
        int(Qt.ItemDataRole.ToolTipRole): _site_tooltip(cell),
        SITE_ROLE: cell,
    }
    tint = _TINTS.get(cell.status)
    if tint is not None:
        roles[int(Qt.ItemDataRole.BackgroundRole)] = tint
    return roles


def cell_roles(row: SummaryRow, column: int, active: SiteCell, remote: SiteCell) -> dict[int, Any]:
    """Every role of one cell of ``row``."""
    if column == ACTIVE:
        return site_roles(active)
    if column == REMOTE:
        return site_roles(remote)
    key = COLUMNS[column].key
    display: Any = {
        "asset": row.asset,
        "subset": row.subset,
        "version": pretty_version(row.version),
        "representation": row.representation,
        "files": row.files_count,
        "size": pretty_size(row.size),
        "priority": row.priority,
        "status": row.status.label,
    }[key]
    roles: dict[int, Any] = {int(Qt.ItemDataRole.DisplayRole): display}
    if column in _RIGHT:
        roles[int(Qt.ItemDataRole.TextAlignmentRole)] = _ALIGN_RIGHT
    if column == STATUS:
        color = _STATUS_COLORS.get(row.status)
        if color is not None:
            roles[int(Qt.ItemDataRole.ForegroundRole)] = color
        errors = [f"{side}: {s.error}" for side, s in (("active", row.active), ("remote", row.remote))
                  if s.error]
        roles[int(Qt.ItemDataRole.ToolTipRole)] = "\n".join([row.status.label, *errors])
    return roles
