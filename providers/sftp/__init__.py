"""The SFTP provider (see :mod:`providers.sftp.provider`)."""

from providers.sftp.provider import SftpProvider

__all__ = ["SftpProvider"]
