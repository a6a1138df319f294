"""Check one settings value against its declaration and convert it to what code uses.

Each check returns the Python value (``"3"`` -> 3 for OpenPype's text fields, a
per-platform mapping -> this platform's path) or raises :class:`Invalid` with what is
wrong and what to do; the validator adds the key path. A secret's value is never put in
a message.
"""

from __future__ import annotations

import math
import ntpath
import posixpath
from collections.abc import Mapping
from typing import Any

from app.redact import redact
from app.settings.policy_values import POLICY_KINDS, coerce_policy
from app.settings.schema import PLATFORMS, PROVIDERS, Kind, Option, did_you_mean

__all__ = ["Invalid", "check_site_name", "coerce", "is_absolute_for", "platform_value"]


class Invalid(Exception):
    """A value that cannot be used: what is wrong and what to do about it."""

    def __init__(self, message: str, fix: str, subpath: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        #: Where below the checked key the problem is (a root name), for the key path.
        self.subpath = subpath


def check_site_name(value: object) -> str:
    """A site name becomes a key in OpenPype documents, so Mongo's key rules apply."""
    if not isinstance(value, str):
        raise Invalid(f"must be a site name (text), not {_type_name(value)}",
                      "write the site name in quotes, e.g. \"studio\"")
    if not value.strip():
        raise Invalid("is empty", "set it to a site name, e.g. \"studio\"")
    if value != value.strip() or "." in value or value.startswith("$"):
        raise Invalid(f"{value!r} is not a usable site name",
                      "use letters, digits, '-' and '_' (no dots, no leading '$' or spaces)")
    return value


def platform_value(value: object, platform: str) -> str:
    """A text value, or OpenPype's ``{"windows": .., "linux": .., "darwin": ..}`` form
    resolved for ``platform`` ("" when that platform has no entry)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        _check_platform_keys(value)
        for key, item in value.items():
            if not isinstance(item, str):
                raise Invalid(f"the {key!r} entry must be text, not {_type_name(item)}",
                              "write the path in quotes")
        return str(value.get(platform, ""))
    raise Invalid(f"must be text or a per-platform mapping, not {_type_name(value)}",
                  'write "path" or {"windows": "...", "linux": "...", "darwin": "..."}')


def coerce(option: Option, value: object, *, platform: str) -> Any:
    """The Python value for ``value`` under ``option``; raises :class:`Invalid`."""
    kind = option.kind
    if kind is Kind.TEXT:
        if not isinstance(value, str):
            raise Invalid(f"must be text, not {_type_name(value)}", "write the value in quotes")
        return value
    if kind is Kind.SITE_NAME:
        return "" if option.empty_ok and value == "" else check_site_name(value)
    if kind is Kind.SITE_NAMES:
        if not isinstance(value, list):
            raise Invalid(f"must be a list of site names, not {_type_name(value)}",
                          'write it as ["site1", "site2"]')
        names = []
        for item in value:
            try:
                names.append(check_site_name(item))
            except Invalid as exc:
                raise Invalid(f"entry {exc.message}", exc.fix) from None
        return tuple(names)
    if kind is Kind.WHOLE:
        return _whole(option, value)
    if kind is Kind.NUMBER:
        return _number(option, value)
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise Invalid(f"must be true or false, not {_shown(option, value)}",
                          "write true or false (no quotes)")
        return value
    if kind is Kind.PLATFORM_TEXT:
        return platform_value(value, platform)
    if kind is Kind.DATABASE_URL:
        return _database_url(value)
    if kind is Kind.DATABASE_NAME:
        return _database_name(value)
    if kind is Kind.PROVIDER:
        return _provider(value)
    if kind is Kind.ROOTS:
        return _roots(value, platform)
    if kind in POLICY_KINDS:
        return coerce_policy(kind, value)
    if kind is Kind.FOLDERS:
        return _folders(value, platform)
    raise AssertionError(f"unhandled kind {kind}")  # pragma: no cover


def _whole(option: Option, value: object) -> int:
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and option.text_numbers:
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    if number is None or not _in_range(option, number):
        raise Invalid(f"{_shown(option, value)} is not {_range_text(option, whole=True)}",
                      f"set it to {_range_text(option, whole=True)}")
    return number


def _number(option: Option, value: object) -> float:
    usable = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (isinstance(value, int) or math.isfinite(value))  # int: no float overflow
        and _in_range(option, value)
    )
    if not usable:
        raise Invalid(f"{_shown(option, value)} is not {_range_text(option, whole=False)}",
                      f"set it to {_range_text(option, whole=False)}")
    try:
        return float(value)  # type: ignore[arg-type]
    except OverflowError:
        raise Invalid("is too large", f"set it to {_range_text(option, whole=False)}") from None


def _in_range(option: Option, number: float) -> bool:
    if option.minimum is not None:
        if option.strict_minimum and number <= option.minimum:
            return False
        if not option.strict_minimum and number < option.minimum:
            return False
    return option.maximum is None or number <= option.maximum


def _range_text(option: Option, *, whole: bool) -> str:
    noun = "a whole number" if whole else "a number"
    low, high = option.minimum, option.maximum
    if low is not None and high is not None and not option.strict_minimum:
        return f"{noun} from {_num(low)} to {_num(high)}"
    parts = [noun]
    if low is not None:
        parts.append(f"{'>' if option.strict_minimum else '≥'} {_num(low)}")
    if high is not None:
        parts.append(f"and ≤ {_num(high)}" if low is not None else f"≤ {_num(high)}")
    return " ".join(parts)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_MONGO_SCHEMES = ("mongodb://", "mongodb+srv://")


def _database_url(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be text, not {_type_name(value)}",
                      'use "" for the embedded database or a "mongodb://..." URI')
    url = value.strip()
    if url and not url.lower().startswith(_MONGO_SCHEMES):
        scheme = url.split("://", 1)[0] if "://" in url else ""
        what = f"scheme {scheme + '://'!r}" if scheme else f"{redact(url)!r}"
        raise Invalid(f"{what} is not a MongoDB URI",
                      'use "" for the embedded database, or a URI starting with '
                      "mongodb:// or mongodb+srv://")
    if url:
        rest = url.split("://", 1)[1]
        authority = rest.split("/", 1)[0].split("?", 1)[0]
        if not authority.rpartition("@")[2]:
            raise Invalid(f"{redact(url)!r} has no host",
                          "write it as mongodb://host:27017, with user:password@ before "
                          "the host when the server needs a login")
    return url


_BAD_DB_NAME_CHARS = set('/\\. "$*<>:|?')


def _database_name(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(f"must be a non-empty name, not {_type_name(value)}",
                      'set it to the pipeline\'s database name, usually "avalon"')
    if set(value) & _BAD_DB_NAME_CHARS or len(value.encode("utf-8", "surrogatepass")) > 63:
        raise Invalid(f"{value!r} is not a valid MongoDB database name",
                      "use up to 63 letters, digits, '-' or '_'")
    return value


def _provider(value: object) -> str:
    if isinstance(value, str) and value in PROVIDERS:
        return value
    shown = repr(value) if isinstance(value, str) else _type_name(value)
    hint = did_you_mean(value, PROVIDERS) if isinstance(value, str) else None
    fix = f"use one of: {', '.join(PROVIDERS)}"
    if hint:
        fix = f"did you mean {hint!r}? {fix}"
    raise Invalid(f"unknown provider {shown}", fix)


def _roots(value: object, platform: str) -> dict[str, str]:
    """``{root name: path or per-platform paths}`` -> ``{root name: path on platform}``.

    A path for another platform may be empty (OpenPype writes all three keys), but the
    current platform's must be there: a root we cannot resolve would fail every transfer.
    """
    example = '{"work": "/path/to/folder"}'
    if isinstance(value, str):
        raise Invalid("must map root names to folders, not be a single path",
                      f'write it as {{"work": {value!r}}} (root name: path)')
    if not isinstance(value, Mapping):
        raise Invalid(f"must map root names to folders, not {_type_name(value)}",
                      f"write it as {example}")
    if value and all(key in PLATFORMS for key in value):
        raise Invalid("looks like per-platform paths without a root name",
                      'wrap it in a root name: {"work": {"windows": ..., "linux": ...}}')
    roots: dict[str, str] = {}
    for name, item in value.items():
        try:
            path = platform_value(item, platform)
        except Invalid as exc:
            raise Invalid(exc.message, exc.fix, subpath=name) from None
        if not path.strip():
            if isinstance(item, Mapping):
                missing = platform not in item
                message = f"has no {'entry' if missing else 'path'} for {platform}"
                fix = f'add a "{platform}" folder for root {name!r}'
            else:
                message, fix = "is an empty path", f"set root {name!r} to a folder"
            raise Invalid(message, fix, subpath=name)
        roots[name] = path
    return roots


def _folders(value: object, platform: str) -> tuple[str, ...]:
    """A list of folders, each text or per-platform text; an entry with no folder for
    this platform is left out (a Windows-only plugin folder on a Linux farm node)."""
    if not isinstance(value, list):
        raise Invalid(f"must be a list of folders, not {_type_name(value)}",
                      'write it as ["/path/to/plugins", "/other/plugins"]')
    folders = []
    for index, item in enumerate(value):
        try:
            path = platform_value(item, platform)
        except Invalid as exc:
            raise Invalid(exc.message, exc.fix, subpath=str(index)) from None
        if isinstance(item, str) and not item.strip():
            raise Invalid("is an empty path", "write a folder, or remove the entry",
                          subpath=str(index))
        if path.strip():
            folders.append(path)
    return tuple(folders)


def is_absolute_for(path: str, platform: str) -> bool:
    """Absolute by the rules of ``platform``, whatever machine runs the check."""
    return (ntpath if platform == "windows" else posixpath).isabs(path)


def _check_platform_keys(value: Mapping[str, object]) -> None:
    for key in value:
        if key not in PLATFORMS:
            hint = did_you_mean(key, PLATFORMS)
            fix = f"use the keys {', '.join(PLATFORMS)}"
            if hint:
                fix = f"did you mean {hint!r}? {fix}"
            raise Invalid(f"unknown platform {key!r}", fix)


def _shown(option: Option, value: object) -> str:
    """The value for a message, or only its type when it is a secret."""
    if option.secret:
        return _type_name(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: object) -> str:
    return {
        type(None): "null", bool: "true/false", int: "a number", float: "a number",
        str: "text", list: "a list", dict: "a mapping",
    }.get(type(value), type(value).__name__)
