"""Every Drive API call goes through :class:`DriveCaller`: paced, retried, classified.

googleapiclient retries only inside one call, sleeps ``random() * 2**n`` with no cap,
ignores ``Retry-After`` and, for chunked uploads, re-sends an empty body
(providers-on-loopback.md §1.5), so SiteSync calls it with ``num_retries=0`` and owns the
loop here. What each failure means (Drive's "resolve errors" guide, rclone's
``shouldRetry``):

* 429, 403 ``rateLimitExceeded``/``userRateLimitExceeded``/``sharingRateLimitExceeded`` and
  5xx: slow the whole account down (:class:`~providers.gdrive.pacer.Pacer`) and try again;
  still limited after ``max_retries``: hold the site briefly, no try counted;
* a dropped connection, a timeout, a failed token fetch: try again after a short pause;
* the daily upload cap (403 ``uploadLimitExceeded``, or ``userRateLimitExceeded`` with
  exactly "User rate limit exceeded." on an upload, which is how Drive reports its
  750 GB/day limit) and a full drive: :class:`SiteUnavailableError`, the engine holds the
  site for ``upload_limit_wait_s`` without counting tries;
* bad credentials, missing permissions, a disabled API: PermanentError naming the fix;
* 404: :class:`DriveNotFound` (callers decide what a vanished item means); 404/410 on an
  upload session: :class:`SessionGone` (the upload restarts from byte 0).

Error texts name the site, what was being done and the fix; they never contain tokens,
keys or upload session URIs.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httplib2
from google.auth import exceptions as auth_exceptions
from googleapiclient.errors import HttpError

from app.errors import PermanentError, SiteSyncError, SiteUnavailableError, TransientError
from providers.gdrive.pacer import Pacer

__all__ = ["DriveCaller", "DriveError", "DriveNotFound", "SessionGone", "http_error_reason"]

_log = logging.getLogger(__name__)
T = TypeVar("T")

_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "sharingRateLimitExceeded"})
_CAP_REASONS = frozenset({"uploadLimitExceeded", "dailyLimitExceeded"})
_FULL_REASONS = frozenset({"storageQuotaExceeded", "quotaExceeded", "teamDriveFileLimitExceeded",
                           "activeItemCreationLimitExceeded"})
_PERMISSION_REASONS = frozenset({"insufficientFilePermissions", "insufficientPermissions", "forbidden",
                                 "appNotAuthorizedToFile", "domainPolicy", "cannotAddParent",
                                 "insufficientParentPermissions", "teamDriveMembershipRequired"})
#: How Drive words its daily upload cap (rclone's --drive-stop-on-upload-limit matches it too).
DAILY_CAP_MESSAGE = "User rate limit exceeded."
_TRANSPORT_ERRORS = (OSError, httplib2.HttpLib2Error, http.client.HTTPException, ssl.SSLError,
                     auth_exceptions.TransportError)


class DriveError(TransientError):
    """Base of the Drive conditions callers may want to tell apart."""


class DriveNotFound(DriveError):
    """404: the item is gone (or invisible to the account)."""


class SessionGone(DriveError):
    """404/410 on a resumable upload session: it expired; start the upload over."""


def http_error_reason(exc: HttpError) -> tuple[str, str]:
    """(reason, message) of a Google JSON error; ("", text) if it has none."""
    details = exc.error_details
    reason = ""
    message = ""
    if isinstance(details, list) and details and isinstance(details[0], dict):
        reason = str(details[0].get("reason", ""))
        message = str(details[0].get("message", ""))
    if not reason or not message:
        try:
            body = json.loads(exc.content or b"{}")
            error = body.get("error", {}) if isinstance(body, dict) else {}
            if isinstance(error, dict):
                errors = error.get("errors") or [{}]
                reason = reason or str(errors[0].get("reason", "") or error.get("status", ""))
                message = message or str(errors[0].get("message", "") or error.get("message", ""))
        except (ValueError, AttributeError, IndexError, TypeError):
            pass
    return reason, message or str(getattr(exc, "reason", "") or "")


def _retry_after(exc: HttpError) -> float | None:
    value = exc.resp.get("retry-after") if exc.resp is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


@dataclass(frozen=True)
class _Decision:
    """What to do about one failed call: try again (``shared``: slow the whole account
    down), or raise ``error``."""

    error: SiteSyncError
    retry: bool = False
    shared: bool = False
    retry_after: float | None = None


class DriveCaller:
    """Runs API calls for one site of one account (the pacer is the account's)."""

    def __init__(self, *, site: str, email: str, project: str, credentials_path: str, api_url: str,
                 pacer: Pacer, max_retries: int, max_backoff_s: float, upload_limit_wait_s: float,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.site = site
        self.email = email
        self.project = project
        self.credentials_path = credentials_path
        self.api_url = api_url
        self.pacer = pacer
        self.max_retries = max_retries
        self.max_backoff_s = max_backoff_s
        self.upload_limit_wait_s = upload_limit_wait_s
        self._sleep = sleep
        self._rng = random.Random()

    # -- the loop ------------------------------------------------------------------------------

    def run(self, what: str, call: Callable[[], T], *, upload: bool = False,
            session: bool | Callable[[], bool] = False) -> T:
        """``call()`` with pacing and retries; ``what`` ("uploading /My Drive/x.exr") is
        for messages. ``upload`` marks requests that carry file content (the daily cap
        applies to them); ``session`` marks requests to an upload session URI — or asks,
        after a failure, whether the request went to one (a 404 there is an expired
        session; on the request that starts a session it is a missing folder)."""
        attempt = 0
        while True:
            self.pacer.wait()
            try:
                result = call()
            except HttpError as exc:
                to_session = session() if callable(session) else session
                decision = self._classify_http(exc, what, upload=upload, session=to_session)
            except auth_exceptions.RefreshError as exc:
                decision = self._refresh_failed(exc)
            except _TRANSPORT_ERRORS as exc:
                decision = self._transport(exc, what)
            else:
                self.pacer.ok()
                return result
            attempt += 1
            if not decision.retry or attempt > self.max_retries:
                if decision.retry and decision.shared and isinstance(decision.error, _RateLimited):
                    raise self._rate_hold(decision, what)
                raise decision.error
            if decision.shared:
                held = self.pacer.slow_down(decision.retry_after)
                _log.info("site %s: %s; every call of %s waits %.1f s", self.site, decision.error,
                          self.email, held)
            else:
                delay = min(self.max_backoff_s, 0.25 * 2 ** (attempt - 1))
                self._sleep(delay / 2 + self._rng.uniform(0, delay / 2))

    # -- classification ----------------------------------------------------------------------

    def _share_fix(self) -> str:
        return (f"share the folder with the service account {self.email} as Editor (on a shared "
                "drive: add it as a member with the Content manager role), then retry")

    def _auth_fix(self) -> str:
        return (f"check the key file {self.credentials_path}: it must be a current JSON key of the "
                f"service account {self.email} (a key deleted in the Cloud console stops working), "
                "and this computer's clock must be right")

    def _classify_http(self, exc: HttpError, what: str, *, upload: bool, session: bool) -> _Decision:
        status = exc.resp.status if exc.resp is not None else 0
        reason, message = http_error_reason(exc)
        detail = f"HTTP {status} {reason}: {message}".strip().rstrip(":")
        where = f"site '{self.site}' while {what}"
        if session and status in (404, 410):
            return _Decision(SessionGone(f"the upload session on {where} expired ({detail}); "
                                         "the upload starts over"))
        if status == 429 or (status == 403 and reason in _RATE_REASONS):
            daily = reason in _CAP_REASONS or (
                upload and reason == "userRateLimitExceeded" and message.strip() == DAILY_CAP_MESSAGE)
            if not daily:
                return _Decision(_RateLimited(f"Google Drive rate limit on {where} ({detail})"),
                                 retry=True, shared=True, retry_after=_retry_after(exc))
        if status == 403 and (reason in _CAP_REASONS or (
                upload and reason == "userRateLimitExceeded" and message.strip() == DAILY_CAP_MESSAGE)):
            wait = self.upload_limit_wait_s
            return _Decision(SiteUnavailableError(
                f"Google Drive's daily upload limit (750 GB per account per 24 h) was reached for "
                f"{self.email} on site '{self.site}' ({detail}); transfers to this site pause and are "
                f"tried again every {_minutes(wait)} until Google lifts the limit. Nothing is lost "
                "and no tries are counted", site=self.site, retry_after_s=wait))
        if status == 403 and reason in _FULL_REASONS:
            wait = self.upload_limit_wait_s
            if "service account" in message.lower():
                fix = ("files the service account creates in a My Drive folder would be its own, and "
                       "Google gives service accounts no storage: put the root in a shared drive, or "
                       f"set sites.{self.site}.impersonate to a Workspace user")
            else:
                fix = "free space (or raise the storage of the account or shared drive)"
            return _Decision(SiteUnavailableError(
                f"the Google Drive of site '{self.site}' is full or at an item limit while {what} "
                f"({detail}); {fix}; transfers to this site are tried again every {_minutes(wait)}",
                site=self.site, retry_after_s=wait))
        if status >= 500 or status == 408:
            return _Decision(TransientError(f"Google Drive server error on {where} ({detail}); will retry",
                                            retry_after_s=_retry_after(exc)),
                             retry=True, shared=status >= 500, retry_after=_retry_after(exc))
        if status == 401:
            return _Decision(PermanentError(f"Google refused the credentials of {where} ({detail}); "
                                            + self._auth_fix()))
        if status == 403 and reason in ("accessNotConfigured", "SERVICE_DISABLED"):
            return _Decision(PermanentError(
                f"the Google Drive API is not enabled for Cloud project '{self.project}' of {where}; "
                "enable it at https://console.cloud.google.com/apis/library/drive.googleapis.com"
                f"?project={self.project} and retry"))
        if status == 403 and reason == "fileNotDownloadable":
            return _Decision(PermanentError(
                f"Drive cannot download this item on {where}: it is a Google Docs file or a folder, "
                "not a file with content; publish a real file instead"))
        if status == 403 and reason == "downloadQuotaExceeded":
            return _Decision(TransientError(
                f"Google Drive's download quota for this file was exceeded on {where} ({detail}); "
                "it is tried again later", retry_after_s=max(self.upload_limit_wait_s, 600.0)))
        if status == 403 and reason == "numChildrenInNonRootLimitExceeded":
            return _Decision(PermanentError(
                f"a folder on {where} holds Drive's maximum of 500,000 items ({detail}); "
                "split the project across more folders"))
        if status == 403 and reason in _PERMISSION_REASONS:
            return _Decision(PermanentError(f"Google Drive refused access on {where} ({detail}); "
                                            + self._share_fix()))
        if status == 404:
            return _Decision(DriveNotFound(f"not found on {where} ({detail}); it was deleted or is "
                                           f"not shared with {self.email}"))
        if status == 400:
            return _Decision(PermanentError(f"Google Drive refused the request on {where} ({detail})"))
        if status == 403:
            return _Decision(PermanentError(f"Google Drive refused the request on {where} ({detail}); "
                                            + self._share_fix()))
        return _Decision(TransientError(f"unexpected answer from Google Drive on {where} ({detail}); "
                                        "will retry"))

    def _refresh_failed(self, exc: auth_exceptions.RefreshError) -> _Decision:
        text = str(exc.args[0] if exc.args else exc)[:200]
        if getattr(exc, "retryable", False):
            return _Decision(TransientError(f"could not get a Google access token for site "
                                            f"'{self.site}' ({text}); will retry"), retry=True)
        return _Decision(PermanentError(f"Google refused the service account key of site '{self.site}' "
                                        f"({text}); " + self._auth_fix()))

    def _transport(self, exc: BaseException, what: str) -> _Decision:
        if isinstance(exc, (httplib2.ServerNotFoundError, socket.gaierror)):
            text = (f"cannot resolve the Google Drive server for site '{self.site}' ({self.api_url}) "
                    "while " + what + "; check the network connection, the proxy settings or "
                    f"sites.{self.site}.api_url; will retry")
        else:
            kind = type(exc).__name__
            text = (f"network error talking to Google Drive on site '{self.site}' while {what} "
                    f"({kind}: {exc}); will retry")
        return _Decision(TransientError(text), retry=True)

    def _rate_hold(self, decision: _Decision, what: str) -> SiteUnavailableError:
        wait = max(self.max_backoff_s, decision.retry_after or 0.0, 1.0)
        return SiteUnavailableError(
            f"Google Drive keeps rate-limiting {self.email} on site '{self.site}' while {what}; "
            f"transfers to this site pause for {_minutes(wait)}. Nothing is lost and no tries are "
            "counted; if this happens often, lower engine.workers_per_site or "
            f"sites.{self.site}.max_calls_per_s", site=self.site, retry_after_s=wait)


class _RateLimited(TransientError):
    """A rate-limit answer; after ``max_retries`` it becomes a short site hold."""


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
