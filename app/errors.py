"""Error kinds, named by how they are handled rather than where they come from.

A driver's exception (OSError, pymongo, HTTP) never crosses a provider or store boundary
unclassified: providers raise :class:`TransientError` (retry with back-off) or
:class:`PermanentError` (retrying will not help; the message says what to fix), and the
engine only ever branches on these kinds.
"""

from __future__ import annotations

__all__ = [
    "CancelledTransfer",
    "ConfigError",
    "DocumentError",
    "IntegrityError",
    "PathEscapeError",
    "PermanentError",
    "SiteSyncError",
    "SiteUnavailableError",
    "StoreUnavailableError",
    "TransientError",
    "UserFixableError",
]


class SiteSyncError(Exception):
    """Base of every error SiteSync raises on purpose; its text is meant for users."""


class UserFixableError(SiteSyncError):
    """Something the user must change; ``fix`` says what, ``key`` names the setting."""

    def __init__(self, message: str, fix: str = "", key: str = "") -> None:
        self.message = message
        self.fix = fix
        self.key = key
        text = message if not fix else f"{message}. Fix: {fix}"
        super().__init__(text)


class ConfigError(UserFixableError):
    """Settings that cannot be used: the key and the fix are always named."""


class DocumentError(SiteSyncError):
    """A database document that does not have the shape SiteSync needs.

    Names the project and document so an admin can find it; the document is left as it is.
    """


class StoreUnavailableError(SiteSyncError):
    """The database cannot be reached right now; the engine waits and tries again."""


class TransientError(SiteSyncError):
    """Worth retrying later (network drop, timeout, 5xx, rate limit).

    ``retry_after_s`` carries a server's hint (HTTP Retry-After) when there is one.
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SiteUnavailableError(TransientError):
    """The whole site cannot take transfers for a while (Google Drive's daily upload cap,
    a full drive, an account that stays rate-limited).

    It is not the file's fault, so the engine gives the file back without counting a try,
    holds every transfer to or from ``site`` for ``retry_after_s`` seconds and shows the
    message until then; retrying each file in turn would only burn their tries.
    """

    def __init__(self, message: str, site: str, retry_after_s: float) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.site = site


class PermanentError(SiteSyncError):
    """Retrying will not help until someone changes something (missing source,
    permission denied, bad root, full disk). Counts as a try and marks the file Failed."""


class IntegrityError(PermanentError):
    """A published file is not what was published: it changed (size or content) after it
    was recorded, on ``site``. The engine reports it as an IntegrityAlert event; retrying
    cannot help, someone has to re-publish or fetch a good copy."""

    def __init__(self, message: str, *, site: str = "", path: str = "", expected: str = "",
                 found: str = "") -> None:
        super().__init__(message)
        self.site = site
        self.path = path
        self.expected = expected
        self.found = found


class PathEscapeError(PermanentError):
    """A path that would leave its site root (`..`, absolute parts, symlinks, drive letters)."""


class CancelledTransfer(SiteSyncError):
    """A transfer stopped on purpose (pause, shutdown): not a failure, no try is counted."""
