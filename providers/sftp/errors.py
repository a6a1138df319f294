"""asyncssh and socket errors -> the error kinds the engine handles, with the fix named.

Connection trouble (refused, reset, timed out, the server restarting) is transient: the
engine retries with back-off and the upload resumes. What a retry cannot fix — a wrong
password or key, an untrusted or changed host key, a missing source, no permission, a
full disk — is permanent, and the message says what to change. Passwords and
passphrases never appear: messages name the user, the host and the key *file* only.
"""

from __future__ import annotations

import posixpath
import socket

import asyncssh

from app.errors import PermanentError, SiteSyncError, TransientError
from providers.sftp.options import SftpOptions

__all__ = [
    "auth_error",
    "classify",
    "forget_command",
    "host_key_error",
    "is_connection_error",
    "keyscan_command",
    "sftp_server_exited_error",
    "subsystem_refused_error",
    "unreachable_error",
]

# SFTP status errors that only a person can fix.
_PERMISSION = (asyncssh.SFTPPermissionDenied, asyncssh.SFTPWriteProtect)
_MISSING = (asyncssh.SFTPNoSuchFile, asyncssh.SFTPNoSuchPath)
_FULL = (asyncssh.SFTPNoSpaceOnFilesystem, asyncssh.SFTPQuotaExceeded)
_IN_THE_WAY = (asyncssh.SFTPFileIsADirectory, asyncssh.SFTPNotADirectory)


def is_connection_error(exc: BaseException) -> bool:
    """The connection or channel is gone or unusable (worth a reconnect), as opposed to
    the server answering an operation with an error."""
    if isinstance(exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection):
        return True
    if isinstance(exc, asyncssh.SFTPError):
        return False
    if isinstance(exc, asyncssh.PermissionDenied | asyncssh.HostKeyNotVerifiable):
        return False
    return isinstance(exc, asyncssh.DisconnectError | asyncssh.ChannelOpenError | OSError
                      | TimeoutError | EOFError | BrokenPipeError)


def keyscan_command(options: SftpOptions) -> str:
    target = options.known_hosts or "~/.ssh/known_hosts"
    port = f"-p {options.port} " if options.port != 22 else ""
    return f"ssh-keyscan {port}{options.host} >> {target}"


def forget_command(options: SftpOptions) -> str:
    """known_hosts names a server on port 22 by its name alone, else as [name]:port."""
    name = options.host if options.port == 22 else f"'[{options.host}]:{options.port}'"
    return f"ssh-keygen -R {name} -f {options.known_hosts}"


def host_key_error(site: str, options: SftpOptions, known: bool, offered: str | None) -> PermanentError:
    """The server's key is not in known_hosts (``known`` False) or differs from the one
    listed there (``known`` True: a reinstalled server, or someone in the middle)."""
    seen = f" The server offered {offered}." if offered else ""
    if known:
        return PermanentError(
            f"the host key of {options.host}:{options.port} (site '{site}') has CHANGED: it does "
            f"not match {options.known_hosts}.{seen} This happens when the server is reinstalled, "
            "or when someone intercepts the connection. Ask the server admin for the new key's "
            f"fingerprint; if it matches, remove the old entry (`{forget_command(options)}`) "
            f"and add the new one (`{keyscan_command(options)}`)")
    return PermanentError(
        f"the host key of {options.host}:{options.port} (site '{site}') is not trusted: "
        f"{options.known_hosts} does not list this server.{seen} Add it with "
        f"`{keyscan_command(options)}` after comparing the fingerprint with the one your "
        f"server admin gives you, or set sites.{site}.known_hosts to a file that lists it "
        f"(sites.{site}.insecure_skip_host_key_check: true turns the check off; for tests only)")


def auth_error(site: str, options: SftpOptions, exc: BaseException) -> PermanentError:
    if options.key_path:
        fix = (f"add the public key ({options.key_path}.pub) to ~{options.user}/.ssh/authorized_keys "
               f"on the server, or check sites.{site}.sftp_user and sites.{site}.sftp_key")
        if options.password:
            fix += f" / sites.{site}.sftp_pass"
    else:
        fix = f"check sites.{site}.sftp_user and sites.{site}.sftp_pass (or use sftp_key)"
    return PermanentError(
        f"the SFTP server {options.host}:{options.port} refused the login of user "
        f"'{options.user}' (site '{site}'): {getattr(exc, 'reason', '') or 'authentication failed'}; "
        f"{fix}")


