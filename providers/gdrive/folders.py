"""Drive paths -> ids: roots, folders (cached, created once), and files by name.

Drive has ids, not paths, and allows several items with one name in a folder. OpenPype
listed every folder of every drive on every loop to build a path table; here a path is
resolved one component at a time, only when needed, and each (parent id, name) -> id
answer is cached for the life of the process and shared by every site of the account.

Creating folders is safe when workers race:

* in this process, one lock per (parent, name) lets a single thread create it while the
  others wait and then read the cache;
* across processes (two engines), the creator lists the name again after creating it;
  if another engine created one too, everyone keeps the *oldest* (createdTime, then id)
  and the loser deletes its own, still empty, folder. The oldest was created before the
  later creator's check, so every process that looks afterwards picks the same one.

A folder this process created is "fresh": it is known to hold only what we put there,
so looking up a file name in it needs no API call. That saves one call per file for the
usual publish of a new version folder.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from app.errors import PermanentError
from providers.gdrive.calls import DriveCaller, DriveNotFound

__all__ = ["FILE_FIELDS", "FOLDER", "DriveRoot", "Folders", "q_string"]

FOLDER = "application/vnd.google-apps.folder"
#: What SiteSync needs to know about a stored file (Drive's default omits size and md5).
FILE_FIELDS = "id,name,size,md5Checksum,sha256Checksum,modifiedTime,createdTime,mimeType,parents"
MY_DRIVE = "My Drive"


def q_string(value: str) -> str:
    """``value`` as a Drive query string literal: quoted, with ``\\`` and ``'`` escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def oldest(items: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The item every process agrees on among duplicates: oldest createdTime, then id."""
    ordered = sorted(items, key=lambda f: (str(f.get("createdTime", "")), str(f.get("id", ""))))
    return ordered[0] if ordered else None


@dataclass(frozen=True)
class DriveRoot:
    """One configured root, resolved: ``drive_id`` is None for My Drive."""

    name: str
    path: str
    drive_id: str | None
    folder_id: str

    def list_args(self) -> dict[str, Any]:
        """files.list arguments that see this root's items (shared drives need corpora)."""
        if self.drive_id is None:
            return {"supportsAllDrives": True, "includeItemsFromAllDrives": True, "corpora": "user"}
        return {"supportsAllDrives": True, "includeItemsFromAllDrives": True, "corpora": "drive",
                "driveId": self.drive_id}


