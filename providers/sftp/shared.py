"""One connection pool per SFTP site, however many providers use it.

The engine builds a provider per (project, site): a studio with thirty projects on one
SFTP server would otherwise open thirty pools — thirty event-loop threads and up to
thirty times ``sftp_max_connections`` logins, each pool unaware of the others' channels.
Providers of the same site with the same connection settings share one
:class:`SiteConnections` instead (the roots may differ per project: they are not part
of the connection). The last provider to close it closes the connections.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from providers.sftp.loop import LoopThread
from providers.sftp.options import SftpOptions
from providers.sftp.pool import SessionPool
from providers.sftp.verify import Verifier

__all__ = ["SiteConnections", "attach", "detach"]


@dataclass(eq=False)
class SiteConnections:
    """The loop thread, the pool and what was learnt about the server (its hash command)."""

    loop: LoopThread
    pool: SessionPool
    verifier: Verifier
    users: int = 0


_lock = threading.Lock()
_shared: dict[tuple[str, SftpOptions], SiteConnections] = {}


def attach(site: str, options: SftpOptions, client_key: Any | None) -> SiteConnections:
    """The site's connections for one more provider (created on first use)."""
    with _lock:
        connections = _shared.get((site, options))
        if connections is None:
            pool = SessionPool(site, options, client_key)
            connections = SiteConnections(LoopThread(f"sitesync-sftp-{site}"), pool,
                                          Verifier(site, options, pool))
            _shared[(site, options)] = connections
        connections.users += 1
        return connections


def detach(site: str, options: SftpOptions, connections: SiteConnections) -> None:
    """A provider is done with them; the last one closes the connections and the loop."""
    with _lock:
        connections.users -= 1
        if connections.users > 0:
            return
        if _shared.get((site, options)) is connections:
            del _shared[(site, options)]
    loop = connections.loop
    loop.close(connections.pool.close() if loop.started else None)
