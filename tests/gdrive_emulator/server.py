"""A Google Drive v3 emulator: a threaded HTTP server on 127.0.0.1 for tests and benchmarks.

It speaks the wire protocol the real googleapiclient and google-auth send
(providers-on-loopback.md §1.2-1.5), so provider code runs unchanged against it:

* ``POST /token``: the service-account JWT grant, signature checked with the account's
  public key; every other call needs a Bearer token it issued (401 otherwise);
* ``/drive/v3/files``: list (``q``, ``fields``, ``orderBy``, paging, ``corpora``/``driveId``/
  ``includeItemsFromAllDrives``), get (``fields``; ``alt=media`` with ``Range``), create
  (folders and empty files), update (name, trashed, ``addParents``/``removeParents``),
  delete (recursive);
* ``/upload/drive/v3/files``: multipart, media, and resumable uploads (initiate -> 200 +
  ``Location``; chunk PUTs -> 308 + ``Range`` or the file; ``bytes */N`` status queries);
  ``PATCH /upload/drive/v3/files/{id}`` replaces content;
* ``/drive/v3/drives``: shared drives the account is a member of;
* errors in Google's JSON shape (``error.errors[0].reason``).

Behaviour copied from Drive because it catches real bugs: duplicate names are allowed,
listings include trashed items unless ``q`` excludes them, ``size`` is a string, a
default ``fields`` selection that omits ``size``/``md5Checksum``, shared-drive items are
invisible without ``supportsAllDrives``, non-final chunks commit only whole 256 KiB units.

Faults are injected with :meth:`FakeDrive.inject` (status codes with Google reasons and
``Retry-After``, dropped connections mid-body, partial commits, delays, downloads cut
mid-response), :attr:`FakeDrive.silent_close_every` (stale keep-alive connections),
:meth:`FakeDrive.expire_sessions`, :meth:`FakeDrive.revoke_tokens` and a daily upload cap
(:attr:`FakeDrive.upload_cap_bytes`). :attr:`FakeDrive.log` records every request, and
:attr:`FakeDrive.upload_bytes` counts every upload body byte received, re-sends included.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.gdrive_emulator.auth import JwtError, ServiceAccountKey, verify_assertion
from tests.gdrive_emulator.query import (
    QueryError,
    order_key,
    parse_fields,
    parse_order,
    parse_q,
    select_fields,
)

__all__ = ["FOLDER", "UNIT", "FakeDrive", "Fault", "LogEntry"]

FOLDER = "application/vnd.google-apps.folder"
UNIT = 256 * 1024
#: Test-side name of another user's My Drive (``find``/``mkdir`` paths start with it).
USER_DRIVE = "Artist Drive"
_DEFAULT_FILE_FIELDS = "kind,id,name,mimeType"
_DEFAULT_LIST_FIELDS = "kind,nextPageToken,incompleteSearch,files(kind,id,name,mimeType)"


class _HttpError(Exception):
    def __init__(self, status: int, reason: str, message: str, *, location: str = "",
                 domain: str = "global", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.location = location
        self.domain = domain
        self.headers = headers or {}

    def body(self) -> dict:
        err: dict[str, Any] = {"domain": self.domain, "reason": self.reason, "message": self.message}
        if self.location:
            err["location"] = self.location
            err["locationType"] = "parameter"
        return {"error": {"code": self.status, "message": self.message, "errors": [err]}}


class _Dropped(Exception):
    """The connection was cut on purpose (fault injection)."""


@dataclass
class Item:
    id: str
    name: str
    mime_type: str
    parents: list[str]
    drive_id: str | None
    created: str
    modified: str
    content: bytes | None = None
    trashed: bool = False
    readonly: bool = False
    #: Accounts (or "*") this item is shared with directly ("Shared with me" for them).
    shared_with: set[str] = field(default_factory=set)
    _sums: tuple[int, str, str] | None = field(default=None, repr=False)

    @property
    def is_folder(self) -> bool:
        return self.mime_type == FOLDER

    def checksums(self) -> tuple[str, str]:
        """(md5, sha256) of the content, computed once per content."""
        content = self.content or b""
        if self._sums is None or self._sums[0] != id(content):
            self._sums = (id(content), hashlib.md5(content).hexdigest(), hashlib.sha256(content).hexdigest())
        return self._sums[1], self._sums[2]

    def query_view(self, root_id: str, account: str | None) -> dict[str, Any]:
        """Just what ``q`` can test, cheap to build for every item."""
        parents = set(self.parents) | ({"root"} if root_id in self.parents else set())
        shared = bool(self.shared_with & {"*", account}) if account else bool(self.shared_with)
        return {"name": self.name, "mimeType": self.mime_type, "trashed": self.trashed,
                "createdTime": self.created, "modifiedTime": self.modified, "sharedWithMe": shared,
                "parents_for_query": parents}

    def resource(self, report_sha256: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "drive#file", "id": self.id, "name": self.name, "mimeType": self.mime_type,
            "parents": list(self.parents), "trashed": self.trashed, "createdTime": self.created,
            "modifiedTime": self.modified,
            "capabilities": {"canAddChildren": self.is_folder and not self.readonly,
                             "canEdit": not self.readonly, "canDelete": not self.readonly},
        }
        if self.drive_id:
            out["driveId"] = self.drive_id
        if not self.is_folder and self.content is not None:
            out["size"] = str(len(self.content))
            out["md5Checksum"], sha256 = self.checksums()
            if report_sha256:  # Drive fills it only "if available"
                out["sha256Checksum"] = sha256
        return out


@dataclass
class Drive:
    id: str
    name: str
    members: set[str]


@dataclass
class Session:
    id: str
    meta: dict[str, Any]
    fields: str | None
    total: int | None
    all_drives: bool
    update_id: str | None = None
    data: bytearray = field(default_factory=bytearray)
    done_id: str | None = None


@dataclass
class Fault:
    """One injected misbehaviour, consumed by the next ``times`` matching requests.

    ``path`` is a regex searched in the request path with its query string.
    ``status``: answer with this HTTP status and a Google error (``reason``, ``message``,
    ``Retry-After`` when ``retry_after`` is set). ``drop``: read ``drop_after`` bytes of
    the body (half by default), commit ``commit_bytes`` of them if this is a chunk PUT,
    then cut the connection. ``commit_bytes`` alone: a chunk PUT commits only that many
    new bytes and answers 308. ``delay``: wait first, then answer normally.
    ``drop_response``: do the request, then cut the connection instead of answering
    (the client cannot know whether it happened). ``truncate``: on a download, send the
    headers announcing the whole range but only this many body bytes, then cut the
    connection (a connection lost in the middle of a response).
    """

    method: str | None = None
    path: str | None = None
    status: int | None = None
    reason: str = ""
    message: str = ""
    retry_after: float | None = None
    times: int = 1
    drop: bool = False
    drop_after: int | None = None
    commit_bytes: int | None = None
    delay: float = 0.0
    drop_response: bool = False
    truncate: int | None = None
    domain: str = "usageLimits"
    hits: int = 0


@dataclass(frozen=True)
class LogEntry:
    method: str
    kind: str
    path: str
    status: int
    bytes_in: int
    #: time.monotonic() when the request was logged (before its answer went out).
    at: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeDrive/1"
    timeout = 30  # idle keep-alive connections are closed, as Google's front ends do

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm
        # holds the body for the client's delayed ACK (40 ms per request on loopback).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self) -> None:
        super().handle_one_request()
        drive: FakeDrive = self.server.drive  # type: ignore[attr-defined]
        self.served = getattr(self, "served", 0) + 1
        if drive.silent_close_every and self.served % drive.silent_close_every == 0:
            # Close the keep-alive connection without a "Connection: close" header, as
            # load balancers do: the client finds out only when it next sends on it.
            self.close_connection = True
            with drive.lock:
                drive.silent_closes += 1

    def _dispatch(self) -> None:
        drive: FakeDrive = self.server.drive  # type: ignore[attr-defined]
        try:
            drive.handle(self)
        except _Dropped:
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


class FakeDrive:
    """The emulator; use as a context manager or call :meth:`start`/:meth:`stop`."""

    def __init__(self, *, require_auth: bool = True, chunk_mode: str = "round",
                 body_timeout_s: float = 5.0, host: str = "127.0.0.1", port: int = 0,
                 silent_close_every: int = 0) -> None:
        self.require_auth = require_auth
        #: Close each keep-alive connection silently after this many requests (0: never).
        self.silent_close_every = silent_close_every
        self.silent_closes = 0
        self.chunk_mode = chunk_mode
        self.body_timeout_s = body_timeout_s
        self.lock = threading.RLock()
        self.items: dict[str, Item] = {}
        self.drives: dict[str, Drive] = {}
        self.sessions: dict[str, Session] = {}
        self.expired_sessions: dict[str, int] = {}
        self.tokens: dict[str, tuple[str, str | None]] = {}
        self.accounts: dict[str, str] = {}
        self.faults: list[Fault] = []
        self.log: list[LogEntry] = []
        self.upload_bytes = 0
        self.download_bytes = 0
        self.short_bodies = 0
        self.token_grants = 0
        #: Daily upload cap in bytes (None = unlimited); above it uploads get Drive's 403.
        self.upload_cap_bytes: int | None = None
        self.uploaded_today = 0
        #: Sleep before answering each chunk PUT (to land a restart mid-upload).
        self.chunk_delay_s = 0.0
        #: Whether file resources carry sha256Checksum (Drive: "if available").
        self.report_sha256 = True
        #: Flip one byte in each of the next N media answers (corruption in transit).
        self.corrupt_media = 0
        self._last_time = 0.0
        self.root_id = self._new_id("0AMy")
        now = self._now()
        self.items[self.root_id] = Item(self.root_id, "My Drive", FOLDER, [], None, now, now)
        # Another user's My Drive: invisible to the service account except what is shared.
        self.user_root_id = self._new_id("0AUser")
        self.items[self.user_root_id] = Item(self.user_root_id, USER_DRIVE, FOLDER, [], None, now, now)
        self._server = _Server((host, port), _Handler)
        self._server.drive = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The API root (``rootUrl`` of the discovery document)."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def token_uri(self) -> str:
        """Unique per emulator (the query is ignored): a later emulator on a reused port
        is then another account to the provider's process-wide caches, as it should be."""
        return f"{self.url}token?emulator={id(self):x}"

    def start(self) -> FakeDrive:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-drive",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeDrive:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test-side helpers -------------------------------------------------------------------

    def add_account(self, key: ServiceAccountKey) -> None:
        with self.lock:
            self.accounts[key.client_email] = key.public_pem

    def add_shared_drive(self, name: str, member: str | None = "*") -> str:
        """A shared drive; ``member`` is an account e-mail, ``"*"`` every account, None nobody."""
        with self.lock:
            drive_id = self._new_id("0ATeam")
            members = set() if member is None else {member}
            self.drives[drive_id] = Drive(drive_id, name, members)
            now = self._now()
            # Like Drive: the shared drive's root folder has the drive's id.
            self.items[drive_id] = Item(drive_id, name, FOLDER, [], drive_id, now, now)
            return drive_id

    def share(self, path: str, account: str = "*", *, readonly: bool = False) -> str:
        """Share the folder at ``path`` (e.g. ``/Artist Drive/show``, made if missing) with
        ``account``, as a user shares a folder of their My Drive; ``readonly`` = Viewer."""
        with self.lock:
            folder = self.items[self.mkdir(path, readonly=readonly)]
            folder.shared_with.add(account)
            return folder.id

    def mkdir(self, path: str, *, readonly: bool = False) -> str:
        """Create every folder of ``/My Drive/a/b`` or ``/<shared drive>/a/b``; its id."""
        with self.lock:
            parent = self._top(path)
            for name in _parts(path)[1:]:
                found = [i for i in self._children(parent.id) if i.name == name and i.is_folder]
                parent = found[0] if found else self._create(name, FOLDER, parent, None)
            parent.readonly = readonly
            return parent.id

    def put_file(self, path: str, data: bytes) -> str:
        with self.lock:
            folder = self.items[self.mkdir(path.rsplit("/", 1)[0])]
            return self._create(path.rsplit("/", 1)[1], "application/octet-stream", folder, data).id

    def find(self, path: str, *, trashed: bool = False) -> list[Item]:
        """Items at ``path`` (duplicates allowed), oldest first."""
        with self.lock:
            try:
                node = self._top(path)
            except KeyError:
                return []
            found = [node]
            for name in _parts(path)[1:]:
                found = [c for f in found for c in self._children(f.id)
                         if c.name == name and (trashed or not c.trashed)]
            return sorted(found, key=lambda i: i.created)

    def read(self, path: str) -> bytes:
        files = [i for i in self.find(path) if not i.is_folder]
        if len(files) != 1:
            raise AssertionError(f"{path}: {len(files)} files")
        return files[0].content or b""

    def names(self, folder_path: str, *, trashed: bool = False) -> list[str]:
        """Names in a folder (sorted, duplicates kept)."""
        with self.lock:
            folders = self.find(folder_path)
            return sorted(c.name for f in folders for c in self._children(f.id)
                          if trashed or not c.trashed)

    def inject(self, **kwargs: Any) -> Fault:
        fault = Fault(**kwargs)
        with self.lock:
            self.faults.append(fault)
        return fault

    def expire_sessions(self, status: int = 404) -> None:
        with self.lock:
            for sid in self.sessions:
                self.expired_sessions[sid] = status
            self.sessions.clear()

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def count(self, kind: str | None = None) -> int:
        with self.lock:
            return sum(1 for e in self.log if kind is None or e.kind == kind)

    def reset_log(self) -> None:
        with self.lock:
            self.log.clear()
            self.upload_bytes = self.download_bytes = 0

    # -- model -------------------------------------------------------------------------------

    def _new_id(self, prefix: str = "1") -> str:
        return prefix + secrets.token_urlsafe(24).replace("-", "x")[: 33 - len(prefix)]

    def _now(self) -> str:
        with self.lock:
            t = max(time.time(), self._last_time + 0.001)
            self._last_time = t
        whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
        return f"{whole}.{int(t * 1000) % 1000:03d}Z"

    def _top(self, path: str) -> Item:
        parts = _parts(path)
        if not parts:
            raise KeyError(path)
        if parts[0] == "My Drive":
            return self.items[self.root_id]
        if parts[0] == USER_DRIVE:
            return self.items[self.user_root_id]
        for drive in self.drives.values():
            if drive.name == parts[0]:
                return self.items[drive.id]
        raise KeyError(path)

    def _children(self, folder_id: str) -> list[Item]:
        return [i for i in self.items.values() if folder_id in i.parents]

    def _create(self, name: str, mime: str, parent: Item, content: bytes | None) -> Item:
        now = self._now()
        item = Item(self._new_id(), name, mime, [parent.id], parent.drive_id, now, now,
                    content=None if mime == FOLDER else (content or b""))
        self.items[item.id] = item
        return item

    def _visible(self, item: Item, account: str | None, all_drives: bool) -> bool:
        if item.drive_id is None:
            # In the account's own My Drive, or under something shared with it.
            node: Item | None = item
            while node is not None:
                if node.id == self.root_id or (account is None or node.shared_with & {"*", account}):
                    return True
                node = self.items.get(node.parents[0]) if node.parents else None
            return False
        drive = self.drives.get(item.drive_id)
        if drive is None or not all_drives:
            return False
        return account is None or "*" in drive.members or account in drive.members

    def _get_item(self, file_id: str, account: str | None, all_drives: bool) -> Item:
        if file_id == "root":
            file_id = self.root_id
        item = self.items.get(file_id)
        if item is None or not self._visible(item, account, all_drives):
            raise _HttpError(404, "notFound", f"File not found: {file_id}.", location="fileId")
        return item

    def _parent_for_create(self, meta: dict, account: str | None, all_drives: bool) -> Item:
        parents = meta.get("parents") or ["root"]
        if not isinstance(parents, list) or len(parents) != 1:
            raise _HttpError(403, "cannotAddParent", "A shared drive item must have exactly one parent.")
        try:
            parent = self._get_item(parents[0], account, all_drives)
        except _HttpError:
            raise _HttpError(404, "notFound", f"File not found: {parents[0]}.", location="parents") from None
        if not parent.is_folder:
            raise _HttpError(400, "invalid", "The specified parent is not a folder.", location="parents")
        if parent.readonly:
            raise _HttpError(403, "insufficientFilePermissions",
                             "The user does not have sufficient permissions for this file.")
        return parent

    # -- HTTP plumbing -----------------------------------------------------------------------

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        method = h.command
        parsed = urllib.parse.urlsplit(h.path)
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items()}
        kind = _kind(method, parsed.path, params, h.headers)
        state: dict[str, Any] = {"bytes_in": 0, "status": 0, "logged": False}
        h.log_entry = (method, kind, h.path, state)  # type: ignore[attr-defined]
        if parsed.path.startswith("/_emulator/"):
            self._control(h, parsed.path[len("/_emulator/"):], params)
            return
        try:
            fault = self._take_fault(method, h.path)
            if fault is not None and fault.delay:
                time.sleep(fault.delay)
            if fault is not None and fault.status:
                state["bytes_in"] = len(self._body(h))
                self._count_upload(kind, state["bytes_in"])
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(int(fault.retry_after) if fault.retry_after >= 1
                                                 else fault.retry_after)
                reason = fault.reason or ("backendError" if fault.status >= 500 else "rateLimitExceeded")
                message = fault.message or {"backendError": "Backend Error",
                                            "rateLimitExceeded": "Rate Limit Exceeded"}.get(reason, reason)
                raise _HttpError(fault.status, reason, message, domain=fault.domain, headers=headers)
            if fault is not None and fault.drop and kind != "upload-chunk":
                length = int(h.headers.get("Content-Length") or 0)
                part = self._read_exact(h, fault.drop_after if fault.drop_after is not None else length // 2)
                state["bytes_in"] = len(part)
                raise _Dropped()
            h.drop_response = fault is not None and fault.drop_response  # type: ignore[attr-defined]
            if parsed.path == "/token" and method == "POST":
                self._token(h, state)
                return
            account = self._auth(h)
            self._route(h, method, parsed.path, params, account, state, fault)
        except _HttpError as err:
            state["status"] = err.status
            self._send_json(h, err.status, err.body(), err.headers)
        except _Dropped:
            state["status"] = -1
            raise
        finally:
            self._record(h, state["status"])

    def _record(self, h: BaseHTTPRequestHandler, status: int) -> None:
        """Log the request once, before its answer goes out (a client that has the answer
        then always finds the request in the log)."""
        method, kind, path, state = h.log_entry  # type: ignore[attr-defined]
        with self.lock:
            if not state["logged"]:
                state["logged"] = True
                self.log.append(LogEntry(method, kind, path, status, state["bytes_in"], time.monotonic()))

    def _control(self, h: BaseHTTPRequestHandler, action: str, params: dict[str, str]) -> None:
        """Test-side control over HTTP when the emulator runs in another process
        (``python -m tests.gdrive_emulator``); not part of Drive's API, never logged."""
        h.log_entry = ("", "control", "", {"logged": True, "bytes_in": 0})  # type: ignore[attr-defined]
        body = self._body(h)
        result: Any = {}
        if action == "stats":
            with self.lock:
                kinds: dict[str, int] = {}
                for entry in self.log:
                    kinds[entry.kind] = kinds.get(entry.kind, 0) + 1
                result = {"requests": kinds, "upload_bytes": self.upload_bytes,
                          "download_bytes": self.download_bytes, "token_grants": self.token_grants,
                          "short_bodies": self.short_bodies}
        elif action == "reset":
            self.reset_log()
            with self.lock:
                self.token_grants = 0
        elif action == "account":
            info = json.loads(body)
            with self.lock:
                self.accounts[info["client_email"]] = info["public_pem"]
        elif action == "mkdir":
            result = {"id": self.mkdir(params["path"])}
        elif action == "shared-drive":
            result = {"id": self.add_shared_drive(params["name"])}
        elif action == "set":
            for key, value in json.loads(body).items():
                if key not in ("chunk_delay_s", "upload_cap_bytes", "report_sha256"):
                    raise ValueError(key)
                setattr(self, key, value)
        else:
            self._send_json(h, 404, {"error": f"unknown control {action!r}"})
            return
        self._send_json(h, 200, result)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times <= 0:
                    continue
                if fault.method and fault.method != method:
                    continue
                if fault.path and not re.search(fault.path, path):
                    continue
                fault.times -= 1
                fault.hits += 1
                return fault
        return None

    def _read_exact(self, h: BaseHTTPRequestHandler, n: int) -> bytes:
        chunks = []
        remaining = n
        h.connection.settimeout(self.body_timeout_s)
        try:
            while remaining > 0:
                block = h.rfile.read(min(remaining, 1 << 20))
                if not block:
                    break
                chunks.append(block)
                remaining -= len(block)
        except TimeoutError:
            pass
        finally:
            h.connection.settimeout(_Handler.timeout)
        return b"".join(chunks)

    def _body(self, h: BaseHTTPRequestHandler) -> bytes:
        length = int(h.headers.get("Content-Length") or 0)
        data = self._read_exact(h, length)
        if len(data) < length:
            with self.lock:
                self.short_bodies += 1
            raise _Dropped()
        return data

    def _count_upload(self, kind: str, n: int) -> None:
        if kind.startswith("upload") or kind == "multipart":
            with self.lock:
                self.upload_bytes += n

    def _send_json(self, h: BaseHTTPRequestHandler, status: int, body: Any,
                   headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self._send(h, status, data, {"Content-Type": "application/json; charset=UTF-8", **(headers or {})})

    def _send(self, h: BaseHTTPRequestHandler, status: int, data: bytes,
              headers: dict[str, str] | None = None) -> None:
        if getattr(h, "drop_response", False):
            raise _Dropped()
        self._record(h, status)
        h.send_response(status)
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if data and h.command != "HEAD":
            h.wfile.write(data)

    def _token(self, h: BaseHTTPRequestHandler, state: dict) -> None:
        body = self._body(h)
        state["bytes_in"] = len(body)
        form = dict(urllib.parse.parse_qsl(body.decode()))
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            state["status"] = 400
            self._send_json(h, 400, {"error": "unsupported_grant_type"})
            return
        try:
            with self.lock:
                keys = dict(self.accounts)
            claims = verify_assertion(form.get("assertion", ""), keys)
        except JwtError as exc:
            state["status"] = 400
            self._send_json(h, 400, {"error": "invalid_grant", "error_description": str(exc)})
            return
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = (claims["iss"], claims.get("sub"))
            self.token_grants += 1
        state["status"] = 200
        self._send_json(h, 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    def _auth(self, h: BaseHTTPRequestHandler) -> str | None:
        header = h.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        with self.lock:
            entry = self.tokens.get(token)
        if entry is not None:
            return entry[0]
        if not self.require_auth:
            return None
        self._body(h)
        err = _HttpError(401, "authError", "Invalid Credentials", location="Authorization")
        raise err

    # -- routes ------------------------------------------------------------------------------

    def _route(self, h: BaseHTTPRequestHandler, method: str, path: str, params: dict[str, str],
               account: str | None, state: dict, fault: Fault | None) -> None:
        all_drives = params.get("supportsAllDrives") == "true"
        files = re.fullmatch(r"/drive/v3/files(?:/([^/]+))?", path)
        uploads = re.fullmatch(r"/upload/drive/v3/files(?:/([^/]+))?", path)
        if files:
            file_id = files.group(1)
            if file_id is None and method == "GET":
                body = self._list(params, account)
            elif file_id is None and method == "POST":
                meta = self._json_body(h, state)
                with self.lock:
                    parent = self._parent_for_create(meta, account, all_drives)
                    item = self._create(str(meta.get("name", "Untitled")),
                                        meta.get("mimeType") or "application/octet-stream", parent, b"")
                body = self._file_json(item, params.get("fields"))
            elif file_id is not None and method == "GET":
                with self.lock:
                    item = self._get_item(file_id, account, all_drives)
                if params.get("alt") == "media":
                    self._download(h, item, state, fault)
                    return
                body = self._file_json(item, params.get("fields"))
            elif file_id is not None and method == "PATCH":
                meta = self._json_body(h, state)
                body = self._update(file_id, meta, params, account, all_drives)
            elif file_id is not None and method == "DELETE":
                self._body(h)
                with self.lock:
                    item = self._get_item(file_id, account, all_drives)
                    self._delete(item)
                state["status"] = 204
                self._send(h, 204, b"")
                return
            else:
                raise _HttpError(405, "methodNotAllowed", f"{method} not allowed here")
        elif uploads:
            self._upload(h, method, uploads.group(1), params, account, all_drives, state, fault)
            return
        elif path == "/drive/v3/drives" and method == "GET":
            body = self._drives(params, account)
        elif path == "/drive/v3/about" and method == "GET":
            body = select_fields({"kind": "drive#about", "user": {"kind": "drive#user",
                                  "emailAddress": account or "anonymous"}},
                                 parse_fields(params.get("fields", "user")))
        else:
            raise _HttpError(404, "notFound", f"Not Found: {method} {path}")
        state["status"] = 200
        self._send_json(h, 200, body)

    def _json_body(self, h: BaseHTTPRequestHandler, state: dict) -> dict:
        raw = self._body(h)
        state["bytes_in"] = len(raw)
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            raise _HttpError(400, "parseError", "Parse Error") from None
        if not isinstance(value, dict):
            raise _HttpError(400, "parseError", "Parse Error")
        return value

    def _file_json(self, item: Item, fields: str | None) -> dict:
        try:
            selection = parse_fields(fields if fields is not None else _DEFAULT_FILE_FIELDS)
        except QueryError as exc:
            raise _HttpError(400, "invalidParameter", str(exc), location="fields") from None
        return select_fields(item.resource(self.report_sha256), selection)

    def _list(self, params: dict[str, str], account: str | None) -> dict:
        try:
            predicate = parse_q(params.get("q", ""))
            order = parse_order(params.get("orderBy", ""))
            selection = parse_fields(params.get("fields", _DEFAULT_LIST_FIELDS))
        except QueryError as exc:
            raise _HttpError(400, "invalid", str(exc), location=exc.location) from None
        corpora = params.get("corpora", "user")
        all_items = params.get("includeItemsFromAllDrives") == "true"
        all_drives = params.get("supportsAllDrives") == "true"
        drive_id = params.get("driveId")
        if corpora == "drive":
            if not drive_id or not all_items or not all_drives:
                raise _HttpError(400, "invalid", "corpora=drive needs driveId, includeItemsFromAllDrives "
                                 "and supportsAllDrives", location="corpora")
            if drive_id not in self.drives or not self._visible(self.items[drive_id], account, True):
                raise _HttpError(404, "notFound", f"Shared drive not found: {drive_id}", location="driveId")
        elif corpora not in ("user", "allDrives"):
            raise _HttpError(400, "invalid", f"Invalid Value: corpora={corpora}", location="corpora")
        try:
            page_size = int(params.get("pageSize", "100"))
            start = int(params.get("pageToken") or "0")
        except ValueError:
            raise _HttpError(400, "invalid", "Invalid Value", location="pageSize") from None
        page_size = max(1, min(page_size, 1000))
        with self.lock:
            candidates = []
            for item in self.items.values():
                if not item.parents:
                    continue  # drive roots are not listed
                if item.drive_id is None:
                    if corpora == "drive" or not self._visible(item, account, all_drives):
                        continue
                elif (corpora == "user" or not all_items or not self._visible(item, account, all_drives)
                      or (corpora == "drive" and item.drive_id != drive_id)):
                    continue
                if predicate(item.query_view(self.root_id, account)):
                    candidates.append(item.resource(self.report_sha256))
        for key, desc in reversed(order):
            candidates.sort(key=lambda r, k=key: order_key(r, k), reverse=desc)
        page = candidates[start:start + page_size]
        body: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False, "files": page}
        if start + page_size < len(candidates):
            body["nextPageToken"] = str(start + page_size)
        return select_fields(body, selection)

    def _drives(self, params: dict[str, str], account: str | None) -> dict:
        try:
            predicate = parse_q(params.get("q", ""))
            selection = parse_fields(params.get("fields", "kind,nextPageToken,drives(kind,id,name)"))
        except QueryError as exc:
            raise _HttpError(400, "invalid", str(exc), location=exc.location) from None
        page_size = max(1, min(int(params.get("pageSize", "10")), 100))
        start = int(params.get("pageToken") or "0")
        with self.lock:
            visible = [{"kind": "drive#drive", "id": d.id, "name": d.name}
                       for d in self.drives.values()
                       if account is None or "*" in d.members or account in d.members]
        visible = [d for d in visible if predicate(d)]
        body: dict[str, Any] = {"kind": "drive#driveList", "drives": visible[start:start + page_size]}
        if start + page_size < len(visible):
            body["nextPageToken"] = str(start + page_size)
        return select_fields(body, selection)

    def _update(self, file_id: str, meta: dict, params: dict[str, str], account: str | None,
                all_drives: bool) -> dict:
        if "parents" in meta:
            raise _HttpError(403, "fieldNotWritable",
                             "The resource body includes fields which are not directly writable.")
        with self.lock:
            item = self._get_item(file_id, account, all_drives)
            for pid in filter(None, params.get("addParents", "").split(",")):
                parent = self._get_item(pid, account, all_drives)
                if not parent.is_folder:
                    raise _HttpError(400, "invalid", "The specified parent is not a folder.")
                item.parents.append(parent.id)
            for pid in filter(None, params.get("removeParents", "").split(",")):
                if pid in item.parents:
                    item.parents.remove(pid)
            if "name" in meta:
                item.name = str(meta["name"])
            if "trashed" in meta:
                item.trashed = bool(meta["trashed"])
            item.modified = self._now()
            return self._file_json(item, params.get("fields"))

    def _delete(self, item: Item) -> None:
        for child in self._children(item.id):
            self._delete(child)
        self.items.pop(item.id, None)

    def _download(self, h: BaseHTTPRequestHandler, item: Item, state: dict, fault: Fault | None) -> None:
        if item.is_folder or item.content is None:
            raise _HttpError(403, "fileNotDownloadable",
                             "Only files with binary content can be downloaded.")
        data = item.content
        total = len(data)
        spec = h.headers.get("Range")
        if spec is None:
            state["status"] = 200
            with self.lock:  # counted before the answer: a client that has it sees the count
                self.download_bytes += total
            self._send(h, 200, data, {"Content-Type": "application/octet-stream"})
            return
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", spec.strip())
        if match is None:
            raise _HttpError(400, "badRequest", f"bad Range {spec!r}")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else total - 1
        if first >= total:
            state["status"] = 416
            self._send(h, 416, b"", {"Content-Range": f"bytes */{total}"})
            return
        last = min(last, total - 1)
        body = data[first:last + 1]
        with self.lock:
            corrupt = self.corrupt_media > 0 and bool(body)
            self.corrupt_media -= corrupt
        if corrupt:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        state["status"] = 206
        if fault is not None and fault.truncate is not None:
            with self.lock:
                self.download_bytes += min(len(body), fault.truncate)
            self._record(h, 206)
            h.send_response(206)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Range", f"bytes {first}-{last}/{total}")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: fault.truncate])
            h.wfile.flush()
            raise _Dropped()
        with self.lock:
            self.download_bytes += len(body)
        self._send(h, 206, body, {"Content-Type": "application/octet-stream",
                                  "Content-Range": f"bytes {first}-{last}/{total}"})

    # -- uploads -----------------------------------------------------------------------------

    def _check_cap(self) -> None:
        with self.lock:
            capped = self.upload_cap_bytes is not None and self.uploaded_today >= self.upload_cap_bytes
        if capped:
            # What Drive answers once the 750 GB/day upload cap is reached (rclone matches
            # this exact message for --drive-stop-on-upload-limit).
            raise _HttpError(403, "userRateLimitExceeded", "User rate limit exceeded.", domain="usageLimits")

    def _upload(self, h: BaseHTTPRequestHandler, method: str, file_id: str | None,
                params: dict[str, str], account: str | None, all_drives: bool, state: dict,
                fault: Fault | None) -> None:
        upload_type = params.get("uploadType")
        if method == "PUT" and "upload_id" in params:
            self._chunk(h, params["upload_id"], state, fault)
            return
        if method not in ("POST", "PATCH") or (method == "PATCH") != (file_id is not None):
            raise _HttpError(405, "methodNotAllowed", f"{method} not allowed here")
        if upload_type == "resumable":
            meta = self._json_body(h, state)
            self._check_cap()
            with self.lock:
                target = self._get_item(file_id, account, all_drives) if file_id else None
                if target is None:
                    self._parent_for_create(meta, account, all_drives)
                total = h.headers.get("X-Upload-Content-Length")
                session = Session(self._new_id("up"), meta, params.get("fields"),
                                  int(total) if total else None, all_drives,
                                  update_id=target.id if target else None)
                self.sessions[session.id] = session
            query = urllib.parse.urlencode({"uploadType": "resumable", "upload_id": session.id})
            state["status"] = 200
            self._send(h, 200, b"", {"Location": f"{self.url}upload/drive/v3/files?{query}"})
            return
        body = self._body(h)
        state["bytes_in"] = len(body)
        self._count_upload("multipart", len(body))
        self._check_cap()
        if upload_type == "multipart":
            meta, content, media_type = _parse_multipart(h.headers.get("Content-Type", ""), body)
            if "mimeType" not in meta and media_type:
                meta["mimeType"] = media_type
        elif upload_type == "media":
            meta, content = {}, body
            meta["mimeType"] = h.headers.get("Content-Type") or "application/octet-stream"
        else:
            raise _HttpError(400, "badRequest", f"Invalid uploadType {upload_type!r}", location="uploadType")
        with self.lock:
            self.uploaded_today += len(content)
            if file_id:
                item = self._get_item(file_id, account, all_drives)
                item.content = content
                item.modified = self._now()
            else:
                parent = self._parent_for_create(meta, account, all_drives)
                item = self._create(str(meta.get("name", "Untitled")),
                                    meta.get("mimeType") or "application/octet-stream", parent, content)
            result = self._file_json(item, params.get("fields"))
        state["status"] = 200
        self._send_json(h, 200, result)

    def _chunk(self, h: BaseHTTPRequestHandler, upload_id: str, state: dict, fault: Fault | None) -> None:
        with self.lock:
            session = self.sessions.get(upload_id)
            expired = self.expired_sessions.get(upload_id)
        spec = h.headers.get("Content-Range")
        length = int(h.headers.get("Content-Length") or 0)
        if session is None:
            self._read_exact(h, length)
            raise _HttpError(expired or 404, "notFound", "Upload session not found or expired.")
        if fault is not None and fault.drop:
            got = self._read_exact(h, fault.drop_after if fault.drop_after is not None else length // 2)
            state["bytes_in"] = len(got)
            self._count_upload("upload-chunk", len(got))
            if fault.commit_bytes and spec and spec.startswith("bytes ") and "*" not in spec.split("/")[0]:
                first = int(spec[6:].split("-")[0])
                with self.lock:
                    if first == len(session.data):
                        session.data += got[: fault.commit_bytes]
            raise _Dropped()
        if self.chunk_delay_s:
            time.sleep(self.chunk_delay_s)
        body = self._body(h)
        state["bytes_in"] = len(body)
        self._count_upload("upload-chunk", len(body))
        with self.lock:
            if session.done_id is not None:
                done = self.items.get(session.done_id)
                if done is None:
                    raise _HttpError(404, "notFound", "Upload session not found or expired.")
                state["status"] = 200
                self._send_json(h, 200, self._file_json(done, session.fields))
                return
            if spec is None:  # the whole (e.g. empty) content in one request
                first, last, total = 0, len(body) - 1, len(body)
            else:
                match = re.fullmatch(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", spec.strip())
                if match is None:
                    raise _HttpError(400, "badRequest", f"Invalid Content-Range {spec!r}")
                total = None if match.group(3) == "*" else int(match.group(3))
                if match.group(1) is None:  # status query
                    self._session_status(h, session, state)
                    return
                first, last = int(match.group(1)), int(match.group(2))
                if last - first + 1 != len(body):
                    raise _HttpError(400, "badRequest", "Content-Range does not match the body length")
            if session.total is not None and total is not None and total != session.total:
                raise _HttpError(400, "badRequest", "Total size differs from X-Upload-Content-Length")
            committed = len(session.data)
            if first > committed:
                raise _HttpError(400, "badRequest", f"Chunk starts at {first}, expected {committed}")
            self._check_cap()
            final = total is not None and last + 1 == total
            if not final and self.chunk_mode == "strict" and len(body) % UNIT:
                raise _HttpError(400, "badRequest", "Chunk size must be a multiple of 256 KiB")
            new = body[committed - first:]
            if fault is not None and fault.commit_bytes is not None:
                new = new[: fault.commit_bytes]
                final = False
            session.data += new
            self.uploaded_today += len(new)
            if not final and self.chunk_mode == "round":
                keep = max(committed, len(session.data) // UNIT * UNIT)
                del session.data[keep:]
            if final and len(session.data) == total:
                self._finish(session)
                done = self.items[session.done_id]  # type: ignore[index]
                state["status"] = 200
                self._send_json(h, 200, self._file_json(done, session.fields))
                return
            self._session_status(h, session, state)

    def _session_status(self, h: BaseHTTPRequestHandler, session: Session, state: dict) -> None:
        if session.done_id is not None:
            state["status"] = 200
            self._send_json(h, 200, self._file_json(self.items[session.done_id], session.fields))
            return
        headers = {"Range": f"bytes=0-{len(session.data) - 1}"} if session.data else {}
        state["status"] = 308
        self._send(h, 308, b"", headers)

    def _finish(self, session: Session) -> None:
        content = bytes(session.data)
        if session.update_id:
            item = self.items[session.update_id]
            item.content = content
            item.modified = self._now()
        else:
            meta = session.meta
            parent = self._parent_for_create(meta, None, True)
            item = self._create(str(meta.get("name", "Untitled")),
                                meta.get("mimeType") or "application/octet-stream", parent, content)
        session.done_id = item.id


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def _kind(method: str, path: str, params: dict[str, str], headers: Any) -> str:
    """A short name for a request, for counting in tests and the benchmark."""
    if path == "/token":
        return "token"
    if path.startswith("/upload/"):
        if "upload_id" in params:
            spec = headers.get("Content-Range") or ""
            return "upload-status" if spec.startswith("bytes */") else "upload-chunk"
        kinds = {"resumable": "upload-init", "multipart": "multipart"}
        return kinds.get(params.get("uploadType", ""), "upload")
    if path == "/drive/v3/drives":
        return "drives.list"
    if path == "/drive/v3/about":
        return "about"
    if path == "/drive/v3/files":
        return "list" if method == "GET" else "create"
    if params.get("alt") == "media":
        return "media"
    return {"GET": "get", "PATCH": "update", "DELETE": "delete"}.get(method, method.lower())


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict, bytes, str]:
    """googleapiclient's multipart/related body: JSON metadata, then the media part.

    Parts are separated by ``--boundary`` lines with ``\\n`` line endings (email's
    generator); the payload is binary and may contain anything but the delimiter.
    """
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/related") or match is None:
        raise _HttpError(400, "badContent", "multipart upload needs multipart/related with a boundary")
    delimiter = b"--" + match.group(1).encode()
    pieces = body.split(delimiter)
    parts = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        # Exactly one "\n" after the delimiter line and one before the next delimiter
        # belong to the framing (email's generator writes "\n"); a payload may itself end
        # in "\r" or "\n".
        piece = piece[1:] if piece.startswith(b"\n") else piece
        piece = piece[:-1] if piece.endswith(b"\n") else piece
        head, sep, payload = piece.partition(b"\n\n")
        if not sep:
            head, sep, payload = piece.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        parts.append((headers, payload))
    if len(parts) != 2:
        raise _HttpError(400, "badContent", f"multipart upload needs 2 parts, got {len(parts)}")
    try:
        meta = json.loads(parts[0][1] or b"{}")
    except ValueError:
        raise _HttpError(400, "parseError", "Parse Error") from None
    return meta, parts[1][1], parts[1][0].get("content-type", "")