class Folders:
    """Folder and file lookups for one site; the caches live in the account."""

    def __init__(self, site: str, caller: DriveCaller, files: Callable[[], Any], drives: Callable[[], Any],
                 cache: dict[str, Any], lock: threading.RLock) -> None:
        self.site = site
        self.caller = caller
        self.files = files
        self.drives = drives
        self._lock = lock
        self._ids: dict[tuple[str, str], str] = cache.setdefault("folders", {})
        self._fresh: dict[str, set[str]] = cache.setdefault("fresh", {})
        self._drives: dict[str, str] = cache.setdefault("drives", {})
        self._create_locks: dict[tuple[str, str], threading.Lock] = cache.setdefault("create_locks", {})

    # -- roots -----------------------------------------------------------------------------------

    def drive_root(self, root_name: str, path: str) -> DriveRoot:
        """Resolve ``/My Drive/a/b`` or ``/<shared drive>/a/b`` (every folder must exist);
        PermanentError naming the fix when something is missing or not shared."""
        parts = [p for p in path.split("/") if p]
        email = self.caller.email
        fix_key = f"sites.{self.site}.root.{root_name}"
        if not parts:
            raise PermanentError(f"root '{root_name}' of site '{self.site}' is '/'; start it with "
                                 f"/{MY_DRIVE}/ or /<shared drive name>/ ({fix_key})")
        top = parts[0]
        if top == MY_DRIVE:
            drive_id = None
            folder_id = self._my_drive_id()
        else:
            drive_id = self._shared_drive_id(top, root_name)
            folder_id = drive_id
        root = DriveRoot(root_name, path, drive_id, folder_id)
        walked = f"/{top}"
        for index, name in enumerate(parts[1:]):
            walked += f"/{name}"
            found = self._find_folder(root, folder_id, name)
            if found is None and index == 0 and drive_id is None:
                # A folder a user shared with the account from their own My Drive: OpenPype
                # shows those under /My Drive too, so existing settings keep working.
                found = self._shared_folder(name, root_name)
            if found is None:
                raise PermanentError(
                    f"root '{root_name}' of site '{self.site}': the folder {walked} does not exist or is "
                    f"not shared with the service account {email}; create it and share it with that "
                    f"e-mail as Editor, or fix {fix_key}")
            folder_id = found
        return DriveRoot(root_name, path, drive_id, folder_id)

    def _my_drive_id(self) -> str:
        with self._lock:
            cached = self._drives.get("")
        if cached:
            return cached
        meta = self.caller.run("looking up My Drive", lambda: self.files().get(
            fileId="root", fields="id").execute(num_retries=0))
        with self._lock:
            self._drives[""] = meta["id"]
        return str(meta["id"])

    def _shared_folder(self, name: str, root_name: str) -> str | None:
        q = f"name = {q_string(name)} and mimeType = '{FOLDER}' and sharedWithMe = true and trashed = false"
        page = self.caller.run(f"looking up shared folder '{name}'", lambda: self.files().list(
            q=q, fields="files(id,createdTime)", pageSize=10, supportsAllDrives=True,
            includeItemsFromAllDrives=True, corpora="user").execute(num_retries=0))
        found = page.get("files", [])
        if len(found) > 1:
            raise PermanentError(
                f"root '{root_name}' of site '{self.site}': {len(found)} folders named '{name}' are "
                f"shared with the service account {self.caller.email}; stop sharing all but one, or "
                "move the project into a shared drive")
        return str(found[0]["id"]) if found else None

    def _shared_drive_id(self, name: str, root_name: str) -> str:
        with self._lock:
            cached = self._drives.get("/" + name)
        if cached:
            return cached
        found: list[dict[str, Any]] = []
        token = None
        while True:
            page = self.caller.run(f"looking up shared drive '{name}'", lambda t=token: (
                self.drives().list(q=f"name = {q_string(name)}", pageSize=100, pageToken=t,
                                            fields="nextPageToken,drives(id,name)").execute(num_retries=0)))
            found += [d for d in page.get("drives", []) if d.get("name") == name]
            token = page.get("nextPageToken")
            if not token:
                break
        if len(found) != 1:
            fix_key = f"sites.{self.site}.root.{root_name}"
            if not found:
                raise PermanentError(
                    f"root '{root_name}' of site '{self.site}': no shared drive named '{name}' is visible "
                    f"to the service account {self.caller.email}; add that e-mail as a member (Content "
                    f"manager) of the shared drive, or fix {fix_key} (paths in the account's own drive "
                    f"start with /{MY_DRIVE}/)")
            raise PermanentError(
                f"root '{root_name}' of site '{self.site}': {len(found)} shared drives are named "
                f"'{name}'; rename all but one so the root is unambiguous")
        with self._lock:
            self._drives["/" + name] = found[0]["id"]
        return str(found[0]["id"])

    # -- folders -----------------------------------------------------------------------------------

    def folder(self, root: DriveRoot, parts: Iterable[str], create: bool) -> str | None:
        """The id of the folder ``parts`` below ``root`` (created if ``create``); None if
        it does not exist and ``create`` is False."""
        parent = root.folder_id
        for name in parts:
            found = self._child(root, parent, name, create)
            if found is None:
                return None
            parent = found
        return parent

    def _child(self, root: DriveRoot, parent: str, name: str, create: bool) -> str | None:
        key = (parent, name)
        with self._lock:
            cached = self._ids.get(key)
            fresh = self._fresh.get(parent)
            known_absent = fresh is not None and name not in fresh
        if cached:
            return cached
        if not known_absent:
            found = self._find_folder(root, parent, name)
            if found is not None or not create:
                return found
        elif not create:
            return None
        with self._lock:
            lock = self._create_locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                cached = self._ids.get(key)
            if cached:
                return cached
            return self._create(root, parent, name)

    def _find_folder(self, root: DriveRoot, parent: str, name: str) -> str | None:
        q = (f"name = {q_string(name)} and {q_string(parent)} in parents and mimeType = '{FOLDER}' "
             "and trashed = false")
        page = self.caller.run(f"looking up folder '{name}'", lambda: self.files().list(
            q=q, fields="files(id,createdTime)", pageSize=100, **root.list_args()).execute(num_retries=0))
        winner = oldest(page.get("files", []))
        if winner is None:
            return None
        with self._lock:
            self._ids[(parent, name)] = winner["id"]
        return str(winner["id"])

    def _create(self, root: DriveRoot, parent: str, name: str) -> str:
        body = {"name": name, "mimeType": FOLDER, "parents": [parent]}
        made = self.caller.run(f"creating folder '{name}'", lambda: self.files().create(
            body=body, fields="id,createdTime", supportsAllDrives=True).execute(num_retries=0))
        q = (f"name = {q_string(name)} and {q_string(parent)} in parents and mimeType = '{FOLDER}' "
             "and trashed = false")
        page = self.caller.run(f"checking folder '{name}'", lambda: self.files().list(
            q=q, fields="files(id,createdTime)", pageSize=100, **root.list_args()).execute(num_retries=0))
        winner = oldest([*page.get("files", []), made]) or made
        if winner["id"] != made["id"]:
            # Another engine made the same folder first: use its folder, drop ours (empty).
            with contextlib.suppress(DriveNotFound):
                self.caller.run(f"removing duplicate folder '{name}'", lambda: self.files().delete(
                    fileId=made["id"], supportsAllDrives=True).execute(num_retries=0))
        with self._lock:
            self._ids[(parent, name)] = winner["id"]
            if winner["id"] == made["id"]:
                self._fresh[winner["id"]] = set()
            fresh = self._fresh.get(parent)
            if fresh is not None:
                fresh.add(name)
        return str(winner["id"])

    def forget(self) -> None:
        """Drop every cached folder id (a folder was deleted or moved behind our back)."""
        with self._lock:
            self._ids.clear()
            self._fresh.clear()

    # -- files -------------------------------------------------------------------------------------

    def known_absent(self, parent: str, names: Iterable[str]) -> bool:
        """True if ``parent`` is a folder this process created and none of ``names`` was
        put there since: then they need no lookup."""
        with self._lock:
            fresh = self._fresh.get(parent)
            return fresh is not None and not any(n in fresh for n in names)

    def note_name(self, parent: str, name: str) -> None:
        with self._lock:
            fresh = self._fresh.get(parent)
            if fresh is not None:
                fresh.add(name)

    def find_files(self, root: DriveRoot, parent: str, names: Iterable[str]) -> list[dict[str, Any]]:
        """Files (not folders, not trashed) in ``parent`` with any of ``names``, with
        :data:`FILE_FIELDS`, oldest first."""
        names = list(dict.fromkeys(names))
        if self.known_absent(parent, names):
            return []
        by_name = " or ".join(f"name = {q_string(n)}" for n in names)
        q = f"({by_name}) and {q_string(parent)} in parents and mimeType != '{FOLDER}' and trashed = false"
        found: list[dict[str, Any]] = []
        token = None
        while True:
            page = self.caller.run(f"looking up {names[0]}", lambda t=token: self.files().list(
                q=q, fields=f"nextPageToken,files({FILE_FIELDS})", pageSize=100, pageToken=t,
                **root.list_args()).execute(num_retries=0))
            found += page.get("files", [])
            token = page.get("nextPageToken")
            if not token:
                break
        return sorted(found, key=lambda f: (str(f.get("createdTime", "")), str(f.get("id", ""))))

    def folder_exists(self, folder_id: str) -> bool:
        """Whether a (cached) folder id still names a live folder."""
        try:
            meta = self.caller.run("checking a folder", lambda: self.files().get(
                fileId=folder_id, fields="id,trashed", supportsAllDrives=True).execute(num_retries=0))
        except DriveNotFound:
            return False
        return not meta.get("trashed", False)
