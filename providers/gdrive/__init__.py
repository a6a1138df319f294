"""Google Drive provider (service account, My Drive and shared drives); see .provider."""

from providers.gdrive.provider import GDriveProvider

__all__ = ["GDriveProvider"]
