"""A Google Drive v3 emulator for tests and benchmarks (see :mod:`.server`)."""

from tests.gdrive_emulator.auth import ServiceAccountKey
from tests.gdrive_emulator.server import FOLDER, UNIT, USER_DRIVE, FakeDrive, Fault, LogEntry

__all__ = ["FOLDER", "UNIT", "USER_DRIVE", "FakeDrive", "Fault", "LogEntry", "ServiceAccountKey"]
