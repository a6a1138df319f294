"""Paints a site cell: provider icon, progress bar, and the date or percentage.

OpenPype's ImageDelegate darkened the unfinished part of the cell; a plain bar along the
bottom reads better and leaves the text legible. Failed sides get a red tint, paused
ones an amber one, so problems stand out while scrolling.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QIcon, QPainter
from PySide6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from app.model import Status
from ui.queue.summary_model import SITE_ROLE, SiteCell

__all__ = ["SiteDelegate", "cell_text", "provider_icon"]

_ICON = 16
_BAR = 4
_TINTS = {Status.FAILED: QColor(220, 50, 50, 60), Status.PAUSED: QColor(220, 160, 0, 50)}
_BAR_COLOR = QColor(60, 140, 220)
_BAR_DONE = QColor(60, 170, 90)
_BAR_BACK = QColor(128, 128, 128, 60)


def provider_icon(provider: str) -> QIcon:
    """The provider's icon (a drive for local folders, a network drive otherwise)."""
    style = QApplication.style()
    if provider == "local_drive":
        return style.standardIcon(QStyle.StandardPixmap.SP_DriveHDIcon)
    return style.standardIcon(QStyle.StandardPixmap.SP_DriveNetIcon)


def cell_text(cell: SiteCell) -> str:
    """The date once there, the percentage while moving, else the status in words."""
    if cell.progress >= 1.0:
        return cell.date
    if cell.status is Status.FAILED:
        return f"Failed {cell.date}".strip()
    if cell.status is Status.IN_PROGRESS or cell.progress > 0:
        return f"{cell.progress:.0%}"
    return cell.status.label


class SiteDelegate(QStyledItemDelegate):
    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        cell = index.data(SITE_ROLE)
        if not isinstance(cell, SiteCell):
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        style = opt.widget.style() if opt.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)

        rect = option.rect
        painter.save()
        tint = _TINTS.get(cell.status)
        if tint is not None:
            painter.fillRect(rect, tint)
        icon_rect = QRect(rect.left() + 4, rect.top() + (rect.height() - _BAR - _ICON) // 2,
                          _ICON, _ICON)
        provider_icon(cell.provider).paint(painter, icon_rect)

        bar = QRect(rect.left() + 4, rect.bottom() - _BAR, rect.width() - 8, _BAR)
        painter.fillRect(bar, _BAR_BACK)
        if cell.progress > 0:
            done = QRect(bar.left(), bar.top(), max(1, int(bar.width() * cell.progress)), _BAR)
            painter.fillRect(done, _BAR_DONE if cell.progress >= 1.0 else _BAR_COLOR)

        text = cell_text(cell)
        text_rect = QRect(icon_rect.right() + 6, rect.top(), rect.right() - icon_rect.right() - 8,
                          rect.height() - _BAR)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        role = opt.palette.ColorRole.HighlightedText if selected else opt.palette.ColorRole.Text
        painter.setPen(opt.palette.color(role))
        painter.drawText(text_rect, int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft),
                         text)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem,
                 index: QModelIndex | QPersistentModelIndex) -> QSize:
        size = super().sizeHint(option, index)
        return QSize(max(size.width(), 150), max(size.height(), _ICON + _BAR + 6))
