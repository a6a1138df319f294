"""``sitesync validate``: adopt copies that are already on a site, verify the rest.

A studio seeds a new artist's disk from a shipped drive, or an admin copies a project
folder by hand: the bytes are there, the database does not know. Validate walks every
file the database lists for the project(s), looks for it on the site, hashes what it
finds, and compares with the checksum recorded where the file is available:

=============== ============================================================================
``adopted``      the copy matches: recorded as available on the site, no byte moved
``verified``     already available there, and the copy still matches
``absent``       not on the site and not recorded there: nothing to do
``different``    a different file sits at the published path (not recorded there)
``changed``      recorded as available but its size or content differs: the published
                 file changed after publishing (IntegrityAlert)
``missing``      recorded as available but not there (IntegrityAlert)
``unverified``   present, but no checksum is recorded to compare with (``--reference``)
``busy``         a transfer holds the file right now; left to it
=============== ============================================================================

Memory stays bounded whatever the project: representations are read as heads and files
in pages (Store.representation_heads / file_page), and only problems are kept.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from app.errors import SiteSyncError, UserFixableError
from app.events.types import IntegrityAlert
from app.model import FileRecord
from app.settings import ProjectSettings, Settings
from app.store.base import Store
from providers.base import CHECKSUM_ALGORITHM, Provider
from providers.registry import create_provider

__all__ = ["KINDS", "PROBLEMS", "QUIET", "Finding", "ValidateReport", "validate_site"]

KINDS = ("adopted", "verified", "absent", "different", "changed", "missing", "unverified",
         "busy", "error")
#: Kinds that are only counted (no finding is kept for them).
QUIET = frozenset({"adopted", "verified", "absent"})
#: Kinds that mean something is wrong (the command's exit status).
PROBLEMS = frozenset({"different", "changed", "missing", "error"})
#: Findings kept in the report; counts are always complete.
MAX_FINDINGS = 1000
HEADS_PAGE = 200
FILES_PAGE = 500
_READ = 4 * 1024 * 1024


@dataclass(frozen=True)
class Finding:
    """One file worth telling the user about."""

    kind: str
    project: str
    repre_id: str
    file_id: str
    path: str
    detail: str
    action: str = ""


@dataclass
class ValidateReport:
    site: str
    dry_run: bool
    counts: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)

    @property
    def checked(self) -> int:
        return sum(self.counts.values())

    @property
    def problems(self) -> int:
        return sum(n for kind, n in self.counts.items() if kind in PROBLEMS)

    def add(self, finding: Finding) -> None:
        self.counts[finding.kind] += 1
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(finding)


def validate_site(
    store: Store,
    settings: Settings,
    site: str,
    projects: Iterable[str],
    *,
    now: datetime,
    reference: str | None = None,
    dry_run: bool = False,
    publish: Callable[[IntegrityAlert], None] = lambda _: None,
    provider_factory: Callable[[ProjectSettings, str], Provider] | None = None,
) -> ValidateReport:
    """Check every file of ``projects`` on ``site``; see the module docstring.

    ``reference`` names a site whose copies are hashed when no checksum is recorded
    (OpenPype never records one). Raises UserFixableError when the site cannot be read
    at all (a root that is not mounted), before touching anything.
    """
    report = ValidateReport(site, dry_run)
    make = provider_factory or _provider
    for project in projects:
        ps = settings.project(project)
        provider = make(ps, site)
        problems = provider.check()
        if problems:
            raise UserFixableError(f"site {site!r} cannot be checked: {'; '.join(problems)}",
                                   fix="mount or fix the site, then run validate again")
        ref = make(ps, reference) if reference else None
        checker = _Checker(store, project, site, provider, ref, now, dry_run, report, publish)
        for repre_id, file in _files(store, project):
            checker.check(repre_id, file)
    return report


def _provider(ps: ProjectSettings, site: str) -> Provider:
    config = ps.site(site)
    return create_provider(config.provider, config.name,
                           {"root": dict(config.roots), **dict(config.options)})


def _files(store: Store, project: str) -> Iterator[tuple[str, FileRecord]]:
    """Every file of the project, a page at a time."""
    after = None
    while heads := store.representation_heads(project, after, HEADS_PAGE):
        for head in heads:
            offset = 0
            while files := store.file_page(project, head.id, offset, FILES_PAGE):
                for file in files:
                    yield head.id, file
                offset += len(files)
        after = heads[-1].key


@dataclass
class _Checker:
    store: Store
    project: str
    site: str
    provider: Provider
    reference: Provider | None
    now: datetime
    dry_run: bool
    report: ValidateReport
    publish: Callable[[IntegrityAlert], None]

    def check(self, repre_id: str, file: FileRecord) -> None:
        try:
            self._check(repre_id, file)
        except SiteSyncError as exc:
            self._find("error", repre_id, file, str(exc), "fix the problem and run validate again")

    def _check(self, repre_id: str, file: FileRecord) -> None:
        state = file.site(self.site)
        recorded = state is not None and state.available
        found = self.provider.stat(file.path)
        reset = _fetch_again(self.project, repre_id, file, self.site)
        if found is None:
            if recorded:
                self._alert(repre_id, file, "missing", "recorded as available on this site "
                            "but not there", f"{file.size} bytes", "nothing", reset)
            else:
                self.report.counts["absent"] += 1
            return
        known = _known_checksum(file, self.site)
        if found.size != file.size:
            detail = f"it has {found.size} bytes, the published file {file.size}"
            self._differs(repre_id, file, recorded, detail, f"{file.size} bytes",
                          f"{found.size} bytes", reset)
            return
        ours = _hash(self.provider, file.path)
        if known is None and self.reference is not None and self.reference.stat(file.path):
            known = _hash(self.reference, file.path)
        if known is None:
            what = "no checksum is recorded for it, so its content cannot be compared"
            self._find("unverified", repre_id, file, f"present with the published size; {what}",
                       "run validate again with --reference SITE (a site that has the file) "
                       "to compare with that copy")
            return
        if ours != known:
            self._differs(repre_id, file, recorded, "same size, different content", known, ours,
                          reset)
            return
        if recorded:
            self.report.counts["verified"] += 1
            return
        if self.dry_run:
            self.report.counts["adopted"] += 1  # would be
            return
        if self.store.adopt_file(self.project, repre_id, file.id, self.site, found.id, ours,
                                 self.now):
            self.report.counts["adopted"] += 1
        else:
            self._find("busy", repre_id, file, "a transfer holds it right now; left to it")

    def _differs(self, repre_id: str, file: FileRecord, recorded: bool, detail: str,
                 expected: str, found: str, reset: str) -> None:
        if recorded:
            self._alert(repre_id, file, "changed", f"changed after it was published: {detail}",
                        expected, found, reset)
        else:
            self._find("different", repre_id, file,
                       f"a different file is at the published path ({detail})",
                       "move it away, or leave it: when the file is synced there, "
                       "conflict_policy decides (by default it is kept as a conflict copy)")

    def _alert(self, repre_id: str, file: FileRecord, kind: str, detail: str, expected: str,
               found: str, action: str) -> None:
        self._find(kind, repre_id, file, detail, action)
        self.publish(IntegrityAlert(
            self.now, self.project, repre_id, file.id, file.path, self.site,
            detail=f"{file.path} on site '{self.site}' {detail}", expected=expected,
            found=found, action=action))

    def _find(self, kind: str, repre_id: str, file: FileRecord, detail: str,
              action: str = "") -> None:
        self.report.add(Finding(kind, self.project, repre_id, file.id, file.path, detail, action))


def _fetch_again(project: str, repre_id: str, file: FileRecord, site: str) -> str:
    """What to do about a bad copy: fetch it again from a site that has it, or, when this
    was the only copy, re-publish (a reset would leave no copy to fetch from)."""
    others = [s.name for s in file.sites if s.available and s.name != site]
    if not others:
        return ("no other site has this file, so it cannot be fetched again: re-publish it "
                "(do not reset this site, it holds the only copy)")
    return (f"fetch a good copy from {others[0]}: sitesync reset --project {project} "
            f"--repre {repre_id} --file {file.id} --site {site}")


def _known_checksum(file: FileRecord, site: str) -> str | None:
    """The content checksum recorded for the file: this site's own, else any site's."""
    own = file.site(site)
    if own is not None and own.available and own.checksum:
        return own.checksum
    return next((s.checksum for s in file.sites if s.available and s.checksum), None)


def _hash(provider: Provider, path: str) -> str:
    hasher = hashlib.new(CHECKSUM_ALGORITHM)
    with provider.open_reader(path, 0) as reader:
        while chunk := reader.read(_READ):
            hasher.update(chunk)
    return f"{CHECKSUM_ALGORITHM}:{hasher.hexdigest()}"
