"""Keep credentials out of text a user or a log file will see.

Settings hold SFTP passwords and database URLs with passwords in them, and error
messages, log lines and tracebacks quote settings. Everything meant for humans goes
through :func:`redact` first. Two layers: passwords inside URIs (``user:pw@host``) are
recognised by shape, and secret values read from the settings are registered once with
:func:`add_secret` and replaced wherever they appear.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

__all__ = ["MASK", "add_secret", "clear_secrets", "redact"]

MASK = "***"

#: Shorter values are not registered: masking every "ab" would garble messages while
#: protecting nothing worth calling a secret.
_MIN_SECRET_LEN = 4

# scheme://user:password@ ; the password runs to the LAST '@' of the token, because
# people paste passwords with an unencoded '@' and the part after the first '@' would
# otherwise leak.
_URI_PASSWORD = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s'\"]*):(?P<password>[^\s'\"]*)@"
)
# ?password=...&  / pwd=  / token=  in query strings.
_QUERY_SECRET = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|pass|secret|token|api_key|apikey)=)[^&\s'\"]+",
    re.IGNORECASE,
)

_lock = threading.Lock()
_secrets: set[str] = set()


def add_secret(value: object) -> None:
    """Remember a secret value (a password, a key passphrase) so it is always masked."""
    if isinstance(value, str) and len(value) >= _MIN_SECRET_LEN:
        with _lock:
            _secrets.add(value)


def clear_secrets() -> None:
    """Forget every registered secret (tests; a settings reload registers them again)."""
    with _lock:
        _secrets.clear()


def redact(text: object, secrets: Iterable[str] = ()) -> str:
    """``text`` with URI passwords, secret query parameters and known secrets masked.

    ``secrets`` adds values for this call only (validation uses it before anything is
    registered). Longest values are replaced first, so a secret containing another one
    is not half-masked.
    """
    result = str(text)
    result = _URI_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", result)
    result = _QUERY_SECRET.sub(lambda m: f"{m.group('key')}{MASK}", result)
    with _lock:
        known = set(_secrets)
    known.update(s for s in secrets if isinstance(s, str) and len(s) >= _MIN_SECRET_LEN)
    for secret in sorted(known, key=len, reverse=True):
        result = result.replace(secret, MASK)
    return result
