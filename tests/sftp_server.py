"""A real OpenSSH ``sshd`` on 127.0.0.1 for the SFTP tests (Debian's openssh-server).

The server runs as an unprivileged dedicated user (``sitesync-sftp``, created with
``useradd`` when the tests run as root, as in CI; otherwise as the current user, which is
all a developer laptop needs): it can then only log in as that user, needs no
``/run/sshd``, and its login shell is plain ``/bin/sh`` so a remote ``sha256sum`` costs
milliseconds (root's shell here sources a heavy ``.bashrc``).

It listens on four free high ports with one host key:

* ``port``: SFTP and exec (shell commands), what most studio servers allow their artists;
* ``sftp_only_port``: ``ForceCommand internal-sftp``, the locked-down setup where a
  remote hash command is impossible and the provider must verify by reading back;
* ``coreutils_port``: commands find ``sha256sum`` but no ``openssl`` (a minimal server);
* ``one_session_port``: ``MaxSessions 1``, one channel per connection (hardened servers).

As root (CI), :meth:`start_password_login` adds a port served by a root-run sshd
that accepts the dedicated user's password (a password check needs root to read
/etc/shadow), for sites that log in with ``sftp_pass``. :meth:`start_without_sftp` adds
:attr:`no_sftp_port`, an sshd that accepts logins but has no ``Subsystem sftp`` line (a
common misconfiguration; OpenSSH 9.2 allows no ``Subsystem`` in a ``Match`` block, so it
is its own process, started only by the tests that need it); likewise
:meth:`start_with_missing_sftp_server` adds :attr:`broken_sftp_port`, whose ``Subsystem
sftp`` line names a program that does not exist, and
:meth:`start_with_flaky_sftp_server` one whose SFTP program exits at once on request.

Helpers simulate what goes wrong in production: :meth:`drop_connections` kills every
session process (a cut network or a reboot of the far end seen from the client),
:meth:`stop`/:meth:`start` restart the server on the same ports and key, and
:meth:`known_hosts_with` writes known_hosts files with a wrong key or none.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BROKEN_SFTP_SETUPS", "BrokenSftpSetup", "SshServer", "free_port"]

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
USER = "sitesync-sftp"
#: OpenSSH's SFTP server program (Debian's path), run by the flaky subsystem's script.
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
#: What :meth:`SshServer.start_with_missing_sftp_server` names as its SFTP server program.
MISSING_SFTP_SERVER = "/usr/lib/openssh/no-such-sftp-server"

_PASSWORD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {etc}/hostkey
PidFile {etc}/sshd-password.pid
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers {user}
StrictModes no
Subsystem sftp internal-sftp
LogLevel ERROR
"""

_EXTRA_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {etc}/hostkey
PidFile {etc}/sshd-{name}.pid
AuthorizedKeysFile {etc}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
LogLevel ERROR
{subsystem}"""

_CONFIG = """\
Port {port}
Port {sftp_only_port}
Port {coreutils_port}
Port {one_session_port}
ListenAddress 127.0.0.1
HostKey {etc}/hostkey
PidFile {etc}/sshd.pid
AuthorizedKeysFile {etc}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
MaxStartups 200
MaxSessions 10
Subsystem sftp internal-sftp
LogLevel ERROR
Match LocalPort {sftp_only_port}
    ForceCommand internal-sftp
Match LocalPort {one_session_port}
    MaxSessions 1
Match LocalPort {coreutils_port}
    SetEnv PATH={etc}/coreutils-only
