""""When complete" downloads: a representation appears on the site only as a whole.

A subscription in ``when_complete`` mode (rayvision's "download after the task is
complete") marks the site's entries *atomic*. For such an entry:

1. each file is transferred and verified as usual, but under a staged name beside its
   final one (``.<name>.sitesync-staged``), and recorded as *staged*, not available
   (shown In progress at 100 %: moved, waiting for its siblings);
2. when the last file of the representation is staged (``Store.has_unstaged`` is false),
   every staged file is renamed to its final name, one after the other in a burst;
3. only then are all entries made available in one database write
   (``Store.complete_staged``), so nothing reads the representation as present while a
   file is missing.

Every step can be repeated: after a crash between 2 and 3, a file already at its final
name with the staged checksum is simply kept. A staged file that vanished sends its entry
back to the queue (fetched again) and completion waits for it. A file that was at the
final name before (a conflict) is kept under a conflict name, never overwritten.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from app.model import FileRecord
from app.policy.conflict import conflict_name
from app.store.base import Store
from providers.base import CHECKSUM_ALGORITHM, Provider

__all__ = ["STAGED_SUFFIX", "Completion", "CompletionQueue", "complete", "staged_path"]

_log = logging.getLogger(__name__)

STAGED_SUFFIX = ".sitesync-staged"
_NAME_MAX = 255
FILES_PAGE = 500


def staged_path(rootless: str) -> str:
    """``dir/.name.sitesync-staged`` for ``dir/name``: hidden, one per file, so a retry
    finds it (names too long for that get a digest, still one per file)."""
    folder, _, name = rootless.rpartition("/")
    staged = f".{name}{STAGED_SUFFIX}"
    if len(staged.encode()) > _NAME_MAX:
        staged = f".{hashlib.sha256(name.encode()).hexdigest()[:32]}{STAGED_SUFFIX}"
    return f"{folder}/{staged}" if folder else staged


@dataclass(frozen=True)
class Completion:
    """What :func:`complete` did: ``files`` made available (0: not complete yet),
    ``requeued`` staged files found missing and sent back to the queue, ``kept`` the
    conflict names of files that were in the way."""

    files: int
    requeued: int = 0
    kept: tuple[str, ...] = ()


def complete(
    store: Store, project: str, repre_id: str, site: str, provider: Provider, now: datetime
) -> Completion:
    """Move a fully staged representation into place, then make it available at once."""
    if store.has_unstaged(project, repre_id, site):
        return Completion(0)
    requeued = 0
    kept: list[str] = []
    offset = 0
    while files := store.file_page(project, repre_id, offset, FILES_PAGE):
        for file in files:
            state = file.site(site)
            if state is None or state.staged_dt is None or state.available:
                continue
            outcome = _place(provider, file, state.checksum, now)
            if outcome is None:
                store.reset_site(project, repre_id, site, file_id=file.id)
                requeued += 1
            elif outcome:
                kept.append(outcome)
        offset += len(files)
    if requeued:
        _log.warning("%d staged file(s) of %s on %s were missing; fetching them again",
                     requeued, repre_id, site)
        return Completion(0, requeued, tuple(kept))
    return Completion(store.complete_staged(project, repre_id, site, now), 0, tuple(kept))


def _place(provider: Provider, file: FileRecord, checksum: str | None, now: datetime) -> str | None:
    """Move one staged file to its final name. Returns "" when placed, the conflict name
    when a different file had to be kept aside first, None when the staged file is gone
    and the final name does not hold the right bytes either (fetch it again)."""
    staged = staged_path(file.path)
    final = provider.stat(file.path)
    if provider.stat(staged) is None:
        # Moved by an earlier, interrupted completion, or lost.
        if final is not None and final.size == file.size and _matches(provider, file.path, checksum):
            return ""
        return None
    kept = ""
    if final is not None:
        if final.size == file.size and _matches(provider, file.path, checksum):
            provider.delete(staged)  # the same bytes are already in place
            return ""
        kept = conflict_name(file.path, provider.site, now,
                             exists=lambda p: provider.stat(p) is not None)
        provider.move(file.path, kept)
    provider.move(staged, file.path)
    return kept


def _matches(provider: Provider, path: str, checksum: str | None) -> bool:
    if not checksum:
        return False
    hasher = hashlib.new(CHECKSUM_ALGORITHM)
    with provider.open_reader(path, 0) as reader:
        while chunk := reader.read(4 * 1024 * 1024):
            hasher.update(chunk)
    return f"{CHECKSUM_ALGORITHM}:{hasher.hexdigest()}" == checksum


class CompletionQueue:
    """Representations to try to complete, coalesced: noted after every staged file,
    tried once the noting stops for a moment (the last file of a burst triggers it)."""

    def __init__(self, settle_s: float = 0.2) -> None:
        self._lock = threading.Lock()
        self._due: dict[tuple[str, str, str], float] = {}
        self._settle_s = settle_s

    def note(self, project: str, repre_id: str, site: str) -> None:
        with self._lock:
            self._due[(project, repre_id, site)] = time.monotonic() + self._settle_s

    def take_due(self) -> list[tuple[str, str, str]]:
        now = time.monotonic()
        with self._lock:
            due = [key for key, when in self._due.items() if when <= now]
            for key in due:
                del self._due[key]
            return due

    def __len__(self) -> int:
        with self._lock:
            return len(self._due)

