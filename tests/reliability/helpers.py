"""Shared by the in-process reliability tests: settings, publishing and checks on a
SyncEnv (tests/integration/conftest.py)."""

from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from app.publish import build_representation
from app.settings import load_settings
from tests.integration.conftest import LOCAL_ID, write_settings

STUDIO = "studio"
PREFIX = "{root[work]}/"


def configure(env, retry_cnt: int, **engine: object) -> None:
    write_settings(env.settings_path, env.roots, **engine)
    raw = json.loads(env.settings_path.read_text())
    raw["retry_cnt"] = retry_cnt
    env.settings_path.write_text(json.dumps(raw))
    env.settings = load_settings(env.settings_path)


def publish(env, site: str, asset: str, sizes: list[int], rng: random.Random,
            checksum: bool = True) -> str:
    """Files of ``sizes`` on ``site``, queued for the other site. Without ``checksum`` the
    document looks like OpenPype's own publish (no SiteSync checksum to check against)."""
    other = STUDIO if site == LOCAL_ID else LOCAL_ID
    folder = env.roots[site] / "demo" / asset / "v001"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, size in enumerate(sizes):
        path = folder / f"{asset}.{1001 + i}.exr"
        path.write_bytes(rng.randbytes(size))
        paths.append(path)
    repre = build_representation(
        "demo", paths, {"work": str(env.roots[site])}, asset=asset, subset="renderMain",
        version=1, name="exr", family="render", publish_site=site, queued_sites=(other,),
        now=datetime.now(timezone.utc),
    )
    if not checksum:
        files = tuple(replace(f, sites=tuple(replace(s, checksum=None) for s in f.sites))
                      for f in repre.files)
        repre = replace(repre, files=files)
    env.store.ensure_project("demo")
    return env.store.insert_representation(repre)


def local(env, site: str, rootless: str) -> Path:
    return env.roots[site] / rootless[len(PREFIX):]


def all_synced(env, repre_ids: list[str]) -> bool:
    return all(all(s.available for s in f.sites)
               for r in repre_ids for f in env.store.get_representation("demo", r).files)


#: Multiplies rounds and examples for long local runs (bench/reliability_report.py); 1 in CI.
SCALE = max(1, int(os.environ.get("SITESYNC_RELIABILITY_SCALE", "1")))


def report(test: str, **figures: object) -> None:
    """Append one JSON line of figures to $SITESYNC_RELIABILITY_REPORT, if set: what a run
    tried and how often, for the table in docs/reliability.md."""
    target = os.environ.get("SITESYNC_RELIABILITY_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps({"test": test, **figures}, default=str) + "\n")
