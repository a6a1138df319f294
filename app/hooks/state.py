"""Each plugin's place in the event log, kept so that a crash never loses or repeats work.

Per plugin: ``last_id`` (every id up to it is processed, waiting in the backlog, or
declared lost), the backlog (missing ids and when to stop waiting for them),
``inflight_id`` (the event being handled: after a crash it is delivered again, marked
as a redelivery), ``redeliver_until`` (ids up to it may have been seen: set by a replay
or a restore from the snapshot), the plugin's durable ``state`` dict, and its last error.

Why not a pickled file like the ShotGrid daemon: that file is rewritten in place after
every event, so a crash or a full disk leaves it empty or half-written and the daemon
will not start. Here:

* the state lives in a small SQLite database (WAL, ``synchronous=FULL``): every update
  is one transaction, atomic and durable, so a SIGKILL at any instant leaves the state
  as it was before or after the update;
* a JSON snapshot with a sha256 is written beside it (temp file, fsync, rename, the
  previous one kept as ``.bak``) every few seconds and on stop;
* on start a database that cannot be read (truncated, overwritten, not SQLite) is moved
  aside, never deleted, and the state is rebuilt from the newest valid snapshot; events
  after the snapshot's positions are delivered again, marked as redeliveries. With no
  valid snapshot either, plugins start at the newest event and the log says so. Start-up
  never fails because of this file.
* every row carries a ``version``; the CLI (`sitesync hooks replay/skip`) bumps it and a
  running SiteSync notices, so neither overwrites the other's change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["Cursor", "HookState", "StateConflict"]

_log = logging.getLogger("sitesync.hooks")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """
    CREATE TABLE IF NOT EXISTS cursors (
        plugin TEXT PRIMARY KEY,
        last_id INTEGER NOT NULL,
        inflight_id INTEGER,
        redeliver_until INTEGER NOT NULL DEFAULT 0,
        state_json TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        error_event INTEGER,
        version INTEGER NOT NULL DEFAULT 1,
        updated_at REAL NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS backlog (
        plugin TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (plugin, event_id)
    )
    """,
)
_SCHEMA_VERSION = "1"
SNAPSHOT_INTERVAL_S = 2.0


class StateConflict(Exception):
    """The plugin's row changed under us (the CLI replayed or skipped): reload it."""


@dataclass(frozen=True)
class Cursor:
    """One plugin's saved place in the log (see the module docstring)."""

    plugin: str
    last_id: int
    inflight_id: int | None = None
    redeliver_until: int = 0
    state: Mapping[str, Any] = field(default_factory=dict)
    backlog: Mapping[int, float] = field(default_factory=dict)
    error: str | None = None
    error_event: int | None = None
    version: int = 1
    updated_at: float = 0.0


class HookState:
    """The state file of one machine's hook runner (thread-safe)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "state.db"
        self.snapshot_path = folder / "state.json"
        self._lock = threading.RLock()
        self._dirty = False
        self._last_snapshot = 0.0
        #: What happened at open, for the runner's status line ("" when nothing odd).
        self.recovery_note = ""
        folder.mkdir(parents=True, exist_ok=True)
        self._conn = self._open()

    # -- opening and recovery ----------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            self._check(conn)
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            self._quarantine(f"unreadable ({exc})")
            self._conn = conn = self._connect()
            self._check(conn)
            self._restore("the state database was unreadable")
            return conn
        self._conn = conn
        if conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() is None:
            self._initialise(conn)
            if self._load_snapshot() is not None:
                # An empty database beside a snapshot: the file was lost or truncated.
                self._restore("the state database was empty")
        return conn

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA busy_timeout = 10000")
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    @staticmethod
    def _check(conn: sqlite3.Connection) -> None:
        """Raise DatabaseError unless the file is a sound SQLite database."""
        result = conn.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise sqlite3.DatabaseError(f"integrity check: {result}")
        for statement in _SCHEMA:
            conn.execute(statement)

    @staticmethod
    def _initialise(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                     (_SCHEMA_VERSION,))

    def _quarantine(self, why: str) -> None:
        """Move the unreadable database (and its WAL) aside; never delete evidence."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                with contextlib.suppress(OSError):
                    os.replace(source, Path(f"{self.path}.corrupt-{stamp}{suffix}"))
        _log.error("hooks state %s is %s; moved it to %s.corrupt-%s", self.path, why,
                   self.path, stamp)

    def _restore(self, why: str) -> None:
        self._initialise(self._conn)
        snapshot = self._load_snapshot()
        if snapshot is None:
            self.recovery_note = (f"{why} and no valid snapshot exists: every plugin "
                                  "starts at the newest event")
            _log.error("hooks: %s", self.recovery_note)
            return
        written, cursors = snapshot
        with self._transaction() as tx:
            for cursor in cursors:
                self._write_cursor(tx, cursor)
                # Anything after the snapshot may have been delivered already.
                tx.execute("UPDATE cursors SET redeliver_until = -1 WHERE plugin = ?",
                           (cursor.plugin,))
        self.recovery_note = (f"{why}; plugin positions restored from the snapshot of "
                              f"{datetime.fromtimestamp(written, UTC):%Y-%m-%d %H:%M:%S} UTC. "
                              "Events after those positions are delivered again, marked "
                              "as redeliveries")
        _log.warning("hooks: %s", self.recovery_note)

    # -- reading --------------------------------------------------------------------------------

    def log_id(self) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'log_id'").fetchone()
        return None if row is None else str(row[0])

    def set_log_id(self, log_id: str) -> None:
        """Bind the state to one event log; positions in another log mean nothing."""
        with self._transaction() as tx:
            tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('log_id', ?)",
                       (log_id,))

    def reset_all(self, log_id: str) -> None:
        """Forget every position (the event log is a new one)."""
        with self._transaction() as tx:
            tx.execute("DELETE FROM cursors")
            tx.execute("DELETE FROM backlog")
            tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('log_id', ?)",
                       (log_id,))

    def resolve_restored(self, head: int) -> None:
        """After a restore from the snapshot: events up to ``head`` (the newest when the
        restore happened) may have been delivered already, so mark them as redeliveries."""
        with self._transaction() as tx:
            tx.execute("UPDATE cursors SET redeliver_until = ?, version = version + 1 "
                       "WHERE redeliver_until < 0", (int(head),))

    def get(self, plugin: str) -> Cursor | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM cursors WHERE plugin = ?",
                                     (plugin,)).fetchone()
            if row is None:
                return None
            backlog = {int(r["event_id"]): float(r["expires_at"]) for r in self._conn.execute(
                "SELECT event_id, expires_at FROM backlog WHERE plugin = ?", (plugin,))}
        return _cursor(row, backlog)

    def all(self) -> list[Cursor]:
        with self._lock:
            names = [r[0] for r in self._conn.execute("SELECT plugin FROM cursors ORDER BY plugin")]
        return [c for c in (self.get(n) for n in names) if c is not None]

    def versions(self) -> dict[str, int]:
        with self._lock:
            return {r[0]: int(r[1]) for r in self._conn.execute(
                "SELECT plugin, version FROM cursors")}

    # -- writing --------------------------------------------------------------------------------

    def create(self, plugin: str, last_id: int) -> Cursor:
        """A new plugin's row at ``last_id`` (kept if another process made one first)."""
        with self._transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO cursors (plugin, last_id, updated_at) "
                       "VALUES (?, ?, ?)", (plugin, int(last_id), time.time()))
        cursor = self.get(plugin)
        assert cursor is not None
        return cursor

    def save(self, cursor: Cursor) -> Cursor:
        """Write the plugin's whole row and backlog if nobody changed it since it was
        read (same version); returns it with the new version. Raises StateConflict."""
        with self._transaction() as tx:
            updated = tx.execute(
                """
                UPDATE cursors SET last_id = ?, inflight_id = ?, redeliver_until = ?,
                       state_json = ?, error = ?, error_event = ?, version = version + 1,
                       updated_at = ?
                WHERE plugin = ? AND version = ?
                """,
                (cursor.last_id, cursor.inflight_id, cursor.redeliver_until,
                 _dump_state(cursor.state), cursor.error, cursor.error_event, time.time(),
                 cursor.plugin, cursor.version),
            ).rowcount
            if updated != 1:
                raise StateConflict(cursor.plugin)
            tx.execute("DELETE FROM backlog WHERE plugin = ?", (cursor.plugin,))
            tx.executemany(
                "INSERT INTO backlog (plugin, event_id, expires_at) VALUES (?, ?, ?)",
                [(cursor.plugin, event_id, expires) for event_id, expires in
                 sorted(cursor.backlog.items())])
        return replace(cursor, version=cursor.version + 1)

    def rewind(self, plugin: str, last_id: int, *, clear_error: bool = True) -> Cursor:
        """Move a plugin's position (CLI replay/skip): events after ``last_id`` come next.
        Events it already saw that come again are marked as redeliveries."""
        with self._transaction() as tx:
            row = tx.execute("SELECT last_id, redeliver_until FROM cursors WHERE plugin = ?",
                             (plugin,)).fetchone()
            if row is None:
                raise KeyError(plugin)
            redeliver = max(int(row["redeliver_until"]), int(row["last_id"]))
            tx.execute(
                f"""
                UPDATE cursors SET last_id = ?, inflight_id = NULL, redeliver_until = ?,
                       {"error = NULL, error_event = NULL," if clear_error else ""}
                       version = version + 1, updated_at = ?
                WHERE plugin = ?
                """,
                (int(last_id), redeliver, time.time(), plugin),
            )
            tx.execute("DELETE FROM backlog WHERE plugin = ? AND event_id <= ?",
                       (plugin, int(last_id)))
        cursor = self.get(plugin)
        assert cursor is not None
        return cursor

    def drop_from_backlog(self, plugin: str, event_id: int) -> Cursor:
        """Skip a late event the plugin failed on: forget it and clear the error."""
        with self._transaction() as tx:
            if tx.execute("DELETE FROM backlog WHERE plugin = ? AND event_id = ?",
                          (plugin, int(event_id))).rowcount != 1:
                raise KeyError(event_id)
            tx.execute("UPDATE cursors SET error = NULL, error_event = NULL, inflight_id = NULL, "
                       "version = version + 1, updated_at = ? WHERE plugin = ?",
                       (time.time(), plugin))
        cursor = self.get(plugin)
        assert cursor is not None
        return cursor

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._dirty = True

    @staticmethod
    def _write_cursor(tx: sqlite3.Connection, cursor: Cursor) -> None:
        tx.execute(
            """
            INSERT OR REPLACE INTO cursors (plugin, last_id, inflight_id, redeliver_until,
                state_json, error, error_event, version, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            (cursor.plugin, cursor.last_id, cursor.inflight_id, cursor.redeliver_until,
             _dump_state(cursor.state), cursor.error, cursor.error_event, cursor.version,
             cursor.updated_at or time.time()),
        )
        tx.execute("DELETE FROM backlog WHERE plugin = ?", (cursor.plugin,))
        tx.executemany("INSERT INTO backlog (plugin, event_id, expires_at) VALUES (?, ?, ?)",
                       [(cursor.plugin, i, e) for i, e in cursor.backlog.items()])

    # -- the snapshot -----------------------------------------------------------------------------

    def snapshot(self, force: bool = False) -> bool:
        """Write the snapshot if anything changed since the last one (and at most every
        SNAPSHOT_INTERVAL_S unless ``force``). Returns True if written."""
        with self._lock:
            if not self._dirty or (not force and
                                   time.monotonic() - self._last_snapshot < SNAPSHOT_INTERVAL_S):
                return False
            self._dirty = False
            self._last_snapshot = time.monotonic()
            body = {"version": 1, "written_at": time.time(), "log_id": self.log_id(),
                    "cursors": [_cursor_json(c) for c in self.all()]}
        text = json.dumps(body, sort_keys=True)
        document = {"sha256": hashlib.sha256(text.encode()).hexdigest(), "body": body}
        tmp = self.snapshot_path.with_name(f"{self.snapshot_path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "w", encoding="utf-8") as stream:
                json.dump(document, stream, sort_keys=True)
                stream.flush()
                os.fsync(stream.fileno())
            if self.snapshot_path.exists():
                os.replace(self.snapshot_path, self.snapshot_path.with_name(
                    self.snapshot_path.name + ".bak"))
            os.replace(tmp, self.snapshot_path)
            _fsync_dir(self.folder)
        except OSError as exc:
            with self._lock:
                self._dirty = True
            _log.warning("hooks: cannot write the state snapshot %s (%s); the state database "
                         "is unaffected", self.snapshot_path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
        return True

    def _load_snapshot(self) -> tuple[float, list[Cursor]] | None:
        """The newest snapshot whose checksum is right: state.json, else state.json.bak."""
        for path in (self.snapshot_path, self.snapshot_path.with_name(
                self.snapshot_path.name + ".bak")):
            try:
                document = json.loads(path.read_text(encoding="utf-8"))
                body = document["body"]
                text = json.dumps(body, sort_keys=True)
                if hashlib.sha256(text.encode()).hexdigest() != document["sha256"]:
                    raise ValueError("checksum mismatch")
                cursors = [_cursor_from_json(c) for c in body["cursors"]]
                return float(body["written_at"]), cursors
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError) as exc:
                _log.warning("hooks: snapshot %s is unusable (%s)", path, exc)
        return None

    def close(self) -> None:
        with self._lock:
            self.snapshot(force=True)
            self._conn.close()


# -- helpers ---------------------------------------------------------------------------------


def _dump_state(state: Mapping[str, Any]) -> str:
    return json.dumps(state, sort_keys=True)


def _cursor(row: sqlite3.Row, backlog: dict[int, float]) -> Cursor:
    try:
        state = json.loads(row["state_json"])
    except ValueError:
        state = {}
    return Cursor(
        plugin=row["plugin"], last_id=int(row["last_id"]), inflight_id=row["inflight_id"],
        redeliver_until=int(row["redeliver_until"]),
        state=state if isinstance(state, dict) else {}, backlog=backlog,
        error=row["error"], error_event=row["error_event"], version=int(row["version"]),
        updated_at=float(row["updated_at"]),
    )


def _cursor_json(cursor: Cursor) -> dict[str, Any]:
    return {"plugin": cursor.plugin, "last_id": cursor.last_id,
            "inflight_id": cursor.inflight_id, "redeliver_until": cursor.redeliver_until,
            "state": dict(cursor.state), "backlog": {str(k): v for k, v in cursor.backlog.items()},
            "error": cursor.error, "error_event": cursor.error_event}


def _cursor_from_json(raw: Mapping[str, Any]) -> Cursor:
    return Cursor(
        plugin=str(raw["plugin"]), last_id=int(raw["last_id"]),
        inflight_id=None if raw.get("inflight_id") is None else int(raw["inflight_id"]),
        redeliver_until=int(raw.get("redeliver_until") or 0),
        state=dict(raw.get("state") or {}),
        backlog={int(k): float(v) for k, v in (raw.get("backlog") or {}).items()},
        error=raw.get("error"), error_event=raw.get("error_event"),
    )


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); Windows has no directory fsync."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
