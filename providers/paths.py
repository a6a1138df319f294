"""Rootless paths: parsing `{root[name]}/...`, picking a site's roots, refusing escapes.

OpenPype stores published paths "rootless" (``{root[work]}/demo/sh010/v001/x.exr``) and
each site formats them with its own roots (§3.6 of the sync-model reference: a plain
``str.format`` with ``{"root": roots}``). A plain ``format`` happily produces
``/mnt/work/../../etc/passwd`` or, for ``{root[work]}x``, a *sibling* of the root, so
every provider goes through :func:`split_rootless` instead: it parses the template and
returns the relative part as validated components, which :func:`safe_join` then joins
under the root with the provider's own path flavour (``os.path`` for local folders,
``posixpath`` for SFTP and Drive).

Everything here is pure (no file-system access) so the same rules hold for every
provider; following symlinks is the local provider's job because only it can see them.

The rules are deliberately strict: a component that is refused here is one that a
publish never produces, and a file that fails with a clear message beats one written
outside its root.
"""

from __future__ import annotations

import ntpath
import posixpath
import re
import sys
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

from app.errors import ConfigError, PathEscapeError, PermanentError

__all__ = [
    "DEFAULT_ROOT_NAME",
    "RootSpec",
    "current_platform",
    "is_inside",
    "parse_roots",
    "safe_join",
    "select_root",
    "split_rootless",
]

#: Name given to a root configured as a plain string; AYON does the same (`{"work": root}`).
DEFAULT_ROOT_NAME = "work"

# `{root[name]}` or `{root}`, only at the very start. Root names are anatomy keys: no
# brackets, braces, separators or format specs (``{root[work]!r}`` is not a root).
_TEMPLATE = re.compile(r"\{root(?:\[(?P<name>[^\[\]{}/\\:!]+)\])?\}")
_DRIVE = re.compile(r"^[A-Za-z]:")


def current_platform(platform: str | None = None) -> str:
    """OpenPype's platform key ("windows", "darwin", "linux") for ``sys.platform``."""
    platform = sys.platform if platform is None else platform
    if platform.startswith("win") or platform == "cygwin":
        return "windows"
    if platform == "darwin":
        return "darwin"
    return "linux"


class RootSpec:
    """One configured root of a site: its path on this platform, or why there is none.

    A missing or unusable root is kept as an error rather than raised at construction so
    that a site with one bad root still serves files under its other roots, and
    `sitesync doctor` can list every problem at once.
    """

    __slots__ = ("error", "name", "path")

    def __init__(self, name: str, path: str | None, error: str | None = None) -> None:
        self.name = name
        self.path = path
        self.error = error

    def __repr__(self) -> str:
        return f"RootSpec({self.name!r}, {self.path!r}, error={self.error!r})"


def _root_path(site: str, name: str, value: Any, platform: str, pathmod: ModuleType) -> RootSpec:
    key = f"sites.{site}.root.{name}"
    if isinstance(value, Mapping):
        # Multiplatform form {"windows": ..., "linux": ..., "darwin": ...}: normally the
        # settings layer has already picked one, but tolerate the raw OpenPype shape.
        value = value.get(platform)
        if value in (None, ""):
            return RootSpec(
                name,
                None,
                f"root '{name}' of site '{site}' has no path for {platform}; set {key}.{platform}",
            )
    if not isinstance(value, str) or not value:
        return RootSpec(
            name, None, f"root '{name}' of site '{site}' is empty or not a path; set {key}"
        )
    if "\x00" in value:
        return RootSpec(name, None, f"root '{name}' of site '{site}' contains a NUL byte")
    if not pathmod.isabs(value):
        # A relative root would depend on the working directory of whoever runs us.
        return RootSpec(
            name,
            None,
            f"root '{name}' of site '{site}' is not an absolute path ({value!r}); "
            f"set {key} to an absolute path",
        )
    return RootSpec(name, pathmod.normpath(value))


def parse_roots(
    site: str,
    config: Mapping[str, Any],
    *,
    platform: str | None = None,
    pathmod: ModuleType = posixpath,
) -> dict[str, RootSpec]:
    """The site's roots by name from its config's ``root`` entry.

    Accepts ``{"work": "/abs"}`` (the normal, already platform-resolved shape),
    ``{"work": {"linux": ..., "windows": ...}}`` and a plain string (one root, named
    :data:`DEFAULT_ROOT_NAME`). Raises ConfigError only when ``root`` has a shape that
    cannot be read at all; per-root problems are kept in :attr:`RootSpec.error`.
    """
    platform = current_platform(platform)
    raw = config.get("root")
    key = f"sites.{site}.root"
    if raw is None:
        return {}
    if isinstance(raw, str):
        raw = {DEFAULT_ROOT_NAME: raw}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"site '{site}': root must be a mapping of root names to paths, "
            f"not {type(raw).__name__}",
            key=key,
            fix='e.g. {"work": "/mnt/projects"}',
        )
    return {
        str(name): _root_path(site, str(name), value, platform, pathmod)
        for name, value in raw.items()
    }


