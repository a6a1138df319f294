"""The app's SVG icons as QIcons, crisp at any size and device pixel ratio.

The files live in the top-level ``resources/icons`` folder. It is found relative to this
module, which works from a source checkout, from an installed wheel (``resources`` is a
package beside ``ui``) and from a PyInstaller bundle (``build.spec`` copies
``resources`` next to the ``ui`` package inside the bundle).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtGui import QColor, QIcon

__all__ = [
    "ICON_DIR",
    "STATE_COLOURS",
    "STATE_NAMES",
    "app_icon",
    "icon",
    "icon_path",
    "provider_icon",
    "state_icon",
]

ICON_DIR = Path(__file__).resolve().parent.parent / "resources" / "icons"

#: Tray states and the fill colour of their icon (tests check screenshots against them).
STATE_COLOURS: dict[str, str] = {
    "idle": "#2E9D5B",
    "syncing": "#2F80ED",
    "paused": "#8A8F98",
    "error": "#D64545",
    "offline": "#E08A1E",
}
STATE_NAMES = tuple(STATE_COLOURS)

#: Providers with their own icon; other providers get the generic drive.
_PROVIDER_ICONS = ("local_drive", "gdrive", "sftp", "studio")


def icon_path(name: str) -> Path:
    """The SVG file called ``name`` (without extension); FileNotFoundError names the
    folder, which points straight at a packaging mistake."""
    path = ICON_DIR / f"{name}.svg"
    if not path.is_file():
        raise FileNotFoundError(f"icon {name!r} not found in {ICON_DIR} (resources/icons "
                                "must be packaged with the ui package)")
    return path


@cache
def icon(name: str) -> QIcon:
    """A QIcon rendered from the SVG on demand at each requested size (needs a
    QGuiApplication)."""
    result = QIcon(str(icon_path(name)))
    if result.isNull():
        raise RuntimeError(f"Qt could not load {icon_path(name)} (is the Qt SVG icon plugin "
                           "available?)")
    return result


def app_icon() -> QIcon:
    return icon("app")


def state_icon(state: str) -> QIcon:
    """Icon for a tray state, one of :data:`STATE_NAMES`, or "starting" (the app icon:
    nothing is known yet, so no state colour is shown)."""
    if state == "starting":
        return app_icon()
    if state not in STATE_COLOURS:
        raise ValueError(f"unknown tray state {state!r}; expected one of {', '.join(STATE_NAMES)}")
    return icon(f"state-{state}")


def state_colour(state: str) -> QColor:
    return QColor(STATE_COLOURS[state])


def provider_icon(provider: str, site: str = "") -> QIcon:
    """Icon for a site: the studio site has its own, others their provider's."""
    if site == "studio":
        return icon("provider-studio")
    return icon(f"provider-{provider if provider in _PROVIDER_ICONS else 'local_drive'}")
