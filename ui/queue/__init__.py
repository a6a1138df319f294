"""The Sync Queue window (OpenPype's tray "Sync Queue", rebuilt to never block).

Layers, one job each: :mod:`.worker` runs store calls off the GUI thread,
:mod:`.summary_model` pages and live-updates the representation rows, :mod:`.operations`
holds what the actions do, :mod:`.window` puts it together with :mod:`.project_list`,
:mod:`.table`, :mod:`.site_delegate` and :mod:`.detail`.
"""

from ui.queue.window import SyncQueueWindow

__all__ = ["SyncQueueWindow"]
