"""gdrive: a site in Google Drive, reached with a service account.

Options (the site's settings; every key is described with an example in
docs/providers/gdrive.md): ``credentials_url`` (the service account's JSON key, per
platform), ``root`` (``{"work": "/My Drive/projects"}`` or ``"/<shared drive>/projects"``),
``chunk_size``, ``download_chunk_size``, ``api_url``, ``impersonate``, ``max_calls_per_s``,
``max_backoff_s``, ``max_retries``, ``upload_limit_wait_s``, ``timeout_s``.

Compared with OpenPype's ``GDriveHandler``: one API client per thread, reused for every
file, instead of one per file; paths resolved incrementally instead of listing every
folder of every drive each loop; resumable uploads that survive a restart; every transfer
verified against Drive's md5Checksum; one pacer per account instead of a 60 s sleep in
the worker that saw the error; and a daily upload cap that holds the site without
failing files.
"""

from __future__ import annotations

import contextlib
import posixpath
import threading
from collections.abc import Mapping
from typing import Any

from app.errors import PermanentError, SiteSyncError
from providers.base import Features, Provider, Reader, RemoteFile, Writer
from providers.gdrive.calls import DriveCaller, DriveNotFound, SessionGone
from providers.gdrive.client import account_for
from providers.gdrive.download import DriveReader
from providers.gdrive.folders import FILE_FIELDS, DriveRoot, Folders
from providers.gdrive.options import parse_options
from providers.gdrive.state import UploadStates
from providers.gdrive.upload import PART_SUFFIX, DriveWriter, part_name, remote_file
from providers.paths import RootSpec, parse_roots, safe_join, select_root, split_rootless

__all__ = ["GDriveProvider"]


