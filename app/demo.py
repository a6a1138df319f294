"""A demo project with real files, so a fresh install shows SiteSync doing its job.

It publishes a few representations the way a studio would see them: render sequences
and models published on the studio site that this machine subscribed to (downloads),
work the artist published locally (uploads to the studio), and one representation this
machine does not track (shown as "Not available" until the artist adds the site).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from app.publish import build_representation
from app.settings import Settings
from app.store.base import Store

__all__ = ["DEMO_PROJECT", "create_demo"]

DEMO_PROJECT = "demo"

# (asset, subset, family, representation, frames, bytes per file, published on, subscribed)
_PLAN = [
    ("sh010", "renderMain", "render", "exr", 24, 256 * 1024, "studio", True),
    ("sh020", "renderMain", "render", "exr", 12, 512 * 1024, "studio", True),
    ("chair", "modelMain", "model", "abc", 1, 4 * 1024 * 1024, "studio", True),
    ("table", "lookMain", "look", "ma", 1, 64 * 1024, "local", False),
    ("sh030", "animMain", "animation", "abc", 1, 2 * 1024 * 1024, "local", False),
    ("lamp", "modelMain", "model", "abc", 1, 128 * 1024, "studio", False),
]


def create_demo(store: Store, settings: Settings, now: datetime) -> int:
    """Create the demo project (files and records); returns representations created.

    Does nothing if the project already has representations, so running it twice is safe.
    """
    store.ensure_project(DEMO_PROJECT, "dm")
    if store.count_representations(DEMO_PROJECT):
        return 0
    ps = settings.project(DEMO_PROJECT)
    local, studio = ps.active_site, ps.remote_site
    created = 0
    for asset, subset, family, ext, frames, size, where, subscribed in _PLAN:
        site = local if where == "local" else studio
        other = studio if site == local else local
        roots = ps.site(site).roots
        folder = Path(roots["work"]) / DEMO_PROJECT / asset / "publish" / subset / "v001"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for frame in range(frames):
            suffix = f".{1001 + frame:04d}" if frames > 1 else ""
            path = folder / f"{DEMO_PROJECT}_{asset}_{subset}_v001{suffix}.{ext}"
            with open(path, "wb") as stream:
                stream.write(os.urandom(size))
            paths.append(path)
        queued = [other] if (where == "local" or subscribed) else []
        repre = build_representation(
            DEMO_PROJECT, paths, roots, asset=asset, subset=subset, version=1, name=ext,
            family=family, publish_site=site, queued_sites=queued, now=now,
        )
        store.insert_representation(repre)
        created += 1
    return created
