"""The settings table: every key SiteSync reads, its type, default, limits and help.

One declaration serves three readers: the validator (types, limits, "did you mean"),
the loader (defaults, text numbers) and the settings dialog (help, restart flag). Keys
keep OpenPype's flat names (``retry_cnt``, ``remote_site``) so settings users already
know keep working; keys new to SiteSync live under ``engine``.

Values are checked against these declarations by :mod:`app.settings.coerce`.
"""

from __future__ import annotations

import difflib
import enum
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "COMMON_SITE_OPTIONS",
    "DEFAULT_SITE",
    "ENGINE_OPTIONS",
    "GLOBAL_OPTIONS",
    "HOOKS_OPTIONS",
    "HOOKS_PLUGINS_KEY",
    "LOCAL_SITE",
    "MACHINE_SITE_KEYS",
    "PLATFORMS",
    "PROJECT_OPTION_KEYS",
    "PROVIDERS",
    "PROVIDER_OPTIONS",
    "ROOT_KEY",
    "SECRET_KEY_WORDS",
    "Kind",
    "Option",
    "current_platform",
    "did_you_mean",
    "engine_option",
    "global_option",
    "hooks_option",
    "is_secret_key",
    "known_site_keys",
    "site_option",
]

#: OpenPype's provider ids; they are also the provider module and registry names.
PROVIDERS = ("local_drive", "gdrive", "sftp")
#: Keys of a per-platform value, OpenPype's spelling.
PLATFORMS = ("windows", "linux", "darwin")
#: The studio storage; exists even when not configured (a local_drive site).
DEFAULT_SITE = "studio"
#: Alias of this machine's ``local_id`` in ``publish_site``/``remote_site``/``sites``.
LOCAL_SITE = "local"
ROOT_KEY = "root"
#: A site key containing one of these is never echoed and is masked in messages.
SECRET_KEY_WORDS = ("pass", "secret", "token")


class Kind(enum.Enum):
    """How a value is read; see :func:`coerce`."""

    TEXT = "text"
    SITE_NAME = "site name"
    SITE_NAMES = "list of site names"
    WHOLE = "whole number"
    NUMBER = "number"
    BOOL = "true/false"
    PLATFORM_TEXT = "text, or per-platform text"
    DATABASE_URL = "database URL"
    DATABASE_NAME = "database name"
    PROVIDER = "provider"
    ROOTS = "roots"
    BWLIMIT = "bandwidth limit"
    TRANSFERS = "transfer count"
    CONFLICT_POLICY = "conflict policy"
    SUBSCRIPTIONS = "subscription rules"
    FOLDERS = "list of folders"


@dataclass(frozen=True)
class Option:
    """One settings key.

    ``key`` is the name inside its block (``retry_cnt``; ``lease_s`` under ``engine``).
    ``text_numbers`` accepts OpenPype's text fields ("3"). ``project`` means the key may be
    overridden under ``projects.<name>``. ``restart`` tells the settings dialog a running
    engine will not pick the change up. ``aliases`` are other names accepted for the key;
    ``empty_ok`` lets a site name be "" (``remote_site``: "" means do not sync).
    """

    key: str
    kind: Kind
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    strict_minimum: bool = False
    text_numbers: bool = False
    project: bool = False
    restart: bool = False
    secret: bool = False
    aliases: tuple[str, ...] = ()
    empty_ok: bool = False


GLOBAL_OPTIONS: tuple[Option, ...] = (
    Option("database_url", Kind.DATABASE_URL, "", "Empty = the embedded database on this "
           "machine; else a mongodb:// or mongodb+srv:// URI (the pipeline's Avalon DB).",
           restart=True, secret=True),
    Option("database_name", Kind.DATABASE_NAME, "avalon", "Mongo database holding the projects.",
           restart=True),
    Option("local_id", Kind.SITE_NAME, "", "This machine's site name; generated once. "
           "SITESYNC_LOCAL_ID overrides it.", restart=True),
    Option("retry_cnt", Kind.WHOLE, 3, "Tries before a file is marked Failed.",
           minimum=1, maximum=1000, text_numbers=True, project=True),
    Option("loop_delay", Kind.WHOLE, 60, "Seconds between full checks for new work.",
           minimum=1, maximum=86400, text_numbers=True, project=True),
    Option("publish_site", Kind.SITE_NAME, DEFAULT_SITE, "Site files are published to and "
           "worked on from (OpenPype's active site); 'local' = this machine.",
           project=True, aliases=("active_site",)),
    Option("remote_site", Kind.SITE_NAME, DEFAULT_SITE, "Site files are synced with; "
           "'local' = this machine. Empty or equal to publish_site = no syncing.",
           project=True, empty_ok=True),
    Option("always_accessible_on", Kind.SITE_NAMES, (), "Sites that always get every file.",
           project=True),
    Option("conflict_policy", Kind.CONFLICT_POLICY, "other", "When a target already holds a "
           "different file under the published path: this (keep it), other (take the "
           "published file, keep the old one as a conflict copy), newer, or fail; or a "
           "mapping of \"SOURCE>TARGET\" site pairs to those. See docs/transfer-policy.md.",
           project=True),
    Option("subscriptions", Kind.SUBSCRIPTIONS, (), "Rules adding this machine's site to "
           "matching new publishes: project, asset, subset, representation, family patterns "
           "and a mode (as_available or when_complete). See docs/transfer-policy.md."),
)

