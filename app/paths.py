"""Where SiteSync keeps its files: platformdirs locations, each overridable by an env var.

These are functions, not constants, and they read the environment when they are called.
That is why a test can point everything at ``tmp_path`` with ``monkeypatch.setenv`` after
import, and why a second engine on one machine can run with its own ``SITESYNC_DATA_DIR``.

Directories are created when first asked for, owner-only (0o700): the data dir holds the
embedded database and the state of transfers, the config dir may hold passwords.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from app.errors import ConfigError

__all__ = [
    "APP_NAME",
    "ENV_CONFIG",
    "ENV_DATA_DIR",
    "ENV_LOG_DIR",
    "config_path",
    "data_dir",
    "ensure_private_dir",
    "log_dir",
    "state_dir",
]

APP_NAME = "sitesync"
ENV_CONFIG = "SITESYNC_CONFIG"
ENV_DATA_DIR = "SITESYNC_DATA_DIR"
ENV_LOG_DIR = "SITESYNC_LOG_DIR"

_PRIVATE_DIR_MODE = 0o700


def config_path() -> Path:
    """The settings file: ``$SITESYNC_CONFIG`` if set, else ``<user config dir>/settings.json``.

    Not created here: the settings loader writes the defaults there on first use.
    """
    override = _env_path(ENV_CONFIG)
    if override is not None:
        return override
    # appauthor=False: on Windows, %LOCALAPPDATA%\sitesync rather than ...\sitesync\sitesync.
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "settings.json"


def data_dir() -> Path:
    """Embedded database, demo sites and state: ``$SITESYNC_DATA_DIR`` or the user data dir."""
    override = _env_path(ENV_DATA_DIR)
    path = override or Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return _usable_data_dir(path)


def log_dir() -> Path:
    """Log files: ``$SITESYNC_LOG_DIR`` or the platform's user log dir."""
    override = _env_path(ENV_LOG_DIR)
    path = override or Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))
    return ensure_private_dir(path)


def state_dir() -> Path:
    """Small state files the engine keeps between runs (``data_dir()/state``)."""
    return _usable_data_dir(data_dir() / "state")


def _usable_data_dir(path: Path) -> Path:
    """:func:`ensure_private_dir` for the data folder, whose absence stops every command:
    a folder the user cannot create (a service whose ``SITESYNC_DATA_DIR`` belongs to
    root, a mistyped path) is a settings problem with a fix, not a traceback. (The log
    folder is optional: :func:`app.logs.log_to_file` carries on without it.)"""
    try:
        return ensure_private_dir(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot create SiteSync's data folder {path}: {exc.strerror or exc}",
            fix=f"create it for the user running SiteSync, or set {ENV_DATA_DIR} to a folder "
            "that user can write",
            key=ENV_DATA_DIR,
        ) from None


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents as owner-only directories; return it.

    Only directories created here get 0o700: an existing folder the user chose (a shared
    NAS path in ``SITESYNC_DATA_DIR``) keeps the permissions it has.
    """
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=_PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # another process made it between our check and mkdir
        # mkdir's mode is filtered by the umask; owner-only must not depend on it.
        os.chmod(directory, _PRIVATE_DIR_MODE)
    return path


def _env_path(name: str) -> Path | None:
    """An env var as an absolute path; unset or empty means "not overridden"."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    return Path(value).expanduser().absolute()