def subsystem_refused_error(site: str, options: SftpOptions, reason: str) -> PermanentError:
    """The login works and channels open, but the server refuses the SFTP subsystem on
    them: OpenSSH answers so when its sshd_config has no ``Subsystem sftp`` line (it
    defines no subsystem by default). Only the server's admin can fix that, so retrying
    is pointless."""
    return PermanentError(
        f"the SFTP server {options.host}:{options.port} accepts the login of user '{options.user}' "
        f"(site '{site}') but refuses to start SFTP ({reason or 'subsystem request failed'}): its "
        "SFTP subsystem is not enabled. Enable it on the server: add the line "
        "`Subsystem sftp internal-sftp` to /etc/ssh/sshd_config, then reload sshd")


def sftp_server_exited_error(site: str, options: SftpOptions, tries: int) -> PermanentError:
    """The login works and the server accepts the SFTP subsystem, but each channel closes
    before the SFTP version handshake while the connection stays up: the program that
    sshd starts for ``Subsystem sftp`` is missing or dies at once (a path from another
    distribution, a removed package). Only the server's admin can fix that."""
    return PermanentError(
        f"the SFTP server {options.host}:{options.port} accepts the login of user '{options.user}' "
        f"(site '{site}') but its SFTP server program exited at once, before any SFTP data, on "
        f"{tries} channels in a row: the `Subsystem sftp` line in the server's /etc/ssh/sshd_config "
        "points at a program that is missing or fails (or a ForceCommand runs something else). "
        "Check that line on the server; `Subsystem sftp internal-sftp` works on any OpenSSH; "
        "then reload sshd")


def unreachable_error(site: str, options: SftpOptions, exc: BaseException) -> TransientError:
    if isinstance(exc, socket.gaierror):
        why = f"the name '{options.host}' cannot be resolved ({exc.strerror or exc})"
        hint = f"; check sites.{site}.sftp_host and the network"
    elif isinstance(exc, ConnectionRefusedError):
        why = "the connection was refused"
        hint = f"; is the SSH server running on port {options.port}? (sites.{site}.sftp_port)"
    elif isinstance(exc, TimeoutError):
        why = f"no answer within {options.connect_timeout_s:g} s"
        hint = f"; check the network, firewall and sites.{site}.sftp_host"
    else:
        why = str(getattr(exc, "reason", "") or exc) or type(exc).__name__
        hint = ""
    return TransientError(
        f"cannot reach SFTP server {options.host}:{options.port} for site '{site}': {why}{hint}; "
        "will retry")


def classify(exc: BaseException, site: str, options: SftpOptions, doing: str, path: str) -> SiteSyncError:
    """An error from an operation on ``path`` (a server path); ``doing`` is "reading",
    "writing", "checking" or "deleting"."""
    if isinstance(exc, SiteSyncError):
        return exc
    where = f"{path} on site '{site}' ({options.host})"
    reason = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
    if is_connection_error(exc):
        return TransientError(
            f"connection to SFTP server {options.host}:{options.port} lost while {doing} {path} "
            f"(site '{site}'): {reason}; will retry and resume")
    if isinstance(exc, _MISSING):
        if doing == "reading":
            return PermanentError(
                f"source file missing on site '{site}': {path} ({options.host}); re-publish it or "
                "reset this site for the file")
        return TransientError(f"a folder vanished while {doing} {where}; will retry")
    if isinstance(exc, _PERMISSION):
        access = "read" if doing == "reading" else "write"
        return PermanentError(
            f"permission denied while {doing} {where}; give the SFTP user '{options.user}' "
            f"{access} access to {posixpath.dirname(path)} on the server, then retry")
    if isinstance(exc, _FULL):
        return PermanentError(
            f"the SFTP server's disk is full or over quota while {doing} {where}; free space "
            "on the server, then retry")
    if isinstance(exc, _IN_THE_WAY):
        return PermanentError(
            f"a folder and a file are in each other's way while {doing} {where} ({reason}); "
            "rename or remove the one that should not be there")
    if isinstance(exc, asyncssh.SFTPOpUnsupported):
        return PermanentError(f"the SFTP server does not support an operation needed for {doing} "
                              f"{where}: {reason}")
    return TransientError(f"SFTP error while {doing} {where}: {reason}; will retry")
