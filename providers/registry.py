"""Provider kinds -> implementing classes, imported only when a site uses them.

An explicit table rather than registration as an import side effect (rclone's
``backend/all``): the engine imports this module and never a concrete provider, a site
whose provider needs a package that is not installed fails with a message naming it, and
PyInstaller's hidden imports are read from the same table.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from app.errors import ConfigError
from providers.base import Provider

__all__ = ["PROVIDERS", "create_provider", "provider_class", "provider_kinds"]

#: Settings `provider` value (OpenPype's ids) -> "module:Class". To add a provider, add its
#: line here and its parameter to tests/contract/test_provider_contract.py.
PROVIDERS: Mapping[str, str] = {
    "local_drive": "providers.local_drive:LocalDriveProvider",
    "sftp": "providers.sftp:SftpProvider",
    "gdrive": "providers.gdrive:GDriveProvider",
}


#: Import name -> pip distribution, where they differ, for the missing-package message.
_DISTRIBUTIONS: Mapping[str, str] = {
    "googleapiclient": "google-api-python-client",
    "google": "google-auth",
    "google.auth": "google-auth",
    "google.oauth2": "google-auth",
}


def provider_kinds() -> list[str]:
    """Every known kind, sorted (for settings validation and error messages)."""
    return sorted(PROVIDERS)


def _unknown(kind: object, site: str) -> ConfigError:
    return ConfigError(
        f"site '{site}' has unknown provider {kind!r}",
        key=f"sites.{site}.provider",
        fix=f"use one of: {', '.join(provider_kinds())}",
    )


def provider_class(kind: str, site: str = "") -> type[Provider]:
    """Import and return the class for ``kind``.

    ConfigError for an unknown kind, or when the provider's module cannot be imported
    because a package it needs is missing (the message names the package).
    """
    target = PROVIDERS.get(kind) if isinstance(kind, str) else None
    if target is None:
        raise _unknown(kind, site)
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or str(exc)
        if missing == module_name or module_name.startswith(missing + "."):
            raise  # our own module is missing: a packaging bug, not the user's to fix
        package = _DISTRIBUTIONS.get(missing, missing)
        raise ConfigError(
            f"provider '{kind}' of site '{site}' needs the Python package '{package}' "
            f"(module '{missing}'), which is not installed",
            key=f"sites.{site}.provider",
            fix=f"install it (pip install {package}) or choose another provider",
        ) from exc
    cls = getattr(module, class_name)
    if not (isinstance(cls, type) and issubclass(cls, Provider)) or cls.kind != kind:
        raise TypeError(f"{target} is not a Provider with kind {kind!r}")
    return cls


def create_provider(kind: str, site: str, config: Mapping[str, Any]) -> Provider:
    """A provider for one site: ``kind`` is the site's `provider` setting, ``config`` its
    settings mapping (``root``, credentials, options). One instance per site, shared by
    the engine's worker threads."""
    return provider_class(kind, site)(site, config)
