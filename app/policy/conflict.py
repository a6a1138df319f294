"""What happens when the target already holds a file under the published path.

Before a file is written, the target is looked at (one ``stat``):

* nothing there: the transfer goes ahead as usual;
* the very same bytes (same size and SHA-256, e.g. a copy left by a crash before its
  result was recorded, or a folder copied by hand): the file is *adopted*, recorded as
  available without moving a byte;
* a different file: a **conflict**, decided by ``conflict_policy`` for the site pair and
  project, in Sahana Eden's vocabulary:

  ======== ==============================================================================
  ``this``  keep the target's file; the published file is not written, the entry is
            marked failed with an explanation (nothing is lost: it is still on the source)
  ``other`` take the incoming file; the target's file is first renamed to
            ``<name>.sitesync-conflict-<YYYYMMDD-HHMMSS>-<site><ext>`` beside it (the
            default: a re-sync over a damaged copy just works, and nothing is lost)
  ``newer`` ``other`` when the source's modification time is at least the target's,
            else ``this`` (both times must be known, else it acts as ``fail``)
  ``fail``  change nothing and mark the entry failed; a person decides
  ======== ==============================================================================

The file that loses is never deleted (Syncthing's rule). There is a short window between
the look and the final rename in which a file created by someone else would be replaced;
SiteSync's own writers never race there (claims).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from app.engine.transfer import CHUNK_BYTES, CancelToken, TransferResult
from app.errors import PermanentError
from app.model import WorkItem
from providers.base import CHECKSUM_ALGORITHM, Provider, RemoteFile

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "ConflictError",
    "ConflictPolicy",
    "Decision",
    "adopted_result",
    "conflict_name",
    "decide",
    "parse_conflict_policy",
]

POLICIES = ("this", "other", "newer", "fail")
DEFAULT_POLICY = "other"
_DEFAULT_KEYS = ("default", "*>*", "*")
_FIX = ('write one of this, other, newer, fail, or a mapping of "SOURCE>TARGET" site pairs '
        '(either side may be *) to those, e.g. {"studio>local": "other", "default": "fail"}')


class ConflictPolicyError(ValueError):
    def __init__(self, message: str, fix: str = _FIX, subpath: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.subpath = subpath


class ConflictError(PermanentError):
    """A conflict the policy did not resolve by writing (``this`` or ``fail``)."""


@dataclass(frozen=True)
class ConflictPolicy:
    """Policies by (source pattern, target pattern); see :meth:`for_pair`."""

    rules: tuple[tuple[str, str, str], ...] = ()
    default: str = DEFAULT_POLICY

    def for_pair(self, source: str, target: str, local_id: str = "") -> str:
        """The policy for a transfer ``source`` -> ``target``: an exact pair wins over
        one wildcard side (the target's pattern first), which wins over the default.
        ``local`` in a pattern means this machine (``local_id``)."""
        best: tuple[int, str] | None = None
        for src, tgt, policy in self.rules:
            if _matches(src, source, local_id) and _matches(tgt, target, local_id):
                score = (0 if "*" in tgt else 2) + (0 if "*" in src else 1)
                if best is None or score > best[0]:
                    best = (score, policy)
        return best[1] if best else self.default

    def text(self) -> str:
        parts = [f"{s}>{t}: {p}" for s, t, p in self.rules]
        return ", ".join([*parts, f"default: {self.default}"])


def _matches(pattern: str, site: str, local_id: str) -> bool:
    if pattern == "local":
        return site == local_id
    return fnmatch.fnmatchcase(site, pattern)


def parse_conflict_policy(value: object) -> ConflictPolicy:
    """``"other"`` or ``{"studio>local": "this", "*>gdrive": "fail", "default": "newer"}``."""
    if isinstance(value, str):
        return ConflictPolicy((), _policy(value, ""))
    if not isinstance(value, Mapping):
        raise ConflictPolicyError(f"must be a policy name or a mapping, not {type(value).__name__}")
    rules = []
    default = DEFAULT_POLICY
    for key, policy in value.items():
        if not isinstance(key, str):
            raise ConflictPolicyError(f"key {key!r} is not text")
        name = _policy(policy, key)
        if key.strip() in _DEFAULT_KEYS:
            default = name
            continue
        source, sep, target = key.partition(">")
        source, target = source.strip(), target.strip()
        if not sep or not source or not target or ">" in target:
            raise ConflictPolicyError(f"key {key!r} is not SOURCE>TARGET",
                                      'write site pairs as "studio>local" (either side may be '
                                      '*), or "default"', key)
        rules.append((source, target, name))
    return ConflictPolicy(tuple(rules), default)


def _policy(value: object, key: str) -> str:
    if isinstance(value, str) and value.strip().lower() in POLICIES:
        return value.strip().lower()
    raise ConflictPolicyError(f"{value!r} is not a conflict policy",
                              "use this, other, newer or fail", key)


# -- deciding --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What the pre-transfer look at the target decided.

    ``adopt``: the target already has the published bytes (``existing``, ``checksum``).
    ``write``: transfer as usual (after ``kept_as`` was made, when it is set).
    """

    adopt: bool = False
    existing: RemoteFile | None = None
    checksum: str | None = None
    policy: str = ""
    detail: str = ""
    kept_as: str = ""


def decide(
    item: WorkItem,
    source: Provider,
    target: Provider,
    token: CancelToken,
    policy_name: str,
    now: datetime,
    on_conflict: Callable[[str, str, str, str], None],
) -> Decision:
    """Look at the target before writing ``item``; see the module docstring.

    ``on_conflict(policy, outcome, detail, kept_as)`` is told about every conflict (the
    engine publishes ConflictResolved). Raises ConflictError for ``this``/``fail``
    outcomes, provider errors as they come, CancelledTransfer when cancelled while hashing.
    """
    existing = target.stat(item.path)
    if existing is None:
        return Decision()
    difference = ""
    checksum = None
    if existing.size != item.size:
        difference = f"it has {existing.size} bytes, the published file {item.size}"
    else:
        checksum = item.source_checksum or _hash(source, item.path, token)
        theirs = _hash(target, item.path, token)
        if theirs == checksum:
            return Decision(adopt=True, existing=existing, checksum=checksum)
        difference = "same size, different content"
    chosen = policy_name
    if policy_name == "newer":
        chosen, why = _newer(item, source, existing)
        difference += f"; {why}"
    where = f"{item.path} on site '{item.target_site}'"
    if chosen == "other":
        kept_as = conflict_name(item.path, item.target_site, now,
                                exists=lambda p: target.stat(p) is not None)
        target.move(item.path, kept_as)
        detail = (f"{where} already held a different file ({difference}); it was kept as "
                  f"{kept_as} and the published file written (conflict_policy '{policy_name}')")
        on_conflict(policy_name, "took_incoming", detail, kept_as)
        return Decision(policy=policy_name, detail=detail, kept_as=kept_as)
    if chosen == "this":
        detail = (f"{where} holds a different file ({difference}) and conflict_policy "
                  f"'{policy_name}' keeps it; the published file was not written (it is still "
                  f"on site '{item.source_site}'). To take it: move that file away or set "
                  f"conflict_policy for \"{item.source_site}>{item.target_site}\" to 'other', "
                  "then reset the file")
        on_conflict(policy_name, "kept_target", detail, "")
        raise ConflictError(detail)
    detail = (f"conflict: {where} already holds a different file ({difference}); nothing was "
              "changed. Fix: move or rename that file and reset, or set conflict_policy "
              f"for \"{item.source_site}>{item.target_site}\" to 'other' (keeps it as a "
              "conflict copy and takes the published file) or 'this' (keeps it)")
    on_conflict(policy_name, "failed", detail, "")
    raise ConflictError(detail)


def _newer(item: WorkItem, source: Provider, existing: RemoteFile) -> tuple[str, str]:
    """'other' if the source is at least as new as the target's file, else 'this'."""
    theirs = source.stat(item.path)
    if theirs is None:
        raise PermanentError(f"source file {item.path} is missing on site '{item.source_site}'")
    if theirs.mtime is None or existing.mtime is None:
        return "fail", "a modification time is unknown, so 'newer' cannot choose"
    if theirs.mtime >= existing.mtime:
        return "other", "the published file is newer"
    return "this", "the file already there is newer"


def _hash(provider: Provider, path: str, token: CancelToken) -> str:
    """``sha256:<hex>`` of a stored file, read through the provider."""
    hasher = hashlib.new(CHECKSUM_ALGORITHM)
    with provider.open_reader(path, 0) as reader:
        while chunk := reader.read(CHUNK_BYTES):
            token.raise_if_cancelled()
            hasher.update(chunk)
    token.raise_if_cancelled()
    return f"{CHECKSUM_ALGORITHM}:{hasher.hexdigest()}"


def conflict_name(path: str, site: str, when: datetime,
                  exists: Callable[[str], bool] = lambda _: False) -> str:
    """``dir/name.sitesync-conflict-20240301-101500-studio.exr`` for ``dir/name.exr``:
    Syncthing's pattern, so the copy sorts beside the original and keeps its extension
    (image viewers still open it). A number is added if that name is taken."""
    folder, _, name = path.rpartition("/")
    stem, ext = os.path.splitext(name)
    if not stem:  # ".hidden"
        stem, ext = name, ""
    stamp = when.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        suffix = "" if n == 1 else f"-{n}"
        candidate = f"{stem}.sitesync-conflict-{stamp}-{site}{suffix}{ext}"
        full = f"{folder}/{candidate}" if folder else candidate
        if not exists(full):
            return full
    raise PermanentError(f"too many conflict copies of {path} on site '{site}'; clean them up")


def adopted_result(decision: Decision, seconds: float) -> TransferResult:
    """The TransferResult of a file found already in place (nothing was moved)."""
    assert decision.existing is not None and decision.checksum is not None
    return TransferResult(provider_id=decision.existing.id, checksum=decision.checksum,
                          size=decision.existing.size, resumed_from=decision.existing.size,
                          seconds=seconds)

