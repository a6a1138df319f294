"""The Sync Queue's columns (OpenPype's, in OpenPype's order) and how values read as text."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["COLUMNS", "Column", "column_index", "pretty_date", "pretty_size", "pretty_version"]


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    #: The store's sort key (SummaryQuery.SORT_KEYS).
    sort_key: str


COLUMNS: tuple[Column, ...] = (
    Column("asset", "Asset", 140, "asset"),
    Column("subset", "Subset", 130, "subset"),
    Column("version", "Version", 60, "version"),
    Column("representation", "Representation", 120, "representation"),
    Column("active", "Active site", 180, "active_dt"),
    Column("remote", "Remote site", 180, "remote_dt"),
    Column("files", "Files", 55, "files_count"),
    Column("size", "Size", 80, "size"),
    Column("priority", "Priority", 65, "priority"),
    Column("status", "Status", 110, "status"),
)


def column_index(key: str) -> int:
    for i, column in enumerate(COLUMNS):
        if column.key == key:
            return i
    raise KeyError(key)


def pretty_size(size: int) -> str:
    """1536 -> '1.5 KiB' (binary units, like file managers on Linux and OpenPype)."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def pretty_version(version: int | None) -> str:
    return "" if version is None else f"v{version:03d}"


def pretty_date(value: datetime | None) -> str:
    """Local time, minutes precision; empty when the side has no date yet."""
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M")
