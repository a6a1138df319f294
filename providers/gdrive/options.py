"""A Drive site's settings, checked once when the provider is built.

Every problem is a :class:`ConfigError` naming the settings key and the fix, so a bad
site shows up in `sitesync doctor` and in the engine's status line instead of failing
each file in turn.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import ConfigError
from providers.paths import current_platform

__all__ = ["DEFAULT_API_URL", "MULTIPART_MAX", "UNIT", "DriveOptions", "parse_options"]

#: Google's API root; the discovery document's ``rootUrl``.
DEFAULT_API_URL = "https://www.googleapis.com/"
#: Resumable chunks must be multiples of this (Drive's rule for all but the last chunk).
UNIT = 256 * 1024
#: Files up to this size go up in one multipart request (Google: "5 MB or less").
MULTIPART_MAX = 5 * 1024 * 1024

_DEFAULTS: dict[str, Any] = {
    "chunk_size": 8 * 1024 * 1024,
    "download_chunk_size": 16 * 1024 * 1024,
    "max_calls_per_s": 10.0,
    "max_backoff_s": 64.0,
    "max_retries": 8,
    "upload_limit_wait_s": 3600.0,
    "timeout_s": 120.0,
}
_ENV = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class DriveOptions:
    """See docs/providers/gdrive.md for what each one means."""

    credentials_path: str
    api_url: str
    impersonate: str
    chunk_size: int
    download_chunk_size: int
    max_calls_per_s: float
    max_backoff_s: float
    max_retries: int
    upload_limit_wait_s: float
    timeout_s: float


def _error(site: str, key: str, message: str, fix: str) -> ConfigError:
    return ConfigError(f"site '{site}': {message}", key=f"sites.{site}.{key}", fix=fix)


def _expand(path: str) -> str:
    """``~``, ``$VAR`` and OpenPype's ``{VAR}`` (only for variables that are set)."""
    path = _ENV.sub(lambda m: os.environ.get(m.group(1), m.group(0)), path)
    return os.path.expanduser(os.path.expandvars(path))


def _credentials_path(site: str, value: Any) -> str:
    key = "credentials_url"
    fix = ("set it to the JSON key file of the Google service account "
           "(see docs/providers/gdrive.md, 'Service account')")
    if isinstance(value, Mapping):  # OpenPype's {"windows": ..., "linux": ..., "darwin": ...}
        value = value.get(current_platform())
    if not isinstance(value, str) or not value.strip():
        raise _error(site, key, f"no service account key file is set for {current_platform()}", fix)
    return _expand(value)


def _whole(site: str, config: Mapping[str, Any], key: str, minimum: int) -> int:
    value = config.get(key)
    if value is None:
        return int(_DEFAULTS[key])
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _error(site, key, f"{key} must be a whole number >= {minimum}, not {value!r}",
                     f"set it to e.g. {_DEFAULTS[key]} or remove it for the default")
    return value


def _number(site: str, config: Mapping[str, Any], key: str, minimum: float) -> float:
    value = config.get(key)
    if value is None:
        return float(_DEFAULTS[key])
    try:
        number = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not number >= minimum or number == float("inf"):
        raise _error(site, key, f"{key} must be a number >= {minimum:g}, not {value!r}",
                     f"set it to e.g. {_DEFAULTS[key]:g} or remove it for the default")
    return number


def parse_options(site: str, config: Mapping[str, Any]) -> DriveOptions:
    """The site's Drive options with defaults; ConfigError naming key and fix."""
    chunk = _whole(site, config, "chunk_size", UNIT)
    if chunk % UNIT:
        raise _error(site, "chunk_size", f"chunk_size {chunk} is not a multiple of 256 KiB ({UNIT} bytes)",
                     f"use a multiple of {UNIT}, e.g. {_DEFAULTS['chunk_size']} (8 MiB)")
    api_url = config.get("api_url") or DEFAULT_API_URL
    if not isinstance(api_url, str) or not re.match(r"^https?://[^/\s]+(/\S*)?$", api_url):
        raise _error(site, "api_url", f"api_url must be an http(s) URL, not {api_url!r}",
                     f"remove it to use Google ({DEFAULT_API_URL}) or set your proxy's URL")
    impersonate = config.get("impersonate") or ""
    if not isinstance(impersonate, str) or (impersonate and "@" not in impersonate):
        raise _error(site, "impersonate", f"impersonate must be a user's e-mail, not {impersonate!r}",
                     "set the Workspace user whose Drive the service account acts in, or remove it")
    return DriveOptions(
        credentials_path=_credentials_path(site, config.get("credentials_url")),
        api_url=api_url if api_url.endswith("/") else api_url + "/",
        impersonate=impersonate,
        chunk_size=chunk,
        download_chunk_size=_whole(site, config, "download_chunk_size", UNIT),
        max_calls_per_s=_number(site, config, "max_calls_per_s", 0.01),
        max_backoff_s=_number(site, config, "max_backoff_s", 0.0),
        max_retries=_whole(site, config, "max_retries", 0),
        upload_limit_wait_s=_number(site, config, "upload_limit_wait_s", 1.0),
        timeout_s=_number(site, config, "timeout_s", 1.0),
    )
