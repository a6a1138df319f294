"""Google accounts and their API clients, shared for the life of the process.

OpenPype built a new service object (and so fetched a new token) for every file. Here
one :class:`Account` exists per service-account key and API URL in the process: it owns
the credentials (one token, refreshed under a lock), the pacer every call of that
account goes through, the discovery document with the site's ``api_url`` as its root,
and the folder cache. Each thread builds its own client once (httplib2 connections are
not thread-safe) and reuses it for every file.

The discovery document is the one bundled with googleapiclient, so building a client
makes no network call. With ``rootUrl`` rewritten, every URL the client makes (API,
media upload, batch) goes to ``api_url`` — ``client_options.api_endpoint`` would move
only the API calls and leave uploads on https://www.googleapis.com
(providers-on-loopback.md §1.2).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import google_auth_httplib2
import httplib2
from google.oauth2 import service_account
from googleapiclient.discovery import build_from_document
from googleapiclient.discovery_cache import get_static_doc

from app.errors import ConfigError
from providers.gdrive.options import DEFAULT_API_URL, DriveOptions
from providers.gdrive.pacer import Pacer

__all__ = ["DRIVE_SCOPE", "Account", "account_for", "load_key"]

DRIVE_SCOPE = "https://www.googleapis.com/auth/drive"
_REQUIRED_KEYS = ("client_email", "private_key", "token_uri")

_accounts: dict[tuple[str, ...], Account] = {}
_accounts_lock = threading.Lock()
_doc_lock = threading.Lock()
_static_doc: dict[str, Any] | None = None


def load_key(site: str, path: str) -> Mapping[str, Any]:
    """The service-account JSON at ``path``; ConfigError saying what is wrong with it
    (never quoting the key itself)."""
    key = f"sites.{site}.credentials_url"
    guide = "see docs/providers/gdrive.md, 'Service account'"
    try:
        with open(path, encoding="utf-8") as stream:
            info = json.load(stream)
    except FileNotFoundError:
        raise ConfigError(f"site '{site}': the service account key file {path} does not exist",
                          key=key, fix=f"download a JSON key for the service account and point "
                                       f"credentials_url at it ({guide})") from None
    except OSError as exc:
        raise ConfigError(f"site '{site}': cannot read the key file {path} ({exc.strerror or exc})",
                          key=key, fix="let the user running SiteSync read it") from None
    except ValueError:
        raise ConfigError(f"site '{site}': the key file {path} is not valid JSON", key=key,
                          fix=f"download the service account's JSON key again ({guide})") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        kind = "an OAuth client file" if isinstance(info, dict) and (
            "installed" in info or "web" in info) else "not a service account key"
        raise ConfigError(f"site '{site}': {path} is {kind}", key=key,
                          fix=f"SiteSync needs a service account's JSON key ({guide})")
    missing = [k for k in _REQUIRED_KEYS if not info.get(k)]
    if missing:
        raise ConfigError(f"site '{site}': the key file {path} lacks {', '.join(missing)}", key=key,
                          fix=f"download the service account's JSON key again ({guide})")
    return info


def _document(api_url: str) -> dict[str, Any]:
    """The bundled Drive v3 discovery document, rooted at ``api_url``."""
    global _static_doc
    with _doc_lock:
        if _static_doc is None:
            text = get_static_doc("drive", "v3")
            if text is None:  # pragma: no cover - a broken googleapiclient install
                raise ConfigError("google-api-python-client has no bundled Drive v3 document",
                                  fix="reinstall google-api-python-client")
            _static_doc = json.loads(text)
        doc = dict(_static_doc)
    if api_url != DEFAULT_API_URL:
        doc["rootUrl"] = doc["mtlsRootUrl"] = api_url
    return doc


class _Http(httplib2.Http):
    """httplib2 without its silent re-send of a POST whose answer was lost.

    When a response does not arrive (``BadStatusLine``/``RemoteDisconnected`` on the
    first try), httplib2 sends the request again on a new connection, without telling
    the caller. For a POST that had already been carried out (a multipart upload, a
    folder create) that makes a second file. Here a POST is sent once; a failure goes
    to :class:`~providers.gdrive.calls.DriveCaller`, whose retry first looks whether the
    item landed. Other methods keep httplib2's behaviour: GET and PUT (chunks, status
    queries) are safe to repeat.
    """

    def _conn_request(self, conn: Any, request_uri: str, method: str, body: Any, headers: Any) -> Any:
        if method != "POST":
            return super()._conn_request(conn, request_uri, method, body, headers)
        try:
            if conn.sock is None:
                conn.connect()
            conn.request(method, request_uri, body, headers)
            raw = conn.getresponse()
            content = raw.read()
        except BaseException:
            conn.close()
            raise
        response = httplib2.Response(raw)
        decompress = getattr(httplib2, "_decompressContent", None)
        if decompress is not None:
            content = decompress(response, content, getattr(self, "limit_kwargs", {}))
        return response, content


class _SharedCredentials:
    """The account's credentials as seen by each thread's AuthorizedHttp: refreshed by
    one thread at a time, so eight workers starting together fetch one token, not eight."""

    def __init__(self, credentials: service_account.Credentials) -> None:
        self._credentials = credentials
        self._lock = threading.Lock()
        self.refreshes = 0

    def before_request(self, request: Any, method: str, url: str, headers: dict) -> None:
        if not self._credentials.valid:
            with self._lock:
                if not self._credentials.valid:
                    self._credentials.refresh(request)
                    self.refreshes += 1
        self._credentials.apply(headers)

    def refresh(self, request: Any) -> None:
        """After a 401: refresh unless another thread already did since that request."""
        seen = self._credentials.token
        with self._lock:
            if self._credentials.token == seen:
                self._credentials.refresh(request)
                self.refreshes += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._credentials, name)


@dataclass
class Account:
    """One service account (as one user, via one API URL) in this process."""

    email: str
    project: str
    api_url: str
    credentials: _SharedCredentials
    document: dict[str, Any]
    pacer: Pacer
    #: Caches shared by every site of this account (folder ids, drive ids).
    cache: dict[str, Any] = field(default_factory=dict)
    cache_lock: threading.RLock = field(default_factory=threading.RLock)
    clients_built: int = 0
    _local: threading.local = field(default_factory=threading.local)

    def thread_client(self, timeout_s: float) -> tuple[Any, Any, Any]:
        """This thread's (client, client.files(), client.drives()), built on first use and
        kept for the life of the thread: every site and project of the account share it.
        googleapiclient builds a new resource object (~20 ms) on every ``files()`` call,
        so the resources are kept too."""
        kept = getattr(self._local, "clients", None)
        if kept is None:
            client = self.build_client(timeout_s)
            kept = self._local.clients = (client, client.files(), client.drives())
        return kept

    def build_client(self, timeout_s: float) -> Any:
        """A Drive client for the calling thread (keep it; it holds the connections)."""
        http = _Http(timeout=timeout_s)
        # What googleapiclient.http.build_http() does: a 308 answer to an upload chunk
        # means "resume incomplete", not a redirect to follow.
        http.redirect_codes = http.redirect_codes - {308}
        authorized = google_auth_httplib2.AuthorizedHttp(self.credentials, http=http)
        client = build_from_document(self.document, http=authorized)
        with self.cache_lock:
            self.clients_built += 1
        return client


def account_for(site: str, options: DriveOptions) -> Account:
    """The process-wide account for this site's key file, impersonated user and API URL."""
    info = load_key(site, options.credentials_path)
    identity = (options.api_url, str(info["client_email"]), str(info.get("private_key_id", "")),
                options.impersonate, str(info["token_uri"]))
    with _accounts_lock:
        account = _accounts.get(identity)
        if account is not None:
            return account
        try:
            credentials = service_account.Credentials.from_service_account_info(
                info, scopes=[DRIVE_SCOPE])
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(
                f"site '{site}': the private key in {options.credentials_path} cannot be used "
                f"({type(exc).__name__})", key=f"sites.{site}.credentials_url",
                fix="download a new JSON key for the service account") from None
        if options.impersonate:
            credentials = credentials.with_subject(options.impersonate)
        account = Account(
            email=str(info["client_email"]),
            project=str(info.get("project_id", "")),
            api_url=options.api_url,
            credentials=_SharedCredentials(credentials),
            document=_document(options.api_url),
            pacer=Pacer(options.max_calls_per_s, options.max_backoff_s),
        )
        _accounts[identity] = account
        return account
