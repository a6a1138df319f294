"""How an upload's content is checked on the server before it is renamed into place.

OpenSSH's sftp-server computes no hashes (no ``check-file`` extension), so there are two
honest ways to know what the server stored:

* **server hash**: hash the part file on the server with a command run over an SSH exec
  channel (what rclone does with md5sum): ``openssl dgst -sha256`` where OpenSSL is
  installed (it uses the CPU's SHA instructions: 0.8 s for 256 MiB here, where coreutils'
  ``sha256sum`` took 3.8 s), else ``sha256sum``. Costs one command (~20 ms) and no
  transfer, but needs a shell: servers with ``ForceCommand internal-sftp`` refuse it.
* **re-read**: read the part back over SFTP and hash it here. Works everywhere, costs
  the file's size again on the wire.

``sftp_verify`` chooses: ``auto`` (default) probes once which of the two commands the
server runs and uses it, else re-reads; ``hash`` insists on the server hash (an error
naming the fix when it cannot run); ``reread`` always re-reads. Files up to
:data:`REREAD_MAX_BYTES` are always re-read: one or four requests are cheaper than
starting a process on the server.
"""

from __future__ import annotations

import logging
import re
import shlex
from typing import Any

import asyncssh

from app.errors import PermanentError, TransientError
from providers.sftp.options import SftpOptions
from providers.sftp.pool import SessionPool
from providers.sftp.streams import hash_remote_file

__all__ = ["EMPTY_SHA256", "REREAD_MAX_BYTES", "Verifier"]

_log = logging.getLogger(__name__)

REREAD_MAX_BYTES = 1 << 20
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#: ``<hex> *path`` (openssl -r) or ``<hex>  path`` (sha256sum; coreutils prefixes a
#: backslash when the name needs escaping).
_SHA256_LINE = re.compile(r"^\\?([0-9a-f]{64}) ")
#: Server commands tried in this order, as (probe on empty input, command for a path).
#: Paths are absolute, so they never look like options.
COMMANDS = (
    ("openssl dgst -sha256 -r", "openssl dgst -sha256 -r {path}"),
    ("sha256sum", "sha256sum -- {path}"),
)
#: Bytes per second a server hashes at least; sizes the command's time limit.
_HASH_RATE = 20e6


class Verifier:
    """Per site: which check to use, learnt once in ``auto`` mode."""

    def __init__(self, site: str, options: SftpOptions, pool: SessionPool) -> None:
        self._site = site
        self._options = options
        self._pool = pool
        #: None: not probed yet; True: a hash command runs there; False: none does.
        self.server_hash_works: bool | None = None if options.verify != "reread" else False
        #: The command template that works (from COMMANDS), once probed.
        self.command = ""
        self.last_method = ""

    @property
    def method(self) -> str:
        """For :attr:`providers.base.Features.verification`."""
        if self._options.verify == "reread" or self.server_hash_works is False:
            return "reread"
        if self._options.verify == "hash" or self.server_hash_works:
            return "server_hash"
        return "server_hash_or_reread"

    def _refused(self, detail: str) -> PermanentError:
        return PermanentError(
            f"site '{self._site}' has sftp_verify 'hash', but the server {self._options.host} cannot "
            f"run a SHA-256 command (openssl dgst or sha256sum) for this user ({detail}); allow "
            "shell commands for the user, or set "
            f"sites.{self._site}.sftp_verify to auto or reread")

    async def probe(self) -> str | None:
        """Find a hash command the server runs (hashing empty input): None if one does
        (remembered in :attr:`command`), else why not."""
        problems = []
        for probe, command in COMMANDS:
            try:
                done = await self._pool.run_command(probe, self._options.stall_timeout_s)
            except (TransientError, PermanentError, asyncssh.ChannelOpenError):
                raise  # a refused channel says nothing about commands: the caller decides
            except Exception as exc:
                problems.append(f"{type(exc).__name__}: {getattr(exc, 'reason', '') or exc}")
                break  # no command channel at all: the next command will not fare better
            if done.exit_status == 0 and EMPTY_SHA256 in (done.stdout or ""):
                self.command = command
                return None
            output = " ".join(((done.stderr or "") + " " + (done.stdout or "")).split())[:200]
            problems.append(f"{probe.split()[0]}: exit status {done.exit_status}: "
                            f"{output or 'no output'}")
        return "; ".join(problems)

    def wants_server_hash(self, size: int, algorithms: set[str]) -> bool:
        """Whether :meth:`server_sha256` is worth a try for this part: only SHA-256
        wanted, the file over :data:`REREAD_MAX_BYTES`, and the server not known to
        refuse (in ``hash`` mode tried anyway, so that the refusal is reported)."""
        if self._options.verify == "reread" or set(algorithms) - {"sha256"}:
            return False
        if size <= REREAD_MAX_BYTES:
            return False
        return self._options.verify == "hash" or self.server_hash_works is not False

    async def server_sha256(self, path: str, size: int) -> str | None:
        """The server's sha256 of ``path``; None when it cannot tell (auto falls back).

        Runs on a command channel of its own: the caller gives its SFTP channel back to
        the pool first, or on a server whose every channel slot is held by uploads at
        this step (``MaxSessions 1``) the command would wait for ever."""
        try:
            return await self._server_sha256(path, size)
        except asyncssh.ChannelOpenError as exc:
            # No channel for the command right now (the server's session limit): no
            # verdict on its commands; this part is read back instead.
            if self._options.verify == "hash":
                raise TransientError(
                    f"the SFTP server {self._options.host} refused a channel for the hash "
                    f"command of {path} (site '{self._site}': {exc.reason}); will retry") from None
            return None

    async def _server_sha256(self, path: str, size: int) -> str | None:
        if self.server_hash_works is None:
            problem = await self.probe()
            self.server_hash_works = problem is None
            if problem is not None:
                if self._options.verify == "hash":
                    raise self._refused(problem)
                _log.warning("sftp %s: the server runs no hash command (%s); uploads are "
                             "verified by reading them back", self._site, problem)
                return None
        if not self.server_hash_works:
            if self._options.verify == "hash":
                raise self._refused("it failed before")
            return None
        timeout = self._options.stall_timeout_s + size / _HASH_RATE
        done = await self._pool.run_command(self.command.format(path=shlex.quote(path)), timeout)
        match = _SHA256_LINE.match(done.stdout or "") if done.exit_status == 0 else None
        if match:
            self.last_method = "server_hash"
            return match.group(1)
        detail = " ".join((done.stderr or done.stdout or "no output").split())[:200]
        if self._options.verify == "hash":
            raise TransientError(f"hashing {path} failed on the server for site "
                                 f"'{self._site}' (exit status {done.exit_status}: {detail}); will retry")
        # auto: e.g. a chroot where the shell sees other paths than SFTP. Stop trying.
        self.server_hash_works = False
        _log.warning("sftp %s: hashing %s failed on the server (%s); uploads are verified "
                     "by reading them back from now on", self._site, path, detail)
        return None

    async def reread(self, file: Any, size: int, algorithms: set[str]) -> dict[str, str]:
        """Hex digests (sha256 and ``algorithms``) of the part read back through its
        open handle ``file``."""
        algorithms = set(algorithms) | {"sha256"}
        _, digests = await hash_remote_file(file, size, self._options.stall_timeout_s, algorithms)
        self.last_method = "reread"
        return digests
