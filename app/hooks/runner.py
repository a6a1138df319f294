"""HookRunner: runs the event hook plugins beside the engine, never in its way.

``HookRunner(store, settings).start()`` returns at once; everything happens on
background threads:

* a supervisor finds plugin files (``hooks.plugin_paths`` in order, then file name),
  loads new ones, reloads changed or fixed ones, notices positions moved by the CLI,
  writes the state snapshot and prunes old events;
* a watcher follows the store's change notifications and wakes the plugins when the
  newest event id moves;
* each plugin runs on its own thread (:mod:`app.hooks.consumer`).

The engine never waits for a plugin: plugins read the event log, which the store writes
together with each state change. Only one process per machine (per data folder) runs the
hooks, so a plugin never sees an event twice because two SiteSync processes ran it; the
others stand by and take over if it exits.
"""

from __future__ import annotations

import collections
import logging
import logging.handlers
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

from app.errors import ConfigError, StoreUnavailableError
from app.hooks.consumer import Consumer
from app.hooks.plugin import PluginFile, discover
from app.hooks.state import HookState
from app.hooks.status import HooksStatus
from app.settings import HooksSettings, Settings
from app.store.base import Store

__all__ = ["HookRunner"]

_log = logging.getLogger("sitesync.hooks")

PRUNE_INTERVAL_S = 3600.0
_GAP_NOTES = 10_000


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class HookRunner:
    """See the module docstring. ``state_dir`` defaults to ``<data dir>/hooks``;
    ``log_dir`` (optional) gets one rotating log file per plugin."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        state_dir: Path | None = None,
        log_dir: Path | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if state_dir is None:
            from app import paths

            state_dir = paths.data_dir() / "hooks"
        self.store = store
        self.settings: HooksSettings = settings.hooks
        self.local_id = settings.local_id
        self._settings_path = settings.path
        self._settings_mtime = _mtime(settings.path)
        self.state_dir = Path(state_dir)
        self.log_dir = log_dir
        self._clock = clock
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self.head = 0
        self.log_id = ""
        self.state: HookState = None  # type: ignore[assignment]  # set once locked
        self._consumers: list[Consumer] = []
        self._retired: list[Consumer] = []
        self._problems: tuple[str, ...] = ()
        self._state_name = "stopped"
        self._message = ""
        self._lock_file: IO[str] | None = None
        self._threads: list[threading.Thread] = []
        self._poke = threading.Event()
        self._gap_notes: collections.OrderedDict[tuple[int, str], None] = collections.OrderedDict()
        self._gap_lock = threading.Lock()
        self._loggers: set[str] = set()
        self._next_prune = 0.0
        self._options_seen: dict[str, dict[str, Any]] = {}
        self._passes = 0
        self._ready = threading.Event()
        self._handlers: list[tuple[logging.Logger, logging.Handler] | None] = []
        if log_dir is not None:
            # The runner's own lines (gaps waited for, arrived or lost; plugins loaded,
            # failed, retried) at INFO, so each gap leaves a line whichever way it ends.
            hooks_log = logging.getLogger("sitesync.hooks")
            if hooks_log.getEffectiveLevel() > logging.INFO:
                hooks_log.setLevel(logging.INFO)
            self._handlers.append(_add_file_handler(hooks_log, log_dir / "hooks" / "hooks.log"))

    # -- the API the tray and `sitesync serve` use ---------------------------------------------

    def start(self) -> None:
        """Start in the background; returns at once."""
        if self._threads:
            raise RuntimeError("hook runner already started")
        self._state_name, self._message = "starting", ""
        for target, name in ((self._supervise, "sitesync-hooks"),
                             (self._watch_head, "sitesync-hooks-watch")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def wait_ready(self, timeout_s: float = 10.0) -> bool:
        """Block until the first pass is done: plugins found and their positions taken
        (or the runner knows it is disabled or on standby). `sitesync serve` waits for
        this before starting the engine, so a new plugin's "newest event" is the one
        before this run's first transfer."""
        return self._ready.wait(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop every plugin thread after its current callback; save the state."""
        self.stopping.set()
        self._poke.set()
        with self.cond:
            self.cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        for consumer in [*self._consumers, *self._retired]:
            consumer.wake.set()
            consumer.join(max(0.1, deadline - time.monotonic()))
            if consumer.thread is not None and consumer.thread.is_alive():
                _log.warning("hooks: plugin %s is still inside a callback after %.0f s; "
                             "leaving it (its event is delivered again next start)",
                             consumer.name, timeout_s)
        if self.state is not None:
            try:
                self.state.close()
            except Exception:
                _log.exception("hooks: closing the state")
        self._release_lock()
        self._state_name, self._message = "stopped", ""
        for added in self._handlers:
            if added is not None:
                logger, handler = added
                logger.removeHandler(handler)
                handler.close()
        self._handlers.clear()

    def status(self) -> HooksStatus:
        """A snapshot for the UI/CLI: cheap, takes no lock the plugins hold for long."""
        head = self.head
        consumers = list(self._consumers)
        message = self._message
        return HooksStatus(
            state=self._state_name, message=message, head=head,
            plugins=tuple(c.status(head) for c in consumers),
            problems=self._problems,
        )

    def update_settings(self, settings: Settings) -> None:
        """Apply new settings: plugin folders, switches and options take effect at the
        supervisor's next pass (plugins whose options changed are reloaded)."""
        self.settings = settings.hooks
        self.local_id = settings.local_id
        self._settings_path = settings.path
        self._settings_mtime = _mtime(settings.path)
        self._poke.set()

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """True once the supervisor has looked at the plugin files and settings since this
        call, and every enabled plugin that is not stopped by an error is loaded, at the
        newest event and has an empty backlog (tests and `--once` style callers)."""
        deadline = time.monotonic() + timeout_s
        first_pass = self._passes + 2  # a pass that started after this call has ended
        self._poke.set()
        while time.monotonic() < deadline:
            try:
                last = self.store.event_log_info().last_id
            except StoreUnavailableError:
                last = -1
            consumers = [c for c in self._consumers if c.enabled
                         and c.phase not in ("failed", "load error")]
            if (self._state_name == "running" and last >= 0 and self._passes >= first_pass and
                    all(c.active and c.pos >= last and not c.backlog and c.phase == "idle"
                        and not c.pending_work for c in consumers)):
                return True
            time.sleep(0.05)
        return False

    # -- what consumers ask of the lane ------------------------------------------------------

    def consumers_before(self, consumer: Consumer) -> list[Consumer]:
        return [c for c in self._consumers if c.file.order < consumer.file.order]

    def plugin_log(self, name: str) -> logging.Logger:
        """The plugin's logger: its own file beside hooks.log (which gets its lines too)."""
        logger = logging.getLogger(f"sitesync.hooks.{name}")
        if self.log_dir is not None and name not in self._loggers:
            self._loggers.add(name)
            self._handlers.append(_add_file_handler(logger, self.log_dir / "hooks" / f"{name}.log"))
        return logger

    def plugin_dir(self, name: str) -> Path:
        folder = self.state_dir / "plugins" / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def note_gap(self, event_id: int, kind: str, message: str, level: int) -> None:
        """Log a gap message once per id and kind, however many plugins meet it."""
        with self._gap_lock:
            key = (event_id, kind)
            if key in self._gap_notes:
                return
            self._gap_notes[key] = None
            while len(self._gap_notes) > _GAP_NOTES:
                self._gap_notes.popitem(last=False)
        _log.log(level, "hooks: %s", message)

    def now(self) -> datetime:
        return self._clock()

    # -- supervisor ------------------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self.stopping.is_set():
            self._poke.clear()
            try:
                self._pass()
            except StoreUnavailableError as exc:
                self._state_name = "running" if self.state is not None else "starting"
                self._message = f"database unreachable ({exc}); retrying"
            except Exception as exc:
                _log.exception("hooks: supervisor error")
                self._message = f"internal error: {exc}"
            self._passes += 1
            self._ready.set()
            self._poke.wait(self.settings.reload_interval_s)

    def _pass(self) -> None:
        self._reload_settings_if_changed()
        settings = self.settings
        self._maybe_prune()
        if not settings.enabled:
            self._state_name, self._message = "disabled", "hooks.enabled is false in the settings"
            for consumer in self._consumers:
                consumer.set_enabled(False)
            return
        if self.state is None:
            if not self._take_lock():
                self._state_name = "standby"
                self._message = ("the hooks run in another SiteSync process on this machine; "
                                 "this one takes over if that one stops")
                return
            self._open_state()
        self._sync_plugins(settings)
        self._adopt_cli_changes()
        self.state.snapshot()
        self._state_name = "running"
        self._message = self.state.recovery_note

    def _reload_settings_if_changed(self) -> None:
        """Apply the settings file when another process saved it (the settings dialog,
        an editor): plugin folders, switches and options are live, in `serve` too. An
        invalid file keeps the running settings; the loader reports it."""
        mtime = _mtime(self._settings_path)
        if mtime is None or mtime == self._settings_mtime:
            return
        self._settings_mtime = mtime
        try:
            from app.settings import load_settings

            settings = load_settings(self._settings_path)
        except (ConfigError, OSError) as exc:
            _log.error("hooks: the settings file changed but cannot be used; keeping the "
                       "running hook settings: %s", exc)
            return
        self.settings, self.local_id = settings.hooks, settings.local_id

    def _open_state(self) -> None:
        state = HookState(self.state_dir)
        info = self.store.event_log_info()
        saved = state.log_id()
        if saved is None:
            state.set_log_id(info.log_id)
        elif saved != info.log_id:
            _log.warning("hooks: the event log is not the one the saved plugin positions "
                         "belong to (another database?); every plugin starts at its newest "
                         "event %d", info.last_id)
            state.reset_all(info.log_id)
        state.resolve_restored(info.last_id)
        with self.cond:
            self.log_id, self.head = info.log_id, info.last_id
        self.state = state

    def _sync_plugins(self, settings: HooksSettings) -> None:
        files, problems = discover(settings.plugin_paths)
        duplicates = [f for f in files if f.duplicate_of is not None]
        problems += [f"plugin {f.path} is not loaded: a plugin named {f.name!r} is already "
                     f"loaded from {f.duplicate_of}; rename one of them" for f in duplicates]
        self._problems = tuple(problems)
        by_name = {c.name: c for c in self._consumers}
        keep: list[Consumer] = []
        for file in (f for f in files if f.duplicate_of is None):
            enabled = settings.plugin_enabled(file.name)
            consumer = by_name.pop(file.name, None)
            if consumer is None:
                consumer = self._new_consumer(file, enabled)
            else:
                self._refresh(consumer, file, enabled, settings)
            keep.append(consumer)
        for gone in by_name.values():
            _log.info("hooks: plugin %s was removed from %s; its position is kept",
                      gone.name, gone.file.path.parent)
            gone.retire()
            self._retired.append(gone)
        with self.cond:
            self._consumers = sorted(keep, key=lambda c: c.file.order)
            self.cond.notify_all()
        for consumer in self._consumers:
            consumer.start()

    def _new_consumer(self, file: PluginFile, enabled: bool) -> Consumer:
        cursor = self.state.get(file.name)
        if cursor is None:
            cursor = self.state.create(file.name, self.head)
            _log.info("hooks: new plugin %s starts after the newest event (%d)", file.name,
                      cursor.last_id)
        self._options_seen[file.name] = dict(self.settings.plugin_options(file.name))
        return Consumer(self, file, cursor, enabled)

    def _refresh(self, consumer: Consumer, file: PluginFile, enabled: bool,
                 settings: HooksSettings) -> None:
        """Reload a plugin whose file, place or options changed; apply its switch."""
        if enabled != consumer.enabled:
            consumer.set_enabled(enabled)
        options = dict(settings.plugin_options(file.name))
        changed_options = options != self._options_seen.get(file.name)
        self._options_seen[file.name] = options
        if file.path != consumer.file.path or changed_options or \
                file.signature() != consumer.seen_signature:
            consumer.request_load(file)
        elif file.order != consumer.file.order:
            consumer.file = file

    def _adopt_cli_changes(self) -> None:
        versions = self.state.versions()
        for consumer in self._consumers:
            if versions.get(consumer.name, consumer.cursor.version) != consumer.cursor.version:
                consumer.request_state_reload()

    def _maybe_prune(self) -> None:
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_INTERVAL_S
        cutoff = self._clock() - timedelta(days=self.settings.retention_days)
        removed = self.store.prune_events(cutoff)
        if removed:
            _log.info("hooks: pruned %d event(s) older than %g day(s)", removed,
                      self.settings.retention_days)

    # -- the head watcher ---------------------------------------------------------------------------

    def _watch_head(self) -> None:
        """Wake the plugins when the newest event id moves (store change notifications,
        at most every 50 ms, and at least every poll interval)."""
        while not self.stopping.is_set():
            try:
                marker = self.store.change_marker()
                last = self.store.event_log_info().last_id
                if last != self.head:
                    with self.cond:
                        self.head = last
                        self.cond.notify_all()
                self.store.wait_for_change(marker, self.settings.poll_interval_s)
                self.stopping.wait(0.05)
            except StoreUnavailableError:
                self.stopping.wait(2.0)
            except Exception:
                if self.stopping.is_set():
                    return
                _log.exception("hooks: event watcher error")
                self.stopping.wait(5.0)

    # -- one runner per machine ----------------------------------------------------------------------

    def _take_lock(self) -> bool:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.state_dir / "runner.lock", "a+", encoding="utf-8")  # noqa: SIM115
        try:
            if os.name == "nt":
                import msvcrt

                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_file = handle
        return True

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases flock / msvcrt locks
            self._lock_file = None


def _add_file_handler(logger: logging.Logger,
                      path: Path) -> tuple[logging.Logger, logging.Handler] | None:
    """A rotating file handler for ``path`` on ``logger`` (once); returned for removal."""
    target = os.path.abspath(path)
    if any(getattr(h, "baseFilename", None) == target for h in logger.handlers):
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=1_000_000, backupCount=3,
                                                       encoding="utf-8")
    except OSError as exc:
        _log.warning("hooks: cannot write the log file %s (%s)", path, exc)
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    return logger, handler


def _mtime(path: Path | None) -> int | None:
    try:
        return os.stat(path).st_mtime_ns if path is not None else None
    except (OSError, TypeError, ValueError):
        return None