ENGINE_OPTIONS: tuple[Option, ...] = (
    Option("workers_per_site", Kind.WHOLE, 8, "Parallel transfers per site.",
           minimum=1, maximum=256, restart=True),
    Option("lease_s", Kind.NUMBER, 60, "Seconds a claimed file stays reserved for this "
           "engine; renewed while the transfer runs.", minimum=1, maximum=86400),
    Option("backoff_base_s", Kind.NUMBER, 10, "Wait before the first retry; doubles each try.",
           minimum=0, maximum=86400),
    Option("backoff_max_s", Kind.NUMBER, 3600, "Longest wait between retries.",
           minimum=0, maximum=7 * 86400),
    Option("progress_interval_s", Kind.NUMBER, 1.0, "Seconds between progress updates.",
           minimum=0, strict_minimum=True, maximum=3600),
    Option("serve_site", Kind.TEXT, "", "Site this engine acts as, e.g. on a studio server; "
           "empty = this machine (local_id).", restart=True),
    Option("partial_max_age_h", Kind.NUMBER, 48, "Hours after which an interrupted "
           "transfer's temporary file that nobody resumed is deleted; 0 = never.",
           minimum=0, maximum=24 * 365),
)

HOOKS_OPTIONS: tuple[Option, ...] = (
    Option("enabled", Kind.BOOL, True, "Run event hook plugins (in `sitesync serve` and the "
           "tray)."),
    Option("plugin_paths", Kind.FOLDERS, (), "Folders whose .py files are plugins, in the "
           "order they run; relative paths are relative to this settings file."),
    Option("gap_timeout_s", Kind.NUMBER, 60, "Seconds a missing event id (a write not yet "
           "committed) is waited for before it is declared lost.", minimum=0, maximum=86400),
    Option("poll_interval_s", Kind.NUMBER, 2.0, "Longest wait before looking for new events "
           "(changes wake the hooks sooner).", minimum=0.05, maximum=3600),
    Option("reload_interval_s", Kind.NUMBER, 2.0, "Seconds between checks for new, changed "
           "or fixed plugin files.", minimum=0.1, maximum=3600),
    Option("batch_size", Kind.WHOLE, 500, "Events read at a time.", minimum=1,
           maximum=100000),
    Option("stuck_after_s", Kind.NUMBER, 60, "A callback running longer no longer holds "
           "back the plugins after it.", minimum=0.1, maximum=86400),
    Option("retention_days", Kind.NUMBER, 30, "Days events stay in the log.",
           minimum=0.01, maximum=36500),
)
#: Keys of ``hooks`` that are not options: per-plugin blocks.
HOOKS_PLUGINS_KEY = "plugins"

COMMON_SITE_OPTIONS: tuple[Option, ...] = (
    Option("provider", Kind.PROVIDER, None, "local_drive, gdrive or sftp."),
    Option(ROOT_KEY, Kind.ROOTS, None, "Root name -> folder (or per-platform folders)."),
    Option("alternative_sites", Kind.SITE_NAMES, (), "Sites holding the same storage: a file "
           "synced here counts as present there too."),
    Option("enabled", Kind.BOOL, True, "Whether the site is used."),
    Option("bwlimit", Kind.BWLIMIT, "", "Bandwidth limit of this site for this machine, "
           "rclone syntax: 'off', '10M', '10M:2M' (upload:download) or a weekly timetable "
           "'Mon-08:00,2M Fri-19:00,off'. See docs/transfer-policy.md."),
    Option("transfers", Kind.TRANSFERS, None, "Transfers running at once into and out of "
           "this site: a number, '2:8' or {\"upload\": 2, \"download\": 8}; default "
           "engine.workers_per_site."),
)

#: Site keys that are limits of this machine, not of the storage: set only in the global
#: ``sites`` block (one token bucket per site, shared by every project).
MACHINE_SITE_KEYS = ("bwlimit", "transfers")

