"""Read, create and safely rewrite the settings file.

The file is the one thing a user cannot lose, so it is only ever replaced whole and
only with a document that passed validation: written to a temporary file beside it,
fsynced, then renamed over it (a crash leaves the old file or the new one, never half
of one). A file that cannot be parsed is reported with its line and column and left
exactly as it is. The first start writes a working default configuration with a fresh
``local_id``, created with a hard link so two processes starting at once (tray and
engine) cannot end up with two different ids.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from app import paths
from app.errors import ConfigError
from app.redact import add_secret, redact
from app.settings.build import build_settings
from app.settings.local_id import ENV_LOCAL_ID, env_local_id, generate_local_id
from app.settings.resolved import Settings
from app.settings.schema import DEFAULT_SITE, ENGINE_OPTIONS, GLOBAL_OPTIONS, current_platform
from app.settings.validate import collect_secrets, validate

__all__ = [
    "InvalidSettingsError",
    "default_settings",
    "load_settings",
    "redact",
    "save_settings",
    "update_settings",
]

_FILE_MODE = 0o600
PathLike = str | os.PathLike[str]


class InvalidSettingsError(ConfigError):
    """The settings file has problems; ``problems`` lists each one with its key and fix."""

    def __init__(self, message: str, fix: str, key: str,
                 problems: Sequence[ConfigError]) -> None:
        super().__init__(message, fix=fix, key=key)
        self.problems = tuple(problems)


def default_settings(data_dir: PathLike) -> dict[str, Any]:
    """A configuration that works out of the box, with a fresh ``local_id``.

    Two folder sites under ``data_dir``: this machine ("local", where work is published)
    and "studio" (what it syncs with), on the embedded database. A new install can sync
    at once; pointing "studio" at the real studio storage is one edit.
    """
    base = Path(data_dir) / "sites"
    raw: dict[str, Any] = {o.key: _plain(o.default) for o in GLOBAL_OPTIONS}
    raw.update(
        local_id=generate_local_id(),
        publish_site="local",
        remote_site=DEFAULT_SITE,
        sites={
            DEFAULT_SITE: {"provider": "local_drive",
                           "root": {"work": str(base / DEFAULT_SITE / "work")}},
            "local": {"provider": "local_drive", "root": {"work": str(base / "local" / "work")}},
        },
        projects={},
        engine={o.key: o.default for o in ENGINE_OPTIONS},
    )
    return raw


def load_settings(path: PathLike | None = None, *, platform: str | None = None) -> Settings:
    """The settings in ``path`` (default: :func:`app.paths.config_path`).

    A missing file is created with :func:`default_settings`; a file without a
    ``local_id`` gets one, saved once so it never changes again. Raises one ConfigError
    listing every problem, one per line; never a parse traceback.
    """
    file = _resolve(path)
    raw = _read_or_create(file)
    generated = _ensure_local_id(raw)
    settings = _build(raw, file, platform)
    if generated:
        try:
            save_settings(raw, file)
        except ConfigError as exc:
            # A server's settings are often root-owned and read-only to the service user:
            # say which key is missing rather than only that the file cannot be written.
            raise ConfigError(
                f"settings file {file} has no local_id, and the new one could not be saved "
                f"({exc.message})",
                fix='add "local_id": "<a name for this machine, e.g. render-server-01>" to '
                "the file, or let the user running SiteSync write it",
                key="local_id",
            ) from None
    return settings


def update_settings(
    mutator: Callable[[dict[str, Any]], None],
    path: PathLike | None = None,
    *,
    platform: str | None = None,
) -> Settings:
    """Change the settings file: load it, let ``mutator`` edit the document, validate, save.

    Nothing is written when the result is invalid (the ConfigError lists why), so a
    settings dialog or a CLI command cannot leave a file SiteSync refuses to start with.
    """
    file = _resolve(path)
    raw = _read_or_create(file)
    _ensure_local_id(raw)
    mutator(raw)
    settings = _build(raw, file, platform, outcome="The change was not saved")
    save_settings(raw, file)
    return settings


def save_settings(raw: dict[str, Any], path: PathLike | None = None) -> Path:
    """Write ``raw`` to ``path`` atomically, readable by the owner only (it may hold
    passwords). Does not validate; :func:`update_settings` does."""
    file = _resolve(path)
    data = _serialize(raw, file)
    try:
        paths.ensure_private_dir(file.parent)
        tmp = _write_temp(data, file)
        try:
            os.replace(tmp, file)
        except BaseException:
            _unlink(tmp)
            raise
        _fsync_dir(file.parent)
    except OSError as exc:
        raise _write_error(file, exc) from None
    return file


def _build(
    raw: Any, file: Path, platform: str | None, outcome: str = "SiteSync left the file unchanged"
) -> Settings:
    """Validate then resolve; all problems are raised together."""
    platform = platform or current_platform()
    local_id = env_local_id()
    problems = validate(raw, platform=platform, local_id=local_id)
    if problems:
        raise _summary(file, problems, outcome)
    for secret in collect_secrets(raw):
        add_secret(secret)
    return build_settings(raw, file, platform=platform, local_id=local_id or raw["local_id"])


def _summary(file: Path, problems: Sequence[ConfigError], outcome: str) -> InvalidSettingsError:
    """One error for all problems: a header, one line per problem, then what happened
    (the base class appends ". Fix: ..." to that last line)."""
    count = len(problems)
    lines = "\n".join(f"  - {problem}" for problem in problems)
    noun = "problem" if count == 1 else "problems"
    if any(p.key == ENV_LOCAL_ID for p in problems):
        outcome += f" ({ENV_LOCAL_ID} comes from the environment, not the file)"
    return InvalidSettingsError(
        f"settings file {file} has {count} {noun}:\n{lines}\n{outcome}",
        fix=f"edit {file} and correct the {'key' if count == 1 else 'keys'} above",
        key=problems[0].key if count == 1 else "",
        problems=problems,
    )


def _read_or_create(file: Path) -> Any:
    if not file.exists():
        try:
            defaults = default_settings(paths.data_dir())
        except OSError as exc:
            raise ConfigError(
                f"cannot create the data folder for the default settings: {exc.strerror}",
                fix=f"check permissions, or set {paths.ENV_DATA_DIR} to a writable folder",
            ) from None
        _create(defaults, file)  # loses quietly to a process that created it first
    try:
        text = file.read_text(encoding="utf-8-sig")  # -sig: files saved by Notepad
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"settings file {file} is not UTF-8 text (bad byte at offset {exc.start})",
            fix="save the file as UTF-8; SiteSync left it unchanged",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read settings file {file}: {exc.strerror or exc}",
            fix=f"check the file's permissions, or set {paths.ENV_CONFIG} to another file",
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"settings file {file} is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}",
            fix="correct the file at that place (SiteSync left it unchanged), or move it "
            "away to start from the defaults (this machine then gets a new local_id)",
        ) from None
    except ValueError:  # a number with more digits than int() accepts
        raise ConfigError(f"settings file {file} holds a number too long to read",
                          fix="shorten the number; SiteSync left the file unchanged") from None
    except RecursionError:
        raise ConfigError(f"settings file {file} is nested too deeply to read",
                          fix="remove the deeply nested value; SiteSync left the file "
                          "unchanged") from None


def _ensure_local_id(raw: Any) -> bool:
    """Give a document without a ``local_id`` a new one; True when one was generated."""
    if isinstance(raw, dict) and raw.get("local_id") in (None, ""):
        raw["local_id"] = generate_local_id()
        return True
    return False


def _create(raw: dict[str, Any], file: Path) -> None:
    """Create ``file`` only if it does not exist, atomically, whole or not at all."""
    data = _serialize(raw, file)
    try:
        paths.ensure_private_dir(file.parent)
        tmp = _write_temp(data, file)
        try:
            os.link(tmp, file)  # fails if another process created it meanwhile
        except FileExistsError:
            return
        except OSError:
            # A filesystem without hard links: a plain rename, unless it appeared.
            if not file.exists():
                os.replace(tmp, file)
        finally:
            _unlink(tmp)
        _fsync_dir(file.parent)
    except OSError as exc:
        raise _write_error(file, exc) from None


def _serialize(raw: dict[str, Any], file: Path) -> bytes:
    try:
        text = json.dumps(raw, indent=2, ensure_ascii=False) + "\n"
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates from "\ud800"-style escapes
            return (json.dumps(raw, indent=2) + "\n").encode("ascii")
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigError(
            f"cannot write settings file {file}: {redact(exc)}",
            fix="use only JSON values (text, numbers, true/false, lists, mappings)",
        ) from None


def _write_temp(data: bytes, file: Path) -> str:
    """A fully written, fsynced, owner-only temporary file beside ``file``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp already uses 0o600; say it explicitly
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); Windows cannot open a directory."""
    if os.name == "nt":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename is done anyway
    finally:
        os.close(fd)


def _unlink(tmp: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def _write_error(file: Path, exc: OSError) -> ConfigError:
    return ConfigError(
        f"cannot write settings file {file}: {exc.strerror or exc}",
        fix=f"check the folder's permissions and free space, or set {paths.ENV_CONFIG} "
        "to a writable file",
    )


def _resolve(path: PathLike | None) -> Path:
    return paths.config_path() if path is None else Path(path).expanduser().absolute()


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
