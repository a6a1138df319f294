"""OpenPype representation documents <-> :mod:`app.model`, in both directions. Pure.

Reads what OpenPype and its HOWTOs write:

* `files[].sites` as a list of `{name, ...}` entries (OpenPype 3), or as the legacy
  dict `{"gdrive": {}, "studio": {"created_dt": ...}}` that the old README's
  `$set files.$[].sites.MY_SITE` command produces;
* naive datetimes (OpenPype's `datetime.now()`), BSON dates, or ISO strings;
* `tries` and `priority` stored as numbers or numeric text (OpenPype's settings are text).

Writes only the list form. SiteSync's own fields are `sitesync_*` keys on the same site
entry, beside OpenPype's, so OpenPype keeps reading and writing the document.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from app.errors import DocumentError
from app.model import FileRecord, Representation, SiteState

__all__ = [
    "KEPT_ON_RESET",
    "SITESYNC_KEYS",
    "file_to_doc",
    "parse_datetime",
    "parse_file",
    "parse_representation",
    "parse_sites",
    "representation_to_doc",
    "site_to_doc",
]

#: Keys SiteSync adds to a site entry. Reset removes them together with OpenPype's.
SITESYNC_KEYS = (
    "sitesync_lease_owner",
    "sitesync_lease_until",
    "sitesync_checksum",
    "sitesync_next_attempt_dt",
    "sitesync_permanent",
    "sitesync_atomic",
    "sitesync_staged_dt",
)
#: SiteSync keys a reset keeps, like OpenPype's `priority`: the user's choice of mode.
KEPT_ON_RESET = ("sitesync_atomic",)


def parse_datetime(value: Any) -> datetime | None:
    """A timestamp as aware UTC, or None. Naive values are taken as UTC (pymongo's rule)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):  # NaN, infinite, beyond year 9999
            raise ValueError(f"not a date: {value!r}") from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not a date: {value!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"not a date: {value!r}")


#: Whole numbers must fit a 64-bit integer: MongoDB and SQLite hold no larger ones.
INT64_MAX = 2**63 - 1


def _parse_int(value: Any, what: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a whole number, not {value!r}")
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdecimal():
        number = int(value.strip())
    if number is None:
        raise ValueError(f"{what} must be a whole number, not {value!r}")
    if not -INT64_MAX <= number <= INT64_MAX:
        raise ValueError(f"{what} {value!r} is out of range")
    return number


def _text_or_none(value: Any) -> str | None:
    """A SiteSync text field (lease owner, checksum); anything else is not ours: ignored."""
    return value if isinstance(value, str) and value else None


def _parse_progress(value: Any) -> float | None:
    # OpenPype writes "" on failure and a float while moving.
    if isinstance(value, bool) or value is None or value == "":
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _parse_site(name: str, entry: Mapping[str, Any]) -> SiteState:
    provider_id = entry.get("id")
    return SiteState(
        name=name,
        created_dt=parse_datetime(entry.get("created_dt")),
        id=None if provider_id is None else str(provider_id),
        tries=_parse_int(entry.get("tries"), "tries") or 0,
        error=None if entry.get("error") is None else str(entry.get("error")),
        last_failed_dt=parse_datetime(entry.get("last_failed_dt")),
        progress=_parse_progress(entry.get("progress")),
        paused=bool(entry.get("paused", False)),
        priority=_parse_int(entry.get("priority"), "priority"),
        lease_owner=_text_or_none(entry.get("sitesync_lease_owner")),
        lease_until=parse_datetime(entry.get("sitesync_lease_until")),
        checksum=_text_or_none(entry.get("sitesync_checksum")),
        next_attempt_dt=parse_datetime(entry.get("sitesync_next_attempt_dt")),
        permanent=bool(entry.get("sitesync_permanent", False)),
        atomic=bool(entry.get("sitesync_atomic", False)),
        staged_dt=parse_datetime(entry.get("sitesync_staged_dt")),
    )


def parse_sites(raw: Any) -> tuple[SiteState, ...]:
    """Both forms of `sites`. Raises ValueError naming the bad entry."""
    if raw is None:
        return ()
    states: list[SiteState] = []
    if isinstance(raw, Mapping):  # legacy: {"gdrive": {}, "studio": {...}}
        for name, entry in raw.items():
            if entry is None:
                entry = {}
            if not isinstance(entry, Mapping):
                raise ValueError(f"site {name!r} must be an object, not {type(entry).__name__}")
            states.append(_parse_site(str(name), entry))
    elif isinstance(raw, list):
        for position, entry in enumerate(raw):
            if not isinstance(entry, Mapping):
                # OpenPype skips non-dict entries as well; they carry no state.
                continue
            name = entry.get("name")
            if not isinstance(name, str) or not name:
                raise ValueError(f"sites[{position}] has no name")
            states.append(_parse_site(name, entry))
    else:
        raise ValueError(f"sites must be a list or an object, not {type(raw).__name__}")
    seen: set[str] = set()
    unique = []
    for state in states:  # a duplicated name would make status ambiguous: first wins
        if state.name not in seen:
            seen.add(state.name)
            unique.append(state)
    return tuple(unique)


def parse_file(raw: Any, position: int) -> FileRecord:
    if not isinstance(raw, Mapping):
        raise ValueError(f"files[{position}] must be an object")
    path = raw.get("path")
    if not isinstance(path, str) or not path:
        raise ValueError(f"files[{position}] has no path")
    file_id = raw.get("_id")
    if file_id is None:
        raise ValueError(f"files[{position}] has no _id")
    try:
        sites = parse_sites(raw.get("sites"))
    except ValueError as exc:
        raise ValueError(f"files[{position}]: {exc}") from None
    size = _parse_int(raw.get("size"), f"files[{position}].size") or 0
    return FileRecord(
        id=str(file_id), path=path, size=size, hash=str(raw.get("hash") or ""), sites=sites
    )


def parse_representation(doc: Mapping[str, Any], project: str) -> Representation:
    """Model of an OpenPype representation document.

    Raises DocumentError naming the project and document id, and saying what is wrong,
    so an admin can find and fix it; nothing is changed in the database.
    """
    doc_id = doc.get("_id")
    try:
        files_raw = doc.get("files", [])
        if not isinstance(files_raw, list):
            raise ValueError("files must be a list")
        files = tuple(parse_file(f, i) for i, f in enumerate(files_raw))
        context = doc.get("context") or {}
        if not isinstance(context, Mapping):
            raise ValueError("context must be an object")
        created = doc.get("sitesync_created_dt")
        if created is None and hasattr(doc_id, "generation_time"):
            created = doc_id.generation_time
        return Representation(
            id=str(doc_id),
            project=project,
            context=dict(context),
            files=files,
            parent=None if doc.get("parent") is None else str(doc.get("parent")),
            name=str(doc.get("name") or context.get("representation") or ""),
            created_dt=parse_datetime(created),
        )
    except ValueError as exc:
        raise DocumentError(
            f"representation {doc_id} in project {project!r} is malformed: {exc}. "
            "SiteSync leaves it untouched; fix the document or republish it"
        ) from None


def site_to_doc(state: SiteState) -> dict[str, Any]:
    """OpenPype list-form entry; only keys with a value are written (OpenPype tests
    `created_dt` with `$exists`, so a null would read as available)."""
    doc: dict[str, Any] = {"name": state.name}
    if state.created_dt is not None:
        doc["created_dt"] = state.created_dt
    if state.id is not None:
        doc["id"] = state.id
    if state.tries:
        doc["tries"] = state.tries
    if state.error is not None:
        doc["error"] = state.error
    if state.last_failed_dt is not None:
        doc["last_failed_dt"] = state.last_failed_dt
    if state.progress is not None:
        doc["progress"] = state.progress
    if state.paused:
        doc["paused"] = True
    if state.priority is not None:
        doc["priority"] = state.priority
    if state.lease_owner is not None:
        doc["sitesync_lease_owner"] = state.lease_owner
    if state.lease_until is not None:
        doc["sitesync_lease_until"] = state.lease_until
    if state.checksum is not None:
        doc["sitesync_checksum"] = state.checksum
    if state.next_attempt_dt is not None:
        doc["sitesync_next_attempt_dt"] = state.next_attempt_dt
    if state.permanent:
        doc["sitesync_permanent"] = True
    if state.atomic:
        doc["sitesync_atomic"] = True
    if state.staged_dt is not None:
        doc["sitesync_staged_dt"] = state.staged_dt
    return doc


def file_to_doc(record: FileRecord) -> dict[str, Any]:
    return {
        "_id": record.id,
        "path": record.path,
        "size": record.size,
        "hash": record.hash,
        "sites": [site_to_doc(s) for s in record.sites],
    }


def representation_to_doc(repre: Representation) -> dict[str, Any]:
    """Document as OpenPype's integrator writes it (ids still as text; the Mongo store
    turns 24-hex ids into ObjectIds)."""
    doc: dict[str, Any] = {
        "_id": repre.id,
        "type": "representation",
        "schema": "openpype:representation-2.0",
        "parent": repre.parent,
        "name": repre.name or repre.representation,
        "context": dict(repre.context),
        "data": {"path": repre.files[0].path if repre.files else ""},
        "files": [file_to_doc(f) for f in repre.files],
    }
    if repre.created_dt is not None:
        doc["sitesync_created_dt"] = repre.created_dt
    return doc
