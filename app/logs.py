"""Log files in the platform log folder (``app.paths.log_dir``), rotated by size.

The tray (``tray.log``) and the headless engine (``serve.log``) both log here: an artist
started the tray from a menu and has no terminal, and a service's journal is often kept
for a few days only. Rotation keeps the folder bounded: ``serve.log`` plus
``serve.log.1`` .. ``.N``, each at most ``max_bytes``.
"""

from __future__ import annotations

import logging
import logging.handlers

from app import paths

__all__ = ["DEFAULT_BACKUPS", "DEFAULT_MAX_BYTES", "LOG_FORMAT", "close_log", "log_to_file"]

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DEFAULT_MAX_BYTES = 5_000_000
DEFAULT_BACKUPS = 5

_log = logging.getLogger(__name__)


def log_to_file(filename: str, *, debug: bool = False, max_bytes: int = DEFAULT_MAX_BYTES,
                backups: int = DEFAULT_BACKUPS) -> logging.handlers.RotatingFileHandler | None:
    """Send the root logger's records (INFO and up; DEBUG with ``debug``) to
    ``log_dir()/filename`` as well, rotated at ``max_bytes`` keeping ``backups`` old files.

    Returns the handler (its ``baseFilename`` is the file; :func:`close_log` ends it), or
    None (with a warning on the console) when the log folder cannot be written: a
    read-only home must not stop the engine.
    """
    try:
        handler = logging.handlers.RotatingFileHandler(
            paths.log_dir() / filename, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    except OSError as exc:
        _log.warning("no log file: %s", exc)
        return None
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.DEBUG if debug else logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(min(root.level, logging.DEBUG if debug else logging.INFO))
    # The console keeps the level the command line chose (warnings unless --debug).
    for other in root.handlers:
        if other is not handler and other.level == logging.NOTSET:
            other.setLevel(logging.DEBUG if debug else logging.WARNING)
    return handler


def close_log(handler: logging.Handler | None) -> None:
    """Stop logging to a file opened by :func:`log_to_file` (a command that returns, such
    as ``serve`` called in-process by tests, must not leave its file open)."""
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        handler.close()
