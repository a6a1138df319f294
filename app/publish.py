"""Register files that already exist on a site as a representation, as OpenPype's
integrator does, so studios without OpenPype can use SiteSync (and admins can register
already-published files).

The document gets exactly OpenPype's shape: rootless `{root[name]}/…` paths, `size`,
OpenPype's `hash` ("<basename>|<mtime>|<size>" with dots as commas), and a `sites`
skeleton: the publishing site available (with SiteSync's content checksum), the remote
site and the always-accessible sites queued.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

from bson import ObjectId

from app.errors import UserFixableError
from app.model import FileRecord, Representation, SiteState
from providers.base import CHECKSUM_ALGORITHM

__all__ = ["build_representation", "openpype_hash", "rootless_path"]


def openpype_hash(path: Path) -> str:
    """OpenPype's `source_hash`: not a content hash, but what OpenPype tools compare."""
    stat = path.stat()
    return f"{path.name}|{stat.st_mtime}|{stat.st_size}".replace(".", ",")


def rootless_path(path: Path, roots: Mapping[str, str]) -> str:
    """`{root[name]}/relative/path` for a file under one of the site's roots."""
    real = Path(os.path.realpath(path))
    for name, root in sorted(roots.items(), key=lambda kv: -len(kv[1])):
        root_real = Path(os.path.realpath(root))
        if real == root_real or root_real in real.parents:
            relative = real.relative_to(root_real).as_posix()
            return f"{{root[{name}]}}/{relative}"
    listed = ", ".join(f"{n}={r}" for n, r in roots.items()) or "none"
    raise UserFixableError(
        f"{path} is not under any root of the publishing site (roots: {listed})",
        fix="move the files under a root, or add a root for their folder in the site settings",
    )


def _checksum(path: Path) -> str:
    hasher = hashlib.new(CHECKSUM_ALGORITHM)
    with open(path, "rb") as stream:
        while chunk := stream.read(4 * 1024 * 1024):
            hasher.update(chunk)
    return f"{CHECKSUM_ALGORITHM}:{hasher.hexdigest()}"


def build_representation(
    project: str,
    files: Iterable[Path],
    roots: Mapping[str, str],
    *,
    asset: str,
    subset: str,
    version: int,
    name: str,
    family: str,
    publish_site: str,
    queued_sites: Iterable[str],
    now: datetime,
    priority: int | None = None,
) -> Representation:
    """A new representation for ``files`` (which must exist under ``roots``)."""
    records = []
    queued = [s for s in dict.fromkeys(queued_sites) if s and s != publish_site]
    for path in files:
        path = Path(path)
        if not path.is_file():
            raise UserFixableError(f"{path} is not a file", fix="check the path")
        available = SiteState(
            name=publish_site, created_dt=now, id=path.name, checksum=_checksum(path),
            priority=priority,
        )
        records.append(
            FileRecord(
                id=str(ObjectId()),
                path=rootless_path(path, roots),
                size=path.stat().st_size,
                hash=openpype_hash(path),
                sites=(available, *(SiteState(name=s) for s in queued)),
            )
        )
    if not records:
        raise UserFixableError("no files given", fix="list the files to publish")
    ext = Path(records[0].path).suffix.lstrip(".")
    context = {
        "project": {"name": project, "code": project[:3]},
        "asset": asset,
        "subset": subset,
        "version": version,
        "representation": name,
        "family": family,
        "ext": ext,
    }
    return Representation(
        id=str(ObjectId()), project=project, context=context, files=tuple(records),
        parent=str(ObjectId()), name=name, created_dt=now,
    )