class GDriveProvider(Provider):
    kind = "gdrive"
    features = Features(
        resumable_upload=True,
        ranged_read=True,
        atomic_rename=True,
        server_hashes=frozenset({"md5"}),
        local=False,
    )

    def __init__(self, site: str, config: Mapping[str, Any]) -> None:
        super().__init__(site, config)
        self.options = parse_options(site, config)
        self._roots: dict[str, RootSpec] = parse_roots(site, config, pathmod=posixpath)
        self.account = account_for(site, self.options)
        self.caller = DriveCaller(
            site=site, email=self.account.email, project=self.account.project,
            credentials_path=self.options.credentials_path, api_url=self.options.api_url,
            pacer=self.account.pacer, max_retries=self.options.max_retries,
            max_backoff_s=self.options.max_backoff_s, upload_limit_wait_s=self.options.upload_limit_wait_s)
        self.folders = Folders(site, self.caller, self.files, self.drives, self.account.cache,
                               self.account.cache_lock)
        self.states = UploadStates(site, self.account.email)
        self._resolved: dict[str, DriveRoot] = {}
        self._resolved_lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"GDriveProvider(site={self.site!r}, account={self.account.email!r}, "
                f"roots={sorted(self._roots)})")

    def client(self) -> Any:
        """This thread's Drive client (one per account and thread, reused for every file)."""
        return self.account.thread_client(self.options.timeout_s)[0]

    def files(self) -> Any:
        return self.account.thread_client(self.options.timeout_s)[1]

    def drives(self) -> Any:
        return self.account.thread_client(self.options.timeout_s)[2]

    # -- paths ---------------------------------------------------------------------------------

    def _locate(self, rootless_path: str) -> tuple[str, tuple[str, ...], str]:
        """(root name, components, display path) after every lexical check."""
        name, parts = split_rootless(rootless_path)
        if parts[-1].endswith(PART_SUFFIX):
            raise PermanentError(
                f"file names ending in {PART_SUFFIX!r} are reserved for SiteSync's temporary "
                f"uploads: {rootless_path!r}; rename the published file")
        root_path = select_root(self.site, self._roots, name)
        display = safe_join(root_path, parts, posixpath)
        root_name = name if name is not None else next(iter(self._roots))
        return root_name, parts, display

    def resolve(self, rootless_path: str) -> str:
        return self._locate(rootless_path)[2]

    def _root(self, root_name: str) -> DriveRoot:
        with self._resolved_lock:
            root = self._resolved.get(root_name)
        if root is None:
            spec = self._roots[root_name]
            assert spec.path is not None  # select_root checked it
            root = self.folders.drive_root(root_name, spec.path)
            with self._resolved_lock:
                self._resolved[root_name] = root
        return root

    def forget_paths(self) -> None:
        """Drop cached folder and root ids: something was deleted or moved behind our back
        (a root folder deleted and made anew gets a new id)."""
        self.folders.forget()
        with self._resolved_lock:
            self._resolved.clear()

    def _find(self, rootless_path: str) -> tuple[DriveRoot, str | None, dict[str, Any] | None]:
        """(root, parent folder id or None, newest file resource or None)."""
        root_name, parts, _ = self._locate(rootless_path)
        root = self._root(root_name)
        for attempt in (1, 2):
            parent = self.folders.folder(root, parts[:-1], create=False)
            if parent is None:
                return root, None, None
            files = self.folders.find_files(root, parent, [parts[-1]])
            if files:
                return root, parent, files[-1]  # duplicates: the newest one is the current version
            if attempt == 1 and not self.folders.folder_exists(parent):
                self.forget_paths()  # a cached folder was deleted or trashed: look again
                root = self._root(root_name)
                continue
            return root, parent, None
        return root, None, None

    # -- operations ----------------------------------------------------------------------------

    def stat(self, rootless_path: str) -> RemoteFile | None:
        _, _, meta = self._find(rootless_path)
        return remote_file(rootless_path, meta) if meta is not None else None

    def open_reader(self, rootless_path: str, offset: int = 0) -> Reader:
        if offset < 0:
            raise ValueError(f"offset must be >= 0, not {offset}")
        _, _, meta = self._find(rootless_path)
        if meta is None:
            raise PermanentError(
                f"file missing on site '{self.site}': {self.resolve(rootless_path)} is not in Google "
                f"Drive (or not shared with {self.account.email}); re-upload it or reset this site "
                "for the file")
        return DriveReader(self, rootless_path, meta, offset)

    def open_writer(self, rootless_path: str, size: int, resume: bool = True) -> Writer:
        root_name, parts, _ = self._locate(rootless_path)
        root = self._root(root_name)
        try:
            parent = self.folders.folder(root, parts[:-1], create=True)
        except DriveNotFound:
            self.forget_paths()
            root = self._root(root_name)
            parent = self.folders.folder(root, parts[:-1], create=True)
        assert parent is not None
        state = self.states.load(rootless_path) if resume else None
        if not resume:
            self.states.delete(rootless_path)
        writer = DriveWriter(self, rootless_path, root, parts, parent, size)
        if state is not None:
            if (state.size, state.parent_id, state.name) == (size, parent, parts[-1]):
                try:
                    writer.resume_from(state)
                except (SessionGone, DriveNotFound):
                    self.states.delete(rootless_path)
                    writer = DriveWriter(self, rootless_path, root, parts, parent, size)
            else:
                self.states.delete(rootless_path)
        return writer

    def delete(self, rootless_path: str) -> None:
        """Move the file (and duplicates of it) to Drive's trash, where it can be restored
        for 30 days; remove leftover temporary uploads and any saved upload session."""
        root_name, parts, display = self._locate(rootless_path)
        root = self._root(root_name)
        self.states.delete(rootless_path)
        parent = self.folders.folder(root, parts[:-1], create=False)
        if parent is None:
            return
        for meta in self.folders.find_files(root, parent, [parts[-1], part_name(parts[-1])]):
            if meta.get("name") == parts[-1]:
                self.trash_id(str(meta["id"]), f"deleting {display}")
            else:
                self.delete_id(str(meta["id"]), f"deleting a leftover upload of {display}")

    def move(self, source_path: str, target_path: str) -> RemoteFile:
        """A rename on Drive (name and, if needed, parent folder): no bytes move. Never
        replaces a file; across drives (My Drive <-> a shared drive) it copies instead."""
        if self.stat(target_path) is not None:
            raise PermanentError(f"cannot move {source_path} to {target_path} on site "
                                 f"'{self.site}': the target already exists")
        src_root, src_parent, meta = self._find(source_path)
        if meta is None or src_parent is None:
            raise PermanentError(f"cannot move {source_path} on site '{self.site}': it does not exist")
        root_name, parts, display = self._locate(target_path)
        dst_root = self._root(root_name)
        if dst_root.drive_id != src_root.drive_id:
            return super().move(source_path, target_path)
        dst_parent = self.folders.folder(dst_root, parts[:-1], create=True)
        assert dst_parent is not None
        moves = {} if dst_parent == src_parent else {"addParents": dst_parent, "removeParents": src_parent}
        moved = self.caller.run(f"moving {self.resolve(source_path)} to {display}", lambda: (
            self.files().update(fileId=meta["id"], body={"name": parts[-1]}, fields=FILE_FIELDS,
                                supportsAllDrives=True, **moves).execute(num_retries=0)))
        self.folders.note_name(dst_parent, parts[-1])
        return remote_file(target_path, moved)

    def sweep_partials(self, max_age_s: float) -> list[str]:
        """Forget upload sessions nobody came back for (their state files; Drive drops
        the sessions itself after about a week). A temporary upload left on Drive by a
        crash is removed by the next upload of that file."""
        return self.states.sweep(max_age_s)

    def trash_id(self, file_id: str, what: str) -> None:
        with contextlib.suppress(DriveNotFound):
            self.caller.run(what, lambda: self.files().update(
                fileId=file_id, body={"trashed": True}, fields="id", supportsAllDrives=True,
            ).execute(num_retries=0))

    def delete_id(self, file_id: str, what: str) -> None:
        with contextlib.suppress(DriveNotFound):
            self.caller.run(what, lambda: self.files().delete(
                fileId=file_id, supportsAllDrives=True).execute(num_retries=0))

    def check(self) -> list[str]:
        """Credentials (a token is fetched) and every root: it must exist, be shared with
        the service account and be writable by it."""
        if not self._roots:
            return [f"site '{self.site}' has no roots; set sites.{self.site}.root, e.g. "
                    '{"work": "/My Drive/projects"}']
        problems = []
        for name, spec in sorted(self._roots.items()):
            if spec.path is None:
                problems.append((spec.error or f"root '{name}' of site '{self.site}' is unusable")
                                + " (Drive roots look like /My Drive/folder or /<shared drive>/folder)")
                continue
            try:
                root = self._root(name)
                meta = self.caller.run(f"checking root '{name}'", lambda r=root: self.files().get(
                    fileId=r.folder_id, fields="id,capabilities(canAddChildren)", supportsAllDrives=True,
                ).execute(num_retries=0))
            except SiteSyncError as exc:
                if str(exc) not in problems:  # bad credentials would repeat for every root
                    problems.append(str(exc))
                continue
            if not meta.get("capabilities", {}).get("canAddChildren", True):
                problems.append(
                    f"root '{name}' of site '{self.site}' ({spec.path}) is read-only for the service "
                    f"account {self.account.email}; share it as Editor (on a shared drive: Content "
                    "manager)")
        return problems

    def describe(self) -> str:
        roots = ", ".join(f"{name}={spec.path}" for name, spec in sorted(self._roots.items()))
        return f"service account {self.account.email}; roots {roots}"

    def close(self) -> None:
        """Nothing to release: the clients belong to the account and its threads (their
        connections close with the threads), and other sites may be using them."""