"""


def _spawn(config: str, as_user: list[str]) -> subprocess.Popen:
    """``sshd -D -f config`` under a watchdog shell that ends sshd when this test process
    is gone, even if it died without running its teardown (a segfault, SIGKILL): no
    orphaned servers."""
    watchdog = (f"{SSHD} -D -e -f {config} & child=$!; "
                f"while [ -d /proc/{os.getpid()} ] && kill -0 $child 2>/dev/null; do sleep 1; done; "
                "kill -9 $child 2>/dev/null")
    return subprocess.Popen([*as_user, "/bin/sh", "-c", watchdog], stdin=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path: Path, passphrase: str = "") -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "sitesync-test", "-f", str(path)],
        check=True,
    )


def _ensure_user() -> pwd.struct_passwd:
    """The dedicated server user when we are root (created once), else ourselves."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/sh", "--comment", "SiteSync test sshd", USER],
            check=True,
        )
        return pwd.getpwnam(USER)


@dataclass(frozen=True)
class BrokenSftpSetup:
    """An sshd that accepts the login but cannot serve SFTP, and what SiteSync's error
    must say about it (and must not): the provider, doctor and engine tests share it."""

    name: str
    #: The SshServer method that starts it, and the attribute holding its port.
    start: str
    port: str
    says: tuple[str, ...]
    never_says: tuple[str, ...]

    def started(self, sshd: SshServer) -> int:
        getattr(sshd, self.start)()
        return getattr(sshd, self.port)


BROKEN_SFTP_SETUPS = (
    # sshd_config has no `Subsystem sftp` line: the subsystem request is refused.
    BrokenSftpSetup(
        "no-subsystem-line", "start_without_sftp", "no_sftp_port",
        says=("refuses to start SFTP", "SFTP subsystem is not enabled",
              "add the line `Subsystem sftp internal-sftp` to /etc/ssh/sshd_config"),
        never_says=("refuses every channel", "will retry")),
    # `Subsystem sftp /usr/lib/openssh/no-such-sftp-server`: the request is accepted, the
    # program cannot start and the channel closes before the SFTP handshake.
    BrokenSftpSetup(
        "subsystem-program-missing", "start_with_missing_sftp_server", "broken_sftp_port",
        says=("its SFTP server program exited at once",
              "the `Subsystem sftp` line in the server's /etc/ssh/sshd_config",
              "`Subsystem sftp internal-sftp` works on any OpenSSH"),
        never_says=("will retry", "bytes read")),
)


