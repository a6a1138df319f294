"""The settings of one SFTP site, checked once when the provider is built.

Everything that can be checked without the network is checked here and reported as a
:class:`~app.errors.ConfigError` naming the key and the fix: the engine then blocks the
site pair with that message instead of failing file after file, and `sitesync doctor`
shows it. Keys keep OpenPype's names (``sftp_host``, ``sftp_user``, ``sftp_pass``,
``sftp_key``, ``sftp_key_pass``); the rest are SiteSync's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.errors import ConfigError
from app.redact import add_secret

__all__ = ["VERIFY_MODES", "SftpOptions", "parse_options"]

#: ``sftp_verify`` values: "auto" = the server's ``sha256sum`` when it allows commands,
#: else read back; "hash" = only the server's hash (an error if it cannot run one);
#: "reread" = always read the upload back and hash it here.
VERIFY_MODES = ("auto", "hash", "reread")
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


@dataclass(frozen=True)
class SftpOptions:
    """Connection and behaviour settings of one site (secrets left out of ``repr``)."""

    host: str
    port: int
    user: str
    password: str = field(default="", repr=False)
    key_path: str = ""
    key_passphrase: str = field(default="", repr=False)
    #: Path of the known_hosts file; None when host-key checking is switched off.
    known_hosts: str | None = None
    verify: str = "auto"
    connect_timeout_s: float = 15.0
    stall_timeout_s: float = 60.0
    max_connections: int = 4
    max_sessions: int = 10
    #: Seconds between SSH keepalives on idle connections (dead peers are noticed).
    keepalive_s: float = 15.0

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def _key(site: str, name: str) -> str:
    return f"sites.{site}.{name}"


def _text(site: str, config: Mapping[str, Any], name: str, default: str = "") -> str:
    value = config.get(name, default)
    if value is None:
        return default
    if isinstance(value, Mapping):  # an unresolved per-platform value (raw config)
        from providers.paths import current_platform

        value = value.get(current_platform(), default)
    if not isinstance(value, str):
        raise ConfigError(f"site '{site}': {name} must be text, not {type(value).__name__}",
                          key=_key(site, name), fix="write the value in quotes")
    return value.strip() if name not in ("sftp_pass", "sftp_key_pass") else value


def _number(site: str, config: Mapping[str, Any], name: str, default: float, *,
            whole: bool, low: float, high: float) -> Any:
    value = config.get(name, default)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            value = None
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and whole and value != int(value):
        ok = False
    if not ok or not low <= value <= high:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"site '{site}': {name} must be {kind} from {low:g} to {high:g}, "
                          f"not {config.get(name)!r}", key=_key(site, name),
                          fix=f"set it to e.g. {default:g}")
    return int(value) if whole else float(value)


def _bool(site: str, config: Mapping[str, Any], name: str) -> bool:
    value = config.get(name, False)
    if not isinstance(value, bool):
        raise ConfigError(f"site '{site}': {name} must be true or false, not {value!r}",
                          key=_key(site, name), fix="set it to true or false")
    return value


def parse_options(site: str, config: Mapping[str, Any]) -> SftpOptions:
    """Read and check the site's settings; ConfigError (key + fix) for the first problem."""
    host = _text(site, config, "sftp_host")
    if not host:
        raise ConfigError(f"site '{site}' has no SFTP server set", key=_key(site, "sftp_host"),
                          fix='set it to the server name, e.g. "files.studio.example"')
    user = _text(site, config, "sftp_user")
    if not user:
        raise ConfigError(f"site '{site}' has no SFTP user set", key=_key(site, "sftp_user"),
                          fix="set it to the account name on the SFTP server")
    port = _number(site, config, "sftp_port", 22, whole=True, low=1, high=65535)
    password = _text(site, config, "sftp_pass")
    key_path = os.path.expanduser(_text(site, config, "sftp_key"))
    passphrase = _text(site, config, "sftp_key_pass")
    add_secret(password)
    add_secret(passphrase)
    if not password and not key_path:
        raise ConfigError(
            f"site '{site}' has neither an SSH key nor a password for {user}@{host}",
            key=_key(site, "sftp_key"),
            fix=f"set sites.{site}.sftp_key to a private key file (recommended) or "
                f"sites.{site}.sftp_pass")
    if key_path and not os.path.isfile(key_path):
        raise ConfigError(f"site '{site}': the SSH key file {key_path} does not exist",
                          key=_key(site, "sftp_key"),
                          fix="point it at the private key (e.g. ~/.ssh/id_ed25519), or create "
                              "one with ssh-keygen and add the .pub file to the server's "
                              "authorized_keys")
    insecure = _bool(site, config, "insecure_skip_host_key_check")
    known_hosts: str | None = None
    if not insecure:
        known_hosts = os.path.expanduser(
            _text(site, config, "known_hosts") or DEFAULT_KNOWN_HOSTS)
        if not os.path.isfile(known_hosts):
            scan = f"ssh-keyscan -p {port} {host} >> {known_hosts}" if port != 22 else \
                f"ssh-keyscan {host} >> {known_hosts}"
            folder = os.path.dirname(known_hosts)
            if folder and not os.path.isdir(folder):  # a fresh account has no ~/.ssh yet
                scan = f"mkdir -p -m 700 {folder} && {scan}"
            raise ConfigError(
                f"site '{site}': the known_hosts file {known_hosts} does not exist, so the "
                f"identity of {host} cannot be checked",
                key=_key(site, "known_hosts"),
                fix=f"add the server's key with `{scan}` (and compare its fingerprint with the "
                    f"one your server admin gives you), or set sites.{site}.known_hosts to "
                    "a known_hosts file that lists it")
    verify = _text(site, config, "sftp_verify", "auto").lower() or "auto"
    if verify not in VERIFY_MODES:
        raise ConfigError(f"site '{site}': sftp_verify {verify!r} is not a known mode",
                          key=_key(site, "sftp_verify"),
                          fix="use auto (default), hash or reread")
    return SftpOptions(
        host=host,
        port=port,
        user=user,
        password=password,
        key_path=key_path,
        key_passphrase=passphrase,
        known_hosts=known_hosts,
        verify=verify,
        connect_timeout_s=_number(site, config, "sftp_connect_timeout_s", 15, whole=False,
                                  low=1, high=600),
        stall_timeout_s=_number(site, config, "sftp_stall_timeout_s", 60, whole=False,
                                low=1, high=3600),
        max_connections=_number(site, config, "sftp_max_connections", 4, whole=True,
                                low=1, high=64),
        max_sessions=_number(site, config, "sftp_max_sessions", 10, whole=True, low=1, high=1000),
    )
