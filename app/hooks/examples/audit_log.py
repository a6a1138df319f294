"""Audit log: every event as one JSON line, written exactly once.

Options (``hooks.plugins.audit_log``): ``path`` (default: ``audit.jsonl`` in the
plugin's data folder), ``events`` (default: all).

The file is outside SiteSync, so "exactly once" needs the plugin's help: each line
carries the event's idempotency key, and when SiteSync says an event may have been
delivered before (``ctx.redelivery``, after a crash or a replay) the plugin first looks
for that key in the file. A line cut short by a crash is finished with a newline before
the next one is written, and ignored when reading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

#: Bytes from the end of the file searched for a redelivered event's key.
TAIL_BYTES = 4 * 1024 * 1024


def register(reg):
    path = Path(reg.options.get("path") or reg.data_dir / "audit.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    reg.callback(write_line, events=reg.options.get("events"), args={"path": path})


def write_line(event, ctx, args):
    path = args["path"]
    if ctx.redelivery and _already_written(path, ctx.idempotency_key):
        ctx.log.info("event %d is already in %s; not written twice", event.id, path)
        return
    record = {
        "key": ctx.idempotency_key, "id": event.id, "type": event.type,
        "at": event.at.isoformat(), "project": event.project, "site": event.site,
        "repre_id": event.repre_id, "file_id": event.file_id, "data": dict(event.data),
    }
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(path, "ab") as stream:
        if stream.tell() and not _ends_with_newline(path):
            stream.write(b"\n")  # a line cut short by a crash stays alone on its line
        stream.write(line.encode("utf-8"))
        stream.flush()
        os.fsync(stream.fileno())


def _ends_with_newline(path):
    with open(path, "rb") as stream:
        stream.seek(-1, os.SEEK_END)
        return stream.read(1) == b"\n"


def _already_written(path, key):
    try:
        with open(path, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            stream.seek(max(0, stream.tell() - TAIL_BYTES))
            tail = stream.read()
    except FileNotFoundError:
        return False
    needle = json.dumps(key).encode("utf-8")
    for line in tail.splitlines():
        if needle in line and line.endswith(b"}"):
            try:
                if json.loads(line).get("key") == key:
                    return True
            except ValueError:
                continue
    return False
