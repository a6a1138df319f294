"""Builders for OpenPype-shaped representations used across the test suites."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bson import ObjectId

from app.model import FileRecord, Representation, SiteState

T0 = datetime(2024, 3, 1, 10, 0, 0, tzinfo=UTC)


def oid() -> str:
    return str(ObjectId())


def make_repre(
    project: str = "demo",
    asset: str = "sh010",
    subset: str = "renderMain",
    version: int = 1,
    name: str = "exr",
    files: int = 2,
    sites: dict[str, dict] | None = None,
    size: int = 1000,
) -> Representation:
    """A representation whose every file carries the same `sites` skeleton.

    ``sites`` maps a site name to SiteState keyword arguments, e.g.
    ``{"studio": {"created_dt": T0}, "gdrive": {}}`` (published on studio, queued on gdrive),
    which is exactly what OpenPype's integrator writes.
    """
    sites = {"studio": {"created_dt": T0}, "gdrive": {}} if sites is None else sites
    records = []
    for i in range(files):
        path = (
            f"{{root[work]}}/{project}/shots/{asset}/publish/render/{subset}/v{version:03d}/"
            f"{asset}_{subset}_v{version:03d}.{1001 + i}.{name}"
        )
        records.append(
            FileRecord(
                id=oid(),
                path=path,
                size=size + i,
                hash=f"{asset}_{subset},{1001 + i},{name}|1699033513,68|{size + i}",
                sites=tuple(SiteState(name=n, **kw) for n, kw in sites.items()),
            )
        )
    return Representation(
        id=oid(),
        project=project,
        context={
            "project": {"name": project, "code": project[:2]},
            "asset": asset,
            "subset": subset,
            "version": version,
            "representation": name,
            "family": "render",
            "ext": name,
        },
        files=tuple(records),
        parent=oid(),
        name=name,
    )


def legacy_doc(asset: str = "legacy", sites: dict | None = None, files: int = 2) -> dict:
    """A Pype-2 style document whose `sites` is a dict keyed by site name, as produced by
    the old README's `$set {"files.$[].sites.MY_SITE": {}}` command."""
    sites = {"studio": {"created_dt": T0.replace(tzinfo=None)}} if sites is None else sites
    return {
        "_id": ObjectId(),
        "type": "representation",
        "parent": ObjectId(),
        "name": "ma",
        "context": {"project": {"name": "demo", "code": "dm"}, "asset": asset,
                    "subset": "modelMain", "version": 3, "representation": "ma"},
        "files": [
            {"_id": ObjectId(), "path": f"{{root[work]}}/demo/assets/{asset}/v003/{asset}_{i}.ma",
             "size": 100 + i, "hash": f"{asset},ma|1592468963,24|{100 + i}",
             "sites": {name: dict(entry) for name, entry in sites.items()}}
            for i in range(files)
        ],
    }


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
