"""POST a JSON payload to a webhook: retries, an idempotency key, no cross-host redirects.

Used by the ``webhook_ready`` example plugin and usable by any plugin. Why these rules:

* **Idempotency-Key header**: a delivery can be repeated (a crash after the POST, a
  retry after a timeout the server did not see); the receiver drops the repeat by key.
* **Retries** on what may pass (connection refused or reset, timeouts, HTTP 5xx, 429 with
  ``Retry-After``), with exponential back-off; other 4xx answers mean the request itself
  is wrong and are not retried.
* **Redirects are followed only to the same scheme, host and port**, and only 307/308,
  which keep the method and body. A redirect to another host is refused: the payload
  (and any ``Authorization`` header) must never be handed to a server nobody configured.
  301/302/303 would turn the POST into a GET and drop the payload, so they are refused
  with a message to configure the final address.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any

from app.redact import redact

__all__ = ["WebhookError", "WebhookResult", "post_json"]

_FOLLOWED = (307, 308)
_REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 3
USER_AGENT = "SiteSync-webhook/1"


class WebhookError(Exception):
    """The POST did not succeed. ``retryable`` tells whether trying later may help."""

    def __init__(self, message: str, *, retryable: bool, retry_after_s: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.status = status


@dataclass(frozen=True)
class WebhookResult:
    status: int
    attempts: int
    url: str


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def check_url(url: object) -> str:
    """An http(s) URL with a host, or ValueError saying what to write."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("no url: set the webhook's address, e.g. https://tracker.example/hook")
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{redact(url)!r} is not an http(s) URL with a host")
    return url.strip()


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow 307/308 within the origin of the first request; refuse anything else."""

    def __init__(self, origin: tuple[str, str, int | None]) -> None:
        self.origin = origin
        self.count = 0

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Message, newurl: str) -> urllib.request.Request | None:
        target = urllib.parse.urljoin(req.full_url, newurl)
        if _origin(target) != self.origin:
            raise WebhookError(
                f"the webhook answered {code} redirecting to another server "
                f"({redact(_origin_text(target))}); refused, so the payload and its headers "
                "never leave the configured server. Set the url to the final address",
                retryable=False, status=code)
        if code not in _FOLLOWED:
            raise WebhookError(
                f"the webhook answered {code} (redirect to {redact(target)}), which would turn "
                "the POST into a GET without its body; set the url to the final address",
                retryable=False, status=code)
        self.count += 1
        if self.count > MAX_REDIRECTS:
            raise WebhookError(f"more than {MAX_REDIRECTS} redirects", retryable=False,
                               status=code)
        return urllib.request.Request(target, data=req.data, headers=dict(req.header_items()),
                                      method=req.get_method())


def _origin_text(url: str) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}"


def post_json(
    url: str,
    payload: Mapping[str, Any],
    idempotency_key: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
    retries: int = 3,
    backoff_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> WebhookResult:
    """POST ``payload`` as JSON with ``Idempotency-Key``; retry what may pass.

    Raises WebhookError after the last try (``retryable`` says whether a later attempt
    could work). Messages never contain header values (they may hold tokens)."""
    url = check_url(url)
    body = json.dumps(payload, default=str).encode("utf-8")
    all_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   **dict(headers or {}), "Idempotency-Key": idempotency_key}
    last: WebhookError | None = None
    for attempt in range(1, retries + 2):
        try:
            status = _post_once(url, body, all_headers, timeout_s)
            return WebhookResult(status=status, attempts=attempt, url=url)
        except WebhookError as exc:
            last = exc
            if not exc.retryable or attempt > retries:
                break
            delay = exc.retry_after_s if exc.retry_after_s is not None else \
                backoff_s * 2 ** (attempt - 1)
            sleep(min(delay, 60.0))
    assert last is not None
    raise last


def _post_once(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
    opener = urllib.request.build_opener(_SameOriginRedirects(_origin(url)))
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with opener.open(request, timeout=timeout_s) as response:
            response.read()
            return int(response.status)
    except WebhookError:
        raise
    except urllib.error.HTTPError as exc:
        code = exc.code
        exc.close()
        if code in _REDIRECTS:  # a redirect the handler let through unfollowed
            raise WebhookError(f"the webhook answered {code}; set the url to the final "
                               "address", retryable=False, status=code) from None
        retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        retryable = code >= 500 or code in (408, 429)
        raise WebhookError(f"the webhook at {redact(_origin_text(url))} answered HTTP {code}",
                           retryable=retryable, retry_after_s=retry_after, status=code) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WebhookError(f"the webhook at {redact(_origin_text(url))} cannot be reached "
                           f"({reason})", retryable=True) from None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own back-off
