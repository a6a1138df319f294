"""Property: whatever a user types after `sitesync`, the answer is an exit code and a
message, never a traceback. Bad usage exits 2 with a usage or settings message; an
operation that cannot be done exits 1 saying why.

Commands that start the tray or a long-running engine (tray, run, serve) and `demo`
(which writes a demo project) are left out; everything else runs for real, in-process,
on a real store with one representation in it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from app.cli import _parser, main
from app.model import SummaryQuery
from tests.helpers.seed import T0, make_repre
from tests.integration.conftest import write_settings
from tests.reliability.helpers import SCALE, report

REPRE = make_repre(sites={"studio": {"created_dt": T0}, "gdrive": {}})
INT64 = 2**63 - 1

_values = st.one_of(
    st.sampled_from(["demo", "studio", "gdrive", "local", REPRE.id, REPRE.files[0].id, "", " ", "-",
                     "--", "-1", "0", "3", str(INT64), str(INT64 + 1), str(10**30), "-" + str(10**30),
                     "1e3", "NaN", "failed", "in-progress", "Synced", "nope", "a$b", "system.x",
                     "../../etc/passwd", "C:\\x", "10M:2M", "off", "Mon-08:00,2M", "x" * 300,
                     "é€😀", "bad\x00nul"]),
    st.sampled_from(SummaryQuery.SORT_KEYS),
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=10),
)

#: command -> its options (flag or option taking a value) and positionals.
_COMMANDS: dict[str, tuple[list[str], list[str], int]] = {
    "status": (["--json"], ["--project", "--active", "--remote", "--status", "--text", "--sort",
                            "--limit"], 0),
    "reset": (["--force"], ["--project", "--repre", "--file", "--site"], 0),
    "pause": ([], ["--project", "--repre", "--site"], 0),
    "resume": ([], ["--project", "--repre", "--site"], 0),
    "add-site": (["--force"], ["--project", "--repre", "--site", "--priority"], 0),
    "remove-site": ([], ["--project", "--repre", "--site"], 0),
    "priority": ([], ["--project", "--repre", "--site"], 1),
    "publish": ([], ["--project", "--site", "--asset", "--subset", "--version", "--name",
                     "--family", "--priority"], 2),
    "doctor": ([], [], 0),
    "limit": (["--clear"], ["--bwlimit", "--transfers"], 1),
    "validate": (["--dry-run", "--json"], ["--site", "--project", "--reference"], 0),
}


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    if draw(st.integers(0, 9)) == 0:  # anything at all
        return draw(st.lists(st.one_of(_values, st.sampled_from(["--json", "--project", "status"])),
                             max_size=5))
    command = draw(st.sampled_from([*sorted(_COMMANDS), "bogus", "--debug"]))
    flags, options, positionals = _COMMANDS.get(command, ([], [], 0))
    argv = [command]
    for flag in draw(st.lists(st.sampled_from(flags), max_size=2)) if flags else []:
        argv.append(flag)
    for option in draw(st.lists(st.sampled_from(options), max_size=6)) if options else []:
        argv += [option, draw(_values)]
    argv += [draw(_values) for _ in range(draw(st.integers(0, positionals + 1)))]
    if draw(st.booleans()):
        argv.insert(draw(st.integers(0, len(argv))), draw(_values))
    return argv


@pytest.fixture(params=["sqlite", "mongo"])
def cli_home(request, tmp_path, monkeypatch) -> Iterator[str]:
    """A settings file, a store holding REPRE, and nowhere else to write."""
    monkeypatch.setenv("SITESYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SITESYNC_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("SITESYNC_CONFIG", raising=False)
    roots = {"studio": tmp_path / "studio", "gdrive": tmp_path / "gdrive"}
    for root in roots.values():
        root.mkdir()
    if request.param == "sqlite":
        from app.store.sqlite import SqliteStore

        (tmp_path / "data").mkdir()
        store = SqliteStore(tmp_path / "data" / "sitesync.db")
        url, name = "", "avalon"
    else:
        from app.store.mongo import MongoStore

        url, name = request.getfixturevalue("mongo_uri"), f"cli_{tmp_path.name[-20:]}"
        store = MongoStore(url, database=name)
    settings_path = tmp_path / "settings.json"
    write_settings(settings_path, roots, database_url=url, database_name=name)
    store.ensure_project("demo")
    store.insert_representation(REPRE)
    store.close()
    yield str(settings_path)


#: The tray (also what no command means), the engine and the demo writer.
_NOT_HERE = {None, "tray", "run", "serve", "demo"}


def _command(argv: list[str]) -> str | None:
    """The command argparse would pick, or "usage error" if it refuses the line."""
    try:
        args, _ = _parser().parse_known_args(argv)
    except SystemExit:
        return "usage error"
    return args.command


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage errors, --help, --version
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def test_no_argument_list_gives_a_traceback(cli_home, capsys):
    seen: dict[int, int] = {}

    @settings(max_examples=150 * SCALE, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(argv=argvs())
    # Always some lines of each kind, whatever the random draw: a good command, --version
    # and a usage error (the last assertion checks both kinds of answer were exercised).
    @example(argv=["status"])
    @example(argv=["--version"])
    @example(argv=["priority"])
    def check(argv: list[str]) -> None:
        argv = ["--config", cli_home, *argv]
        assume(_command(argv) not in _NOT_HERE)
        code, out, err = _run(argv, capsys)
        seen[code] = seen.get(code, 0) + 1
        assert "Traceback" not in out + err, (argv, err)
        assert code in (0, 1, 2), (argv, code, err)
        if err.strip():
            assert err.strip().startswith(("sitesync: error:", "usage:")), (argv, code, err)
        if code:  # said why: an error line, or a report (doctor, validate) naming problems
            assert len(err.strip()) > len("sitesync: error: ") or "FAIL" in out or \
                "problem(s)" in out, (argv, code, out)

    check()
    assert seen.get(2) and seen.get(0), seen
    kind = "mongo" if json.loads(Path(cli_home).read_text())["database_url"] else "sqlite"
    report("bad_arguments", store=kind, exit_codes=seen)  # both kinds of answer were exercised


@pytest.mark.parametrize("argv", [
    ["status", "--limit", str(10**30)],
    ["status", "--status", "nope"],
    ["priority", "--project", "demo", "--repre", REPRE.id, str(10**30)],
    ["add-site", "--project", "demo", "--repre", REPRE.id, "--site", "x", "--priority", str(2**64)],
    ["status", "--project", "a$b"],
    ["reset", "--project", "system.x", "--repre", "x"],
    ["publish", "--project", "demo", "--asset", "a", "--subset", "b", "--version", str(10**30),
     "--name", "exr", "/nonexistent/file.exr"],
])
def test_known_bad_arguments(cli_home, capsys, argv):
    code, out, err = _run(["--config", cli_home, *argv], capsys)
    assert "Traceback" not in out + err, err
    assert code in (1, 2) and err.startswith(("sitesync: error:", "usage:")), (code, err)
