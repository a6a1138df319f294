"""Large representations on every store: taken in chunks so they never hold up a newer
publish of the same priority, read in pages, never loaded whole where it matters."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from datetime import timedelta

import pytest
from bson import ObjectId

from app.errors import DocumentError
from app.model import FileRecord, Representation, SiteState, SummaryQuery
from app.store.base import CHUNK_FILES
from tests.helpers.seed import T0, make_repre

RETRY = 3


def _big(files: int, asset: str = "plate", path_pad: str = "") -> Representation:
    """One frame sequence on the studio, queued on gdrive; built lazily-light."""
    studio = SiteState(name="studio", created_dt=T0, checksum="sha256:" + "a" * 64)
    queued = SiteState(name="gdrive")
    return Representation(
        id=str(ObjectId()), project="demo", name="exr",
        context={"asset": asset, "subset": "renderMain", "representation": "exr"},
        files=tuple(FileRecord(id=str(ObjectId()), size=1, sites=(studio, queued),
                               path=f"{{root[work]}}/demo/{asset}/v001/{path_pad}{asset}.{i:06d}.exr")
                    for i in range(files)))


def test_representations_of_one_priority_take_turns_a_chunk_at_a_time(store):
    store.ensure_project("demo")
    big = _big(2 * CHUNK_FILES + 50)
    store.insert_representation(big)
    small = make_repre(asset="small", files=3)  # published later, same priority
    store.insert_representation(small)
    urgent = make_repre(asset="urgent", files=2,
                        sites={"studio": {"created_dt": T0, "priority": 90}, "gdrive": {}})
    store.insert_representation(urgent)
    work = store.find_work("demo", "studio", "gdrive", RETRY, T0, limit=1000)
    order = [w.repre_id for w in work]
    assert order[:2] == [urgent.id] * 2  # priority first
    assert order[2:2 + CHUNK_FILES] == [big.id] * CHUNK_FILES  # one chunk of the big one,
    assert order[2 + CHUNK_FILES:5 + CHUNK_FILES] == [small.id] * 3  # then the small one
    assert len(work) == 2 + 3 + len(big.files)
    big_files = [w.file_id for w in work if w.repre_id == big.id]
    assert big_files == [f.id for f in big.files]  # file order within a representation
    assert len(store.find_work("demo", "studio", "gdrive", RETRY, T0, limit=5)) == 5


def test_a_large_representation_is_read_in_pages(store):
    """Past the first page of a document (MongoDB reads 1,000 files at a time)."""
    store.ensure_project("demo")
    count = 1100
    big = _big(count)
    store.insert_representation(big)
    work = store.find_work("demo", "studio", "gdrive", RETRY, T0, limit=2000)
    assert [w.file_id for w in work] == [f.id for f in big.files]
    late = store.find_work("demo", "studio", "gdrive", RETRY, T0, limit=10,
                           exclude=frozenset((big.id, f.id) for f in big.files[:1050]))
    assert [w.file_id for w in late] == [f.id for f in big.files[1050:1060]]
    claims = store.claim_many(work[1090:1093], "e", T0 + timedelta(seconds=60), T0)
    for claim in claims:
        assert store.record_success(claim, "x", "sha256:" + "a" * 64, T0)
    [row] = store.summary_page("demo", SummaryQuery("studio", "gdrive"), RETRY, T0).rows
    assert row.files_count == count and row.size == count
    assert row.remote.progress == pytest.approx(3 / count)
    assert row.first_path == big.files[0].path
    details = store.file_details("demo", big.id, "studio", "gdrive", RETRY, T0, offset=1088,
                                 limit=6)
    assert [d.file_id for d in details] == [f.id for f in big.files[1088:1094]]
    assert [d.remote.available for d in details] == [False, False, True, True, True, False]
    assert store.get_file("demo", big.id, big.files[-1].id).path == big.files[-1].path
    assert store.add_site("demo", big.id, "local", atomic=True) == count
    assert store.representation_heads("demo")[0].files_count == count


_SERVER = """
import sys
from secantus import SecantusDBServer
with SecantusDBServer(storage_path=sys.argv[1], port=0, sync_on_commit=False,
                      cache_size="256M") as server:
    print(server.uri, flush=True)
    sys.stdin.read()
"""


@pytest.fixture(scope="module")
def separate_mongo_uri(tmp_path_factory):
    """A MongoDB-wire server in its own process: this test measures the client's memory,
    and the session server runs inside the test process."""
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(tmp_path_factory.mktemp("db"))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(30)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "files"), [("sqlite", 20_000), ("mongo", 6_000)])
def test_reading_a_large_representation_never_loads_it_whole(kind, files, tmp_path, request):
    """Every engine and UI read of a large representation peaks far below loading it
    (what OpenPype's sync server did on every poll). MongoDB's test server is pure Python,
    so its representation is smaller, read in smaller pages."""
    if kind == "sqlite":
        from app.store.sqlite import SqliteStore

        store = SqliteStore(tmp_path / "big.db")
    else:
        from app.store.mongo import MongoStore

        store = MongoStore(request.getfixturevalue("separate_mongo_uri"), database="big")
        store.files_page = 250  # a 6,000-file document is then 24 pages, as 24,000 would be
    request.addfinalizer(store.close)
    store.ensure_project("demo")
    big = _big(files)
    store.insert_representation(big)
    del big
    repre_id = store.representation_heads("demo")[0].id
    file_id = store.file_page("demo", repre_id, files - 1, 1)[0].id
    query = SummaryQuery("studio", "gdrive")

    def peak(action) -> int:
        tracemalloc.start()
        try:
            action()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    whole = peak(lambda: store.get_representation("demo", repre_id))
    reads = {
        "find_work": lambda: store.find_work("demo", "studio", "gdrive", RETRY, T0, limit=64),
        "summary_page": lambda: store.summary_page("demo", query, RETRY, T0),
        "summary_rows": lambda: store.summary_rows("demo", query, [repre_id], RETRY, T0),
        "file_details": lambda: store.file_details("demo", repre_id, "studio", "gdrive", RETRY,
                                                   T0, offset=files // 2, limit=100),
        "get_file": lambda: store.get_file("demo", repre_id, file_id),
        "has_unstaged": lambda: store.has_unstaged("demo", repre_id, "gdrive"),
        "heads": lambda: store.representation_heads("demo"),
    }
    peaks = {name: peak(action) for name, action in reads.items()}
    assert all(value < whole / 3 for value in peaks.values()), (whole, peaks)


def test_mongodb_document_limit_is_named_before_anything_is_written(store):
    store.ensure_project("demo")
    huge = _big(30_000, path_pad="a-long-folder-name-as-studios-use-them/" * 3)
    if store.kind == "mongo":
        with pytest.raises(DocumentError) as err:
            store.insert_representation(huge)
        text = str(err.value)
        assert "16 MB document limit" in text and "Split it" in text and "files of this size" in text
        assert store.count_representations("demo") == 0
    else:
        assert store.insert_representation(huge) == huge.id  # the embedded store has no limit
        assert store.representation_heads("demo")[0].files_count == 30_000