def select_root(site: str, roots: Mapping[str, RootSpec], name: str | None) -> str:
    """The path of root ``name`` (None: the template was ``{root}``, allowed when the
    site has exactly one root); PermanentError naming the site, the root and the fix."""
    if name is None:
        if len(roots) != 1:
            configured = ", ".join(sorted(roots)) or "none"
            raise PermanentError(
                f"path uses {{root}} but site '{site}' has {len(roots)} roots "
                f"({configured}); publish with {{root[name]}} or configure a single root"
            )
        (spec,) = roots.values()
    else:
        spec = roots.get(name)
        if spec is None:
            configured = ", ".join(sorted(roots)) or "none"
            raise PermanentError(
                f"site '{site}' has no root '{name}' (configured: {configured}); "
                f"add root '{name}' to sites.{site}.root"
            )
    if spec.path is None:
        raise PermanentError(spec.error or f"root '{spec.name}' of site '{site}' is unusable")
    return spec.path


def _check_component(part: str, path: str) -> None:
    def refuse(why: str) -> PathEscapeError:
        return PathEscapeError(f"refusing path {path!r}: {why}")

    if part == "":
        raise refuse("empty path component ('//' or a trailing '/')")
    if "\x00" in part:
        raise refuse("NUL byte in the path")
    if "/" in part:
        raise refuse(f"separator inside component {part!r}")
    if "\\" in part:
        # A separator on Windows: `a\..\..\x` would climb out there.
        raise refuse(f"backslash in component {part!r} (only '/' separates rootless paths)")
    if part.strip(". ") == "":
        # `..` climbs; Windows also treats `...`, `.. ` and friends as `..`/`.`.
        raise refuse(f"component {part!r} is a relative step ('.' or '..')")
    if _DRIVE.match(part):
        raise refuse(f"Windows drive letter in component {part!r}")
    if ":" in part:
        # After a drive letter, the other Windows meaning: alternate data streams.
        raise refuse(f"':' in component {part!r} (drive letter or alternate data stream)")


def split_rootless(path: str) -> tuple[str | None, tuple[str, ...]]:
    """Split ``{root[name]}/a/b.exr`` into ``("name", ("a", "b.exr"))``.

    The root name is None for a bare ``{root}``. Exactly one ``/`` must follow the
    template (``{root[work]}x`` would otherwise name a sibling folder of the root, and
    ``{root[work]}//etc`` an absolute path). PermanentError if the path has no root
    template; PathEscapeError for anything that could leave the root: ``..``/``.``
    components, empty components, backslashes, drive letters, ``:`` and NUL bytes.
    """
    if not isinstance(path, str):
        raise PermanentError(f"path must be a string, not {type(path).__name__}: {path!r}")
    match = _TEMPLATE.match(path)
    if match is None:
        raise PermanentError(
            f"path is not rootless (it must start with {{root[name]}}/): {path!r}; "
            "re-publish it with a rootless path"
        )
    rest = path[match.end() :]
    if not rest.startswith("/"):
        if rest == "":
            raise PathEscapeError(f"refusing path {path!r}: it names the root itself")
        raise PathEscapeError(f"refusing path {path!r}: the root template must be followed by '/'")
    parts = tuple(rest[1:].split("/"))
    for part in parts:
        _check_component(part, path)
    return match.group("name"), parts


def is_inside(root: str, path: str, pathmod: ModuleType = posixpath) -> bool:
    """Whether ``path`` is ``root`` or below it (both absolute; compared as written,
    after normalisation and, on Windows, case folding)."""
    root = pathmod.normcase(pathmod.normpath(root))
    path = pathmod.normcase(pathmod.normpath(path))
    # Both are normalised absolute paths, so a prefix that ends at a separator is a
    # common path (what commonpath would say, at a fraction of its cost; on Windows
    # another drive is never a prefix).
    return path == root or path.startswith(root.rstrip(pathmod.sep) + pathmod.sep)


def safe_join(root: str, parts: Iterable[str], pathmod: ModuleType = posixpath) -> str:
    """``root`` joined with validated ``parts`` (as returned by :func:`split_rootless`).

    Re-validates each part and checks the lexical result stays under ``root``, so a
    caller that built ``parts`` itself cannot escape either. ``pathmod`` is the path
    flavour of the storage (``os.path`` for local folders, ``posixpath`` for SFTP/Drive).
    """
    parts = tuple(parts)
    shown = "/".join(parts)
    if not parts:
        raise PathEscapeError("refusing an empty relative path: it names the root itself")
    for part in parts:
        _check_component(part, shown)
        if pathmod is ntpath and part.rstrip(" .") != part:
            # Win32 silently drops trailing dots/spaces: `x.` and `x` are one file.
            raise PathEscapeError(
                f"refusing path {shown!r}: component {part!r} ends with a dot or space, "
                "which Windows drops"
            )
    joined = pathmod.join(root, *parts)
    if not is_inside(root, joined, pathmod) or pathmod.normcase(
        pathmod.normpath(joined)
    ) == pathmod.normcase(pathmod.normpath(root)):
        raise PathEscapeError(f"refusing path {shown!r}: it resolves outside root {root!r}")
    return joined