PROVIDER_OPTIONS: Mapping[str, tuple[Option, ...]] = {
    "local_drive": (
        Option("verify_reread", Kind.BOOL, False, "Verify each written file by reading it back "
               "from the disk (cache dropped) instead of hashing the bytes as they are "
               "written: worth it on a NAS whose network path is not trusted."),
    ),
    "gdrive": (
        Option("credentials_url", Kind.PLATFORM_TEXT, "", "Service account JSON key file."),
        Option("chunk_size", Kind.WHOLE, 8 * 1024 * 1024, "Upload chunk size in bytes; a "
               "multiple of 262144 (256 KiB).", minimum=262144),
        Option("download_chunk_size", Kind.WHOLE, 16 * 1024 * 1024, "Bytes per ranged "
               "download request.", minimum=262144),
        Option("api_url", Kind.TEXT, "https://www.googleapis.com/", "Google API root URL "
               "(a proxy or a test server)."),
        Option("impersonate", Kind.TEXT, "", "Workspace user whose Drive the service account "
               "acts in (domain-wide delegation); empty = the account itself."),
        Option("max_calls_per_s", Kind.NUMBER, 10, "API calls per second for this account, "
               "all workers together.", minimum=0, strict_minimum=True, maximum=1000),
        Option("max_backoff_s", Kind.NUMBER, 64, "Longest wait after a rate-limit answer.",
               minimum=0, maximum=3600),
        Option("max_retries", Kind.WHOLE, 8, "Retries of one API call before the file's "
               "try fails.", minimum=0, maximum=100),
        Option("upload_limit_wait_s", Kind.NUMBER, 3600, "Seconds the site waits after "
               "Drive's daily upload limit or a full drive before trying again.",
               minimum=1, maximum=86400),
        Option("timeout_s", Kind.NUMBER, 120, "Network timeout of one request.",
               minimum=1, maximum=3600),
    ),
    "sftp": (
        Option("sftp_host", Kind.TEXT, "", "Server host name."),
        Option("sftp_port", Kind.WHOLE, 22, "Server port.", minimum=1, maximum=65535,
               text_numbers=True),
        Option("sftp_user", Kind.TEXT, "", "User name."),
        Option("sftp_pass", Kind.TEXT, "", "Password.", secret=True),
        Option("sftp_key", Kind.PLATFORM_TEXT, "", "Private key file."),
        Option("sftp_key_pass", Kind.TEXT, "", "Private key passphrase.", secret=True),
        Option("known_hosts", Kind.PLATFORM_TEXT, "", "known_hosts file to trust."),
        Option("insecure_skip_host_key_check", Kind.BOOL, False,
               "Trust any server key (testing only)."),
        Option("sftp_verify", Kind.TEXT, "auto", "How uploads are checked before the rename: "
               "auto (SHA-256 on the server with openssl or sha256sum if it allows commands, else "
               "read back), "
               "hash or reread."),
        Option("sftp_connect_timeout_s", Kind.NUMBER, 15, "Seconds to connect and log in.",
               minimum=1, maximum=600),
        Option("sftp_stall_timeout_s", Kind.NUMBER, 60, "Seconds without progress before a "
               "transfer is given up and retried.", minimum=1, maximum=3600),
        Option("sftp_max_connections", Kind.WHOLE, 4, "SSH connections to the server.",
               minimum=1, maximum=64),
        Option("sftp_max_sessions", Kind.WHOLE, 10, "Channels per connection (the server's "
               "MaxSessions, 10 by default in OpenSSH).", minimum=1, maximum=1000),
    ),
}

#: Keys allowed under ``projects.<name>``.
PROJECT_OPTION_KEYS: tuple[str, ...] = (
    "enabled",
    *(o.key for o in GLOBAL_OPTIONS if o.project),
    *(a for o in GLOBAL_OPTIONS if o.project for a in o.aliases),
    "sites",
)

_GLOBAL_BY_KEY = {o.key: o for o in GLOBAL_OPTIONS}
_ENGINE_BY_KEY = {o.key: o for o in ENGINE_OPTIONS}
_HOOKS_BY_KEY = {o.key: o for o in HOOKS_OPTIONS}
_SITE_BY_KEY = {o.key: o for o in COMMON_SITE_OPTIONS}
_PROVIDER_BY_KEY = {p: {o.key: o for o in opts} for p, opts in PROVIDER_OPTIONS.items()}


def global_option(key: str) -> Option:
    return _GLOBAL_BY_KEY[key]


def engine_option(key: str) -> Option:
    return _ENGINE_BY_KEY[key]


def hooks_option(key: str) -> Option:
    return _HOOKS_BY_KEY[key]


def site_option(key: str, provider: str | None) -> Option | None:
    """The declaration of a site key for ``provider``; None for keys we do not know."""
    if key in _SITE_BY_KEY:
        return _SITE_BY_KEY[key]
    return _PROVIDER_BY_KEY.get(provider or "", {}).get(key)


def known_site_keys() -> set[str]:
    """Every site key any provider declares (for typo checks on permissive site blocks)."""
    keys = set(_SITE_BY_KEY)
    for by_key in _PROVIDER_BY_KEY.values():
        keys.update(by_key)
    return keys


def is_secret_key(key: str) -> bool:
    """Whether a site key holds a secret: declared so, or named like one (a provider's
    own ``api_token``), so values we do not know are protected too."""
    if any(o.secret for opts in PROVIDER_OPTIONS.values() for o in opts if o.key == key):
        return True
    lowered = str(key).lower()
    return any(word in lowered for word in SECRET_KEY_WORDS)


def current_platform(sys_platform: str | None = None) -> str:
    """OpenPype's platform key: win32 -> windows, darwin -> darwin, anything else -> linux."""
    name = sys.platform if sys_platform is None else sys_platform
    if name.startswith("win"):
        return "windows"
    if name == "darwin":
        return "darwin"
    return "linux"


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The closest choice to a mistyped key, if one is close enough to suggest."""
    matches = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=0.75)
    return matches[0] if matches else None
