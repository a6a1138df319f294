"""Webhook: POST to a URL when a representation is fully available on a site.

Options (``hooks.plugins.webhook_ready``): ``url`` (required, http or https),
``sites`` (default: any), ``headers`` (e.g. ``{"Authorization": "Bearer ..."}``),
``timeout_s`` (10), ``retries`` (3 quick tries per attempt).

Each POST carries the event as JSON and an ``Idempotency-Key`` header that is the same
every time this event is sent, so the receiver can drop a repeat. A server that is down
or answers 5xx/429 is tried again later (the plugin waits and keeps the event, the
other plugins go on); a 4xx answer or a redirect to another host stops the plugin with
the reason, until the settings or the server are fixed. Redirects are only followed
within the same server (app/hooks/webhook.py).
"""

from __future__ import annotations

from app.hooks import PluginError, RetryLater
from app.hooks.webhook import WebhookError, check_url, post_json


def register(reg):
    try:
        url = check_url(reg.options.get("url"))
    except ValueError as exc:
        raise PluginError(f"{exc}; set hooks.plugins.{reg.name}.url in the settings") from None
    reg.callback(send, events=["representation_ready"], sites=reg.options.get("sites"),
                 args={"url": url, "headers": dict(reg.options.get("headers") or {}),
                       "timeout_s": float(reg.options.get("timeout_s", 10)),
                       "retries": int(reg.options.get("retries", 3))})


def payload(event, ctx):
    return {
        "event": event.type, "id": event.id, "idempotency_key": ctx.idempotency_key,
        "at": event.at.isoformat(), "project": event.project, "site": event.site,
        "representation_id": event.repre_id, "representation": dict(event.data),
        "redelivery": ctx.redelivery,
    }


def send(event, ctx, args):
    try:
        result = post_json(args["url"], payload(event, ctx), ctx.idempotency_key,
                           headers=args["headers"], timeout_s=args["timeout_s"],
                           retries=args["retries"])
    except WebhookError as exc:
        if exc.retryable:
            raise RetryLater(str(exc), after_s=exc.retry_after_s) from None
        raise
    ctx.log.info("event %d posted (HTTP %d after %d attempt(s))", event.id, result.status,
                 result.attempts)