class SshServer:
    """One sshd process tree; see the module docstring."""

    def __init__(self) -> None:
        self.user_info = _ensure_user()
        self.user = self.user_info.pw_name
        self.host = "127.0.0.1"
        self.port = free_port()
        self.sftp_only_port = free_port()
        #: Shell commands see only coreutils' sha256sum there (no openssl), as on a
        #: minimal server.
        self.coreutils_port = free_port()
        self.one_session_port = free_port()
        # Not under pytest's tmp (mode 0700, owned by the test user): sshd runs as
        # another user and must reach its keys and data.
        self.base = Path(tempfile.mkdtemp(prefix="sitesync-sshd-"))
        self.base.chmod(0o755)
        self.etc = self.base / "etc"
        self.data = self.base / "data"
        self.client_dir = self.base / "client"
        for folder in (self.etc, self.data):
            folder.mkdir()
        self.client_dir.mkdir(mode=0o700)
        _keygen(self.etc / "hostkey")
        _keygen(self.client_dir / "id_ed25519")
        _keygen(self.client_dir / "id_protected", passphrase="correct horse")
        _keygen(self.client_dir / "other_host_key")
        authorized = "".join(
            (self.client_dir / name).read_text() for name in ("id_ed25519.pub", "id_protected.pub")
        )
        (self.etc / "authorized_keys").write_text(authorized)
        (self.etc / "sshd_config").write_text(_CONFIG.format(
            port=self.port, sftp_only_port=self.sftp_only_port, coreutils_port=self.coreutils_port,
            one_session_port=self.one_session_port,
            etc=self.etc))
        only = self.etc / "coreutils-only"
        only.mkdir()
        (only / "sha256sum").symlink_to(shutil.which("sha256sum") or "/usr/bin/sha256sum")
        self._chown(self.etc)
        self._chown(self.data)
        self.key = str(self.client_dir / "id_ed25519")
        self.protected_key = str(self.client_dir / "id_protected")
        self.known_hosts = str(self.client_dir / "known_hosts")
        self._write_known_hosts(self.known_hosts, self.etc / "hostkey.pub")
        self._process: subprocess.Popen | None = None
        self._mounts: list[Path] = []
        self._password_process: subprocess.Popen | None = None
        self._saved_password_hash: str | None = None
        self.password_port = 0
        self.password = ""
        self._no_sftp_process: subprocess.Popen | None = None
        self.no_sftp_port = 0
        self._broken_sftp_process: subprocess.Popen | None = None
        self.broken_sftp_port = 0
        self._flaky_sftp_process: subprocess.Popen | None = None
        self.flaky_sftp_port = 0

    @property
    def ports(self) -> tuple[int, ...]:
        """The key-login ports of the main sshd."""
        return (self.port, self.sftp_only_port, self.coreutils_port, self.one_session_port)

    # -- lifecycle --------------------------------------------------------------------------

    def _chown(self, path: Path) -> None:
        if os.geteuid() != 0:
            return
        uid, gid = self.user_info.pw_uid, self.user_info.pw_gid
        os.chown(path, uid, gid)
        for parent, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(parent, name), uid, gid, follow_symlinks=False)

    def start(self, timeout: float = 10.0) -> None:
        """Start sshd (again) on the same ports and host key; returns once it answers."""
        if self._process is not None and self._process.poll() is None:
            return
        as_user = ["runuser", "-u", self.user, "--"] if os.geteuid() == 0 else []
        config = str(self.etc / "sshd_config")
        subprocess.run([*as_user, SSHD, "-t", "-f", config], check=True)
        self._process = _spawn(config, as_user)
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while not self._banner(port):
                if self._process.poll() is not None:
                    raise RuntimeError(f"sshd exited with {self._process.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd did not answer on port {port}")
                time.sleep(0.02)

    def start_password_login(self, timeout: float = 10.0) -> None:
        """Root only: give the dedicated user a random password and serve SFTP with
        password login on :attr:`password_port` (stopped, and the password removed
        again, by :meth:`close`)."""
        if self._password_process is not None:
            return
        if os.geteuid() != 0:
            raise RuntimeError("password login needs a root-run sshd (it reads /etc/shadow)")
        with open("/etc/shadow") as shadow:
            for line in shadow:
                fields = line.split(":")
                if fields[0] == self.user:
                    self._saved_password_hash = fields[1]
        self.password = secrets.token_urlsafe(18)
        subprocess.run(["chpasswd"], input=f"{self.user}:{self.password}\n", text=True, check=True)
        self.password_port = free_port()
        config = self.etc / "sshd_config_password"
        config.write_text(_PASSWORD_CONFIG.format(port=self.password_port, etc=self.etc,
                                                  user=self.user))
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation (root sshd)
        subprocess.run([SSHD, "-t", "-f", str(config)], check=True)
        self._password_process = _spawn(str(config), [])
        deadline = time.monotonic() + timeout
        while not self._banner(self.password_port):
            if self._password_process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the password sshd did not start")
            time.sleep(0.02)
        with open(self.known_hosts, "a") as known:
            key = " ".join((self.etc / "hostkey.pub").read_text().split()[:2])
            known.write(f"{self._entry_names(self.password_port)} {key}\n")

    def start_without_sftp(self, timeout: float = 10.0) -> None:
        """Serve key logins on :attr:`no_sftp_port` from an sshd whose config has no
        ``Subsystem sftp`` line: every SFTP channel opens and its subsystem request is
        refused (stopped by :meth:`close`)."""
        if self._no_sftp_process is None:
            self.no_sftp_port, self._no_sftp_process = self._start_extra("no_sftp", "", timeout)

    def start_with_missing_sftp_server(self, timeout: float = 10.0) -> None:
        """Serve key logins on :attr:`broken_sftp_port` from an sshd whose ``Subsystem
        sftp`` line names a program that does not exist (a path from another distribution,
        a package removed): OpenSSH accepts the subsystem request, then the program fails
        to start and the channel closes before any SFTP data (stopped by :meth:`close`)."""
        if self._broken_sftp_process is None:
            self.broken_sftp_port, self._broken_sftp_process = self._start_extra(
                "broken_sftp", f"Subsystem sftp {MISSING_SFTP_SERVER}\n", timeout)

    def start_with_flaky_sftp_server(self, timeout: float = 10.0) -> None:
        """Serve key logins on :attr:`flaky_sftp_port` from an sshd whose SFTP program
        exits at once for the next channels :meth:`fail_next_sftp_channels` asks for, then
        runs OpenSSH's sftp-server: one-off channel drops on a connection that stays up
        (stopped by :meth:`close`)."""
        if self._flaky_sftp_process is not None:
            return
        script = self.etc / "flaky-sftp-server"
        script.write_text(
            "#!/bin/sh\n"
            f"left=$(cat {self.etc}/flaky-fails 2>/dev/null || echo 0)\n"
            f'if [ "$left" -gt 0 ]; then echo $((left - 1)) > {self.etc}/flaky-fails; exit 1; fi\n'
            f"exec {SFTP_SERVER}\n")
        script.chmod(0o755)
        self.fail_next_sftp_channels(0)
        self.flaky_sftp_port, self._flaky_sftp_process = self._start_extra(
            "flaky_sftp", f"Subsystem sftp {script}\n", timeout)

    def fail_next_sftp_channels(self, count: int) -> None:
        """Make the next ``count`` SFTP channels on :attr:`flaky_sftp_port` close at once."""
        fails = self.etc / "flaky-fails"
        fails.write_text(f"{count}\n")
        self._chown(fails)

    def _start_extra(self, name: str, subsystem: str, timeout: float) -> tuple[int, subprocess.Popen]:
        """An sshd of its own for key logins with the given ``Subsystem`` lines (OpenSSH
        9.2 allows none in a ``Match`` block); returns its port and process."""
        port = free_port()
        config = self.etc / f"sshd_config_{name}"
        config.write_text(_EXTRA_CONFIG.format(port=port, etc=self.etc, name=name,
                                                 subsystem=subsystem))
        self._chown(config)
        as_user = ["runuser", "-u", self.user, "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_user, SSHD, "-t", "-f", str(config)], check=True)
        process = _spawn(str(config), as_user)
        deadline = time.monotonic() + timeout
        while not self._banner(port):
            if process.poll() is not None or time.monotonic() > deadline:
                self._end(process)
                raise RuntimeError(f"the sshd for {name} did not start")
            time.sleep(0.02)
        with open(self.known_hosts, "a") as known:
            key = " ".join((self.etc / "hostkey.pub").read_text().split()[:2])
            known.write(f"{self._entry_names(port)} {key}\n")
        return port, process

    def _end(self, process: subprocess.Popen | None) -> None:
        """Kill one of the extra servers and its sessions."""
        if process is None:
            return
        victims = self._descendants(process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        self.kill(victims)
        process.wait(10)

    def _stop_password_login(self) -> None:
        process, self._password_process = self._password_process, None
        self._end(process)
        if self._saved_password_hash is not None:
            subprocess.run(["usermod", "-p", self._saved_password_hash, self.user], check=False)
            self._saved_password_hash = None

    def _banner(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=1) as sock:
                return sock.recv(8).startswith(b"SSH-2.0")
        except OSError:
            return False

    def _listener_pid(self) -> int | None:
        try:
            return int((self.etc / "sshd.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _descendants(self, pid: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
        found, todo = [], [pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append(child)
                todo.append(child)
        return found

    def drop_connections(self) -> int:
        """SIGKILL every session process: clients see their connections cut mid-stream,
        the listener stays up. Returns how many processes were killed."""
        listener = self._listener_pid()
        if listener is None:
            return 0
        victims = self._descendants(listener)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(victims)

    def freeze_connections(self) -> list[int]:
        """SIGSTOP every session process: the server stops answering on open connections
        (a hung NAS behind the server, a dead route) while new logins still work."""
        listener = self._listener_pid()
        victims = self._descendants(listener) if listener is not None else []
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        return victims

    def kill(self, pids: list[int]) -> None:
        """SIGKILL processes (frozen sessions) and let their connections close."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        """Kill the listener and every session (a crashed or rebooted server)."""
        if self._process is None:
            return
        # Session processes run in their own sessions: collect them before the listener
        # goes, then kill everything, as a crash or a reboot would.
        victims = self._descendants(self._process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self.kill(victims)
        self._process.wait(10)
        self._process = None
        with contextlib.suppress(OSError):
            (self.etc / "sshd.pid").unlink()

    def close(self) -> None:
        self.stop()
        self._stop_password_login()
        process, self._no_sftp_process = self._no_sftp_process, None
        self._end(process)
        process, self._broken_sftp_process = self._broken_sftp_process, None
        self._end(process)
        process, self._flaky_sftp_process = self._flaky_sftp_process, None
        self._end(process)
        for mount in reversed(self._mounts):
            subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    # -- storage on the server --------------------------------------------------------------

    def folder(self, name: str) -> Path:
        """A fresh folder on the server owned by the sshd user (a site root)."""
        path = self.data / name
        path.mkdir(parents=True)
        self._chown(path)
        return path

    def small_disk(self, name: str, size: str = "2m") -> Path:
        """A folder on its own tiny tmpfs, to fill the server's disk (needs root's
        CAP_SYS_ADMIN; the caller checks :func:`can_mount`)."""
        path = self.folder(name)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                       check=True)
        self._mounts.append(path)
        self._chown(path)
        return path

    def chown(self, path: Path) -> None:
        """Give a file or folder the test created to the sshd user."""
        self._chown(path)

    # -- trust -------------------------------------------------------------------------------

    def _entry_names(self, port: int) -> str:
        return f"[{self.host}]:{port}"

    def _write_known_hosts(self, path: str, pub: Path) -> None:
        key = " ".join(pub.read_text().split()[:2])
        ports = self.ports
        lines = [f"{self._entry_names(port)} {key}\n" for port in ports]
        Path(path).write_text("".join(lines))

    def known_hosts_with(self, name: str, kind: str) -> str:
        """A known_hosts file: ``"wrong"`` lists another key for this server (a changed
        key, or a man in the middle); ``"empty"`` does not know the server at all."""
        path = self.client_dir / f"known_hosts.{name}"
        if kind == "wrong":
            self._write_known_hosts(str(path), self.client_dir / "other_host_key.pub")
        elif kind == "empty":
            path.write_text("")
        else:
            raise ValueError(kind)
        return str(path)

    def site_config(self, root: Path | dict[str, Path], **options: object) -> dict[str, object]:
        """Provider config (the settings keys) for a site on this server."""
        roots = root if isinstance(root, dict) else {"work": root}
        config: dict[str, object] = {
            "root": {name: str(path) for name, path in roots.items()},
            "sftp_host": self.host,
            "sftp_port": self.port,
            "sftp_user": self.user,
            "sftp_key": self.key,
            "known_hosts": self.known_hosts,
        }
        config.update(options)
        return config


def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN, not every container)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = Path(tempfile.mkdtemp(prefix="sitesync-mount-probe-"))
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                              capture_output=True, check=False)
        if done.returncode != 0:
            return False
        subprocess.run(["umount", str(probe)], check=False)
        return True
    finally:
        probe.rmdir()
