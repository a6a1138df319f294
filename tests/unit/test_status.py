"""The one status function: every rule, and how statuses combine."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.model import FileRecord, SiteState, Status
from app.status import combine, file_pair_status, site_progress, site_status
from tests.helpers.seed import T0


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (None, Status.NOT_AVAILABLE),
        (SiteState("s"), Status.QUEUED),
        (SiteState("s", created_dt=T0), Status.SYNCED),
        (SiteState("s", created_dt=T0, paused=True), Status.PAUSED),
        (SiteState("s", tries=2, error="x"), Status.QUEUED),  # retrying
        (SiteState("s", tries=3, error="x"), Status.FAILED),
        (SiteState("s", tries=5, paused=True), Status.PAUSED),  # the user's intent shows
        (SiteState("s", tries=1, permanent=True), Status.FAILED),
        (SiteState("s", lease_owner="e", lease_until=T0 + timedelta(seconds=5)), Status.IN_PROGRESS),
        # An expired lease (crashed engine) is honestly queued again, even with progress.
        (SiteState("s", progress=0.4, lease_owner="e", lease_until=T0 - timedelta(seconds=1)),
         Status.QUEUED),
        # OpenPype itself moving the file (progress, no SiteSync lease).
        (SiteState("s", progress=0.4), Status.IN_PROGRESS),
    ],
)
def test_site_status(state, expected):
    assert site_status(state, 3, T0) is expected


def test_retry_cnt_is_the_configured_one_not_three():
    state = SiteState("s", tries=3)
    assert site_status(state, 3, T0) is Status.FAILED
    assert site_status(state, 5, T0) is Status.QUEUED


def test_combine_takes_the_most_urgent():
    assert combine([]) is Status.NOT_AVAILABLE
    assert combine([Status.SYNCED, Status.SYNCED]) is Status.SYNCED
    assert combine([Status.SYNCED, Status.NOT_AVAILABLE]) is Status.NOT_AVAILABLE
    assert combine([Status.SYNCED, Status.QUEUED, Status.IN_PROGRESS]) is Status.IN_PROGRESS
    assert combine([Status.IN_PROGRESS, Status.FAILED]) is Status.FAILED
    assert combine([Status.FAILED, Status.PAUSED]) is Status.PAUSED


def test_file_pair_status_and_progress():
    f = FileRecord("f", "{root[work]}/a", 1, sites=(
        SiteState("studio", created_dt=T0), SiteState("gdrive", progress=0.25)))
    assert file_pair_status(f, "studio", "gdrive", 3, T0) is Status.IN_PROGRESS
    assert site_progress(f.site("studio")) == 1.0
    assert site_progress(f.site("gdrive")) == 0.25
    assert site_progress(None) == 0.0


def test_labels_parse_back():
    for status in Status:
        assert Status.from_label(status.label) is status
    assert Status.from_label("in-progress") is Status.IN_PROGRESS
    with pytest.raises(ValueError, match="use one of"):
        Status.from_label("broken")


@pytest.mark.parametrize("retry_cnt", [0, 1, 3])
def test_an_available_unpaused_entry_is_synced_whatever_else_it_holds(retry_cnt):
    """The SQLite store counts and pages "settled" representations (every entry available
    and unpaused) without calling site_status per file (app/store/sqlite.py,
    _UNSETTLED_CTE); that is only right while this holds."""
    for tries in (0, 2, 3, 99):
        for permanent in (False, True):
            for lease in (None, T0 - timedelta(hours=1), T0 + timedelta(hours=1)):
                for progress, owner in ((None, None), (0.5, None), (0.5, "engine")):
                    state = SiteState(name="s", created_dt=T0, tries=tries, permanent=permanent,
                                      lease_until=lease, lease_owner=owner, progress=progress,
                                      error="old")
                    assert site_status(state, retry_cnt, T0) is Status.SYNCED
    assert site_status(None, retry_cnt, T0) is Status.NOT_AVAILABLE
