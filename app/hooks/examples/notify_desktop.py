"""Desktop notification when a representation is ready on this machine (or failed).

Options (``hooks.plugins.notify_desktop``): ``sites`` (default ``["local"]``: this
machine's site), ``events`` (default: representation_ready, file_failed,
integrity_alert; file_failed only notifies when it will not be retried).

Uses ``notify-send`` (Linux desktops) when it is installed; otherwise, and on machines
without a desktop (a studio server), the message goes to the plugin's log instead.
No Qt: it runs the same inside the tray and in ``sitesync serve``.
"""

from __future__ import annotations

import shutil
import subprocess

DEFAULT_EVENTS = ["representation_ready", "file_failed", "integrity_alert"]


def register(reg):
    reg.callback(notify, events=reg.options.get("events") or DEFAULT_EVENTS,
                 sites=reg.options.get("sites") or ["local"],
                 args={"command": shutil.which("notify-send")})


def message(event):
    """(title, body) for an event, in words an artist reads."""
    data = event.data
    if event.type == "representation_ready":
        version = data.get("version")
        name = " ".join(str(p) for p in (data.get("asset"), data.get("subset"),
                                          f"v{version:03d}" if isinstance(version, int) else None,
                                          data.get("representation")) if p)
        return "SiteSync: ready", f"{name or event.repre_id} is ready on {event.site}"
    if event.type == "file_failed":
        return "SiteSync: failed", f"{data.get('path', event.file_id)}: {data.get('error', '')}"
    return "SiteSync: check this file", f"{data.get('path', event.file_id)}: {data.get('error', '')}"


def notify(event, ctx, args):
    if event.type == "file_failed" and not event.data.get("permanent"):
        return  # it will be retried: not worth interrupting anyone
    if ctx.redelivery:
        return  # a notification possibly shown already is better not shown twice
    title, body = message(event)
    command = args["command"]
    if command:
        try:
            subprocess.run([command, "--app-name=SiteSync", title, body], check=False,
                           timeout=5, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            return
        except (OSError, subprocess.TimeoutExpired) as exc:
            ctx.log.info("notify-send failed (%s); logging instead", exc)
    ctx.log.info("%s: %s", title, body)
