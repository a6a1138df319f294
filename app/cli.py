"""`sitesync` command line: run, serve, inspect and steer syncing.

Every command goes through the same store and the same status function as the engine
and the tray, so what `sitesync status` prints is what the Sync Queue window shows.
Errors are printed as one or two lines saying what is wrong and how to fix it; a
traceback only appears with ``--debug``. Exit codes: 0 success, 1 the operation failed,
2 bad usage or settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from app import __version__, paths
from app.cli_policy import POLICY_COMMANDS, add_policy_parsers
from app.errors import ConfigError, SiteSyncError, StoreUnavailableError, UserFixableError
from app.events.types import EngineStateChanged, Event, FileFailed, FileSynced
from app.logs import close_log, log_to_file
from app.model import FileRecord, Status, SummaryQuery
from app.settings import LOCAL_SITE, Settings, load_settings
from app.store import Store, open_store

__all__ = ["main"]

_log = logging.getLogger("sitesync")


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- plumbing ------------------------------------------------------------------------------


class _Context:
    """Settings and store, opened lazily so `--help` and `doctor` work without them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._settings: Settings | None = None
        self._store: Store | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(Path(self.args.config) if self.args.config else None)
            _create_owned_roots(self._settings)
        return self._settings

    @property
    def store(self) -> Store:
        if self._store is None:
            s = self.settings
            self._store = open_store(s.database_url, s.database_name, paths.data_dir())
        return self._store

    def site(self, name: str | None) -> str | None:
        """A site named on the command line: ``local`` is this machine (its ``local_id``),
        as in ``publish_site``/``remote_site``; the database only knows the real name, so
        ``--site local`` must never be written there as a site called "local"."""
        if name == LOCAL_SITE and self.settings.local_id:
            return self.settings.local_id
        return name

    def projects(self) -> list[str]:
        if getattr(self.args, "project", None):
            return [self.args.project]
        return [p.name for p in self.store.list_projects()]

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _create_owned_roots(settings: Settings) -> None:
    """Create site roots that live in SiteSync's own data folder (the default sites).

    Roots anywhere else are never created: a missing NAS mount must fail loudly, not
    fill the local disk under an empty mount point.
    """
    owned = paths.data_dir().resolve()
    for site in settings.sites.values():
        for root in site.roots.values():
            path = Path(root)
            if path.is_absolute() and owned in path.resolve().parents:
                path.mkdir(parents=True, exist_ok=True)


_print_lock = threading.Lock()


def _print(text: str = "") -> None:
    """One whole line per call: transfer threads print concurrently, and `print` writes
    the text and the newline separately, which interleaves records."""
    with _print_lock:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


# -- commands -----------------------------------------------------------------------------


def cmd_tray(ctx: _Context) -> int:
    """Default command (also `run`): the tray app, which embeds the engine. The first run
    creates the demo project. Imported here so headless commands never load Qt."""
    from ui.app import run_tray

    return run_tray(ctx.args.config, debug=ctx.args.debug,
                    quit_after_s=getattr(ctx.args, "quit_after", None))


def cmd_serve(ctx: _Context) -> int:
    """The headless engine until SIGTERM/SIGINT (or, with --once, until nothing is left to
    do now); its log also goes to ``serve.log`` in the log folder, rotated."""
    log_file = log_to_file("serve.log", debug=ctx.args.debug)
    try:
        return _serve(ctx, log_file)
    finally:
        close_log(log_file)


def _serve(ctx: _Context, log_file: logging.Handler | None) -> int:
    from app.engine.engine import Engine
    from app.hooks import HookRunner

    settings = ctx.settings
    engine = Engine(ctx.store, settings, state_path=paths.state_dir() / "engine.json",
                    serve_site=getattr(ctx.args, "site", None) or None)
    engine.bus.subscribe(_console_printer())
    engine.bus.subscribe(_event_logger())
    if isinstance(log_file, logging.FileHandler):
        _print(f"logging to {log_file.baseFilename}")
    # Event hooks run beside the engine on their own threads; they read the event log
    # the store writes, so a slow plugin never slows a transfer.
    hooks = HookRunner(ctx.store, settings, log_dir=paths.log_dir())
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        _print(f"received {signal.Signals(signum).name}: stopping")
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    once = bool(getattr(ctx.args, "once", False))
    try:
        pairs = engine.pairs()
    except StoreUnavailableError as exc:
        # A server started before its database (after a power cut, say) waits for it:
        # the engine reports "offline" and carries on by itself once it answers.
        _print(f"database unreachable, waiting for it: {exc}")
        pairs = None
    if pairs == [] and not ctx.store.list_projects():
        _print("nothing to serve yet: the database has no projects (`sitesync demo` creates "
               "one, `sitesync publish` registers files)")
    elif pairs == []:
        _print("nothing to serve: no enabled project has two different sites to sync "
               "(check publish_site and remote_site; `sitesync doctor` explains)")
    for pair in pairs or ():
        _print(f"serving {pair.project}: {pair.active} <-> {pair.remote}")
    hooks_on = settings.hooks.enabled and bool(settings.hooks.plugin_paths)
    if hooks_on:
        _print(f"hooks: plugins from {', '.join(str(p) for p in settings.hooks.plugin_paths)}")
    hooks.start()
    if hooks.wait_ready(10.0) and hooks_on:
        status = hooks.status()
        names = ", ".join(p.name for p in status.plugins) or "none found"
        _print(f"hooks: {len(status.plugins)} plugin(s) ({names}); {status.state}"
               + (f": {status.message}" if status.message else ""))
    engine.start(once=once)
    while not stop.is_set() and not engine.wait_stopped(0.2):
        pass
    engine.stop(drain=False)
    if once and not stop.is_set() and hooks_on:
        hooks.wait_idle(60.0)  # --once: the hooks finish what the run logged
    hooks.stop()
    counts = engine.counts
    _print(f"stopped: {counts['synced']} file(s) synced, {counts['failed']} failure(s)")
    _log.info("stopped: %d file(s) synced, %d failure(s)", counts["synced"], counts["failed"])
    return 0


def _console_printer() -> Callable[[Event], None]:
    def show(event: Event) -> None:
        if isinstance(event, FileSynced):
            _print(f"synced  {event.target_site:<12} {event.path} "
                   f"({_human_size(event.size)}, {event.seconds:.2f} s)")
        elif isinstance(event, FileFailed):
            what = "FAILED" if event.permanent else "retry "
            _print(f"{what}  {event.target_site:<12} {event.path}: {event.error}")
        elif isinstance(event, EngineStateChanged) and event.state in ("idle", "offline", "paused"):
            extra = f": {event.message}" if event.message else ""
            _print(f"engine {event.state}{extra}")

    return show


def _event_logger() -> Callable[[Event], None]:
    """Synced files and engine states in the log file at INFO (the console may be a
    journal kept for days only). Failures are not repeated here: the engine logs each
    one as a warning itself."""
    log = logging.getLogger("sitesync.serve")

    def record(event: Event) -> None:
        if isinstance(event, FileSynced):
            log.info("synced %s %s (%d bytes, %.2f s)", event.target_site, event.path,
                     event.size, event.seconds)
        elif isinstance(event, EngineStateChanged):
            log.info("engine %s%s", event.state, f": {event.message}" if event.message else "")

    return record


def cmd_status(ctx: _Context) -> int:
    settings = ctx.settings
    statuses = frozenset(ctx.args.status or [])
    out: list[dict] = []
    now = _now()
    for project in ctx.projects():
        ps = settings.project(project)
        active = ctx.args.active or ps.active_site
        remote = ctx.args.remote or ps.remote_site
        query = SummaryQuery(active, remote, text=ctx.args.text or "", statuses=statuses,
                             sort_key=ctx.args.sort, limit=ctx.args.limit)
        page = ctx.store.summary_page(project, query, ps.retry_cnt, now)
        out.append({"project": project, "active_site": active, "remote_site": remote,
                    "page": page})
    if ctx.args.json:
        _print(json.dumps([_page_json(p) for p in out], indent=2))
        return 0
    for entry in out:
        page = entry["page"]
        counts = ", ".join(f"{s.label}: {n}" for s, n in page.status_counts.items())
        _print(f"{entry['project']}: {entry['active_site']} <-> {entry['remote_site']}  "
               f"({page.total} representation(s){'; ' + counts if counts else ''})")
        rows = [
            (r.asset, r.subset, "-" if r.version is None else f"v{r.version:03d}",
             r.representation, f"{r.active.status.label} {r.active.progress:.0%}",
             f"{r.remote.status.label} {r.remote.progress:.0%}", str(r.files_count),
             _human_size(r.size), str(r.priority), r.status.label, r.repre_id)
            for r in page.rows
        ]
        if rows:
            _print(_table(("Asset", "Subset", "Version", "Repre", "Active", "Remote", "Files",
                           "Size", "Prio", "Status", "Id"), rows))
        errors = [(r.asset, r.remote.error or r.active.error) for r in page.rows
                  if r.status is Status.FAILED and (r.remote.error or r.active.error)]
        for asset, error in errors:
            _print(f"  ! {asset}: {error}")
        _print()
    return 0


def _page_json(entry: dict) -> dict:
    page = entry["page"]

    def side(s) -> dict:
        return {"status": s.status.label, "progress": round(s.progress, 4),
                "updated_dt": s.updated_dt.isoformat() if s.updated_dt else None,
                "tries": s.tries, "error": s.error}

    return {
        "project": entry["project"], "active_site": entry["active_site"],
        "remote_site": entry["remote_site"], "total": page.total,
        "status_counts": {s.label: n for s, n in page.status_counts.items()},
        "representations": [
            {"id": r.repre_id, "asset": r.asset, "subset": r.subset, "version": r.version,
             "representation": r.representation, "files": r.files_count, "size": r.size,
             "priority": r.priority, "status": r.status.label,
             "active": side(r.active), "remote": side(r.remote)}
            for r in page.rows
        ],
    }


def cmd_reset(ctx: _Context) -> int:
    total = 0
    if ctx.args.repre:
        project = _require_project(ctx)
        site = ctx.site(ctx.args.site) or ctx.settings.project(project).remote_site
        alone = [] if ctx.args.force else _only_copies(ctx, project, site)
        if alone:
            raise UserFixableError(
                f"site {site} holds the only copy of {len(alone)} file(s) of representation "
                f"{ctx.args.repre} (e.g. {alone[0]}); resetting it would mark them missing "
                "everywhere, with nothing to fetch them from",
                fix=f"sync them to another site first (sitesync add-site), or add --force if "
                f"the copies on {site} are really gone")
        total = ctx.store.reset_site(project, ctx.args.repre, site, file_id=ctx.args.file)
    else:
        for project in ctx.projects():
            total += ctx.store.reset_failed(project, ctx.site(ctx.args.site))
    _print(f"reset {total} site entr{'y' if total == 1 else 'ies'}; they will be retried")
    return 0


def _only_copies(ctx: _Context, project: str, site: str) -> list[str]:
    """Paths of the files (of ``--repre``, or its ``--file``) that ``site`` has and no other
    site has: the Sync Queue's Re-sync refuses these too, so the only copy is never
    declared missing. Read a page at a time (a representation may hold 100,000 frames)."""
    repre, file_id = ctx.args.repre, ctx.args.file
    if file_id:
        files = iter([ctx.store.get_file(project, repre, file_id)])
    else:
        files = _every_file(ctx.store, project, repre)
    return [f.path for f in files
            if (mine := f.site(site)) is not None and mine.available
            and not any(other.available for other in f.sites if other.name != site)]


def _every_file(store: Store, project: str, repre_id: str, page: int = 1000) -> Iterator[FileRecord]:
    offset = 0
    while batch := store.file_page(project, repre_id, offset, page):
        yield from batch
        offset += len(batch)
        if len(batch) < page:
            return


def cmd_pause(ctx: _Context, paused: bool) -> int:
    verb = "paused" if paused else "resumed"
    if ctx.args.repre:
        project = _require_project(ctx)
        sites = [ctx.site(ctx.args.site)] if ctx.args.site else _pair_sites(ctx, project)
        for site in sites:
            ctx.store.set_paused(project, ctx.args.repre, site, paused)
        _print(f"{verb} representation {ctx.args.repre} on {', '.join(sites)}")
    elif ctx.args.project:
        ctx.store.set_project_paused(ctx.args.project, paused)
        _print(f"{verb} project {ctx.args.project}")
    else:
        from app.engine.engine import write_engine_paused

        write_engine_paused(paths.state_dir() / "engine.json", paused)
        _print(f"{verb} syncing on this machine")
    return 0


def _pair_sites(ctx: _Context, project: str) -> list[str]:
    ps = ctx.settings.project(project)
    return list(dict.fromkeys([ps.active_site, ps.remote_site]))


def _require_project(ctx: _Context) -> str:
    if not ctx.args.project:
        raise UserFixableError("this needs a project", fix="add --project NAME")
    return ctx.args.project


def cmd_add_site(ctx: _Context) -> int:
    project = _require_project(ctx)
    site = ctx.site(ctx.args.site)
    n = ctx.store.add_site(project, ctx.args.repre, site, force=ctx.args.force,
                           priority=ctx.args.priority)
    _print(f"site {site} added to {n} file(s)" if n else
           f"every file already has site {site} (use --force to re-sync)")
    return 0


def cmd_remove_site(ctx: _Context) -> int:
    project = _require_project(ctx)
    site = ctx.site(ctx.args.site)
    n = ctx.store.remove_site(project, ctx.args.repre, site)
    _print(f"site {site} removed from {n} file(s)")
    return 0 if n else 1


def cmd_priority(ctx: _Context) -> int:
    project = _require_project(ctx)
    site = ctx.site(ctx.args.site) or ctx.settings.project(project).active_site
    ctx.store.set_priority(project, ctx.args.repre, site, ctx.args.value)
    _print(f"priority {ctx.args.value} set on {site}")
    return 0


def cmd_publish(ctx: _Context) -> int:
    from app.publish import build_representation

    project = _require_project(ctx)
    ps = ctx.settings.project(project)
    site = ctx.site(ctx.args.site) or ps.active_site
    queued = [ps.remote_site, *ps.always_accessible_on]
    repre = build_representation(
        project, [Path(f) for f in ctx.args.files], ps.site(site).roots,
        asset=ctx.args.asset, subset=ctx.args.subset, version=ctx.args.version,
        name=ctx.args.name, family=ctx.args.family, publish_site=site, queued_sites=queued,
        now=_now(), priority=ctx.args.priority,
    )
    ctx.store.ensure_project(project)
    repre_id = ctx.store.insert_representation(repre)
    _print(f"published {len(repre.files)} file(s) as representation {repre_id} "
           f"on {site}; queued for {', '.join(s for s in queued if s != site) or 'nothing'}")
    return 0


def cmd_demo(ctx: _Context) -> int:
    from app.demo import DEMO_PROJECT, create_demo

    n = create_demo(ctx.store, ctx.settings, _now())
    if n:
        _print(f"created demo project '{DEMO_PROJECT}' with {n} representations "
               f"(files under {paths.data_dir() / 'sites'})")
    else:
        _print(f"demo project '{DEMO_PROJECT}' already exists")
    return 0


def cmd_hooks(ctx: _Context) -> int:
    """`sitesync hooks list|replay|skip`: see docs/hooks.md."""
    from app.hooks.admin import list_plugins, plan_replay, plan_skip, state_dir_for
    from app.hooks.state import HookState

    args = ctx.args
    state = HookState(state_dir_for(paths.data_dir()))
    try:
        if args.hooks_command == "list":
            rows, problems, head = list_plugins(ctx.settings, state, ctx.store)
            if args.json:
                _print(json.dumps({"newest_event": head, "problems": problems, "plugins": [
                    {"name": r.name, "path": r.path, "state": r.state, "last_id": r.last_id,
                     "behind": r.behind, "backlog": r.backlog, "error": r.error,
                     "error_event": r.error_event} for r in rows]}, indent=2))
                return 0
            if not rows:
                _print("no plugins: add folders to hooks.plugin_paths in the settings "
                       "(examples: " + str(Path(__file__).parent / "hooks" / "examples") + ")")
            else:
                _print(_table(("Plugin", "State", "At event", "Behind", "Backlog", "Path"), [
                    (r.name, r.state, "-" if r.last_id is None else str(r.last_id),
                     "-" if r.behind is None else str(r.behind), str(r.backlog), r.path or "-")
                    for r in rows]))
                for r in rows:
                    if r.error:
                        where = f" on event {r.error_event}" if r.error_event is not None else ""
                        _print(f"  ! {r.name}{where}: {r.error}")
                _print(f"newest event: {head}")
            for problem in problems:
                _print(f"  ! {problem}")
            return 0
        head = ctx.store.event_log_info().last_id
        if args.hooks_command == "replay":
            move = plan_replay(state, args.plugin, args.from_id, head)
        else:
            move = plan_skip(state, args.plugin, args.to, head)
        _print(f"{move.description}.")
        if not args.yes and not _confirm("Continue?"):
            _print("nothing changed")
            return 1
        cursor = move.apply(state)
        _print(f"plugin {cursor.plugin} is now after event {cursor.last_id}; a running SiteSync "
               "continues from there")
        return 0
    except ValueError as exc:
        raise UserFixableError(str(exc)) from None
    finally:
        state.close()


def _confirm(question: str) -> bool:
    """Ask on the terminal; without one, refuse (scripts pass --yes)."""
    if not sys.stdin.isatty():
        raise UserFixableError("no terminal to ask for confirmation on; nothing changed",
                               fix="add --yes to confirm without a prompt")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def cmd_doctor(ctx: _Context) -> int:
    from app.doctor import run_checks

    problems = 0
    for ok, text in run_checks(ctx):
        problems += 0 if ok else 1
        _print(f"{'ok  ' if ok else 'FAIL'}  {text}")
    _print("all checks passed" if not problems else f"{problems} problem(s) found")
    return 0 if not problems else 1


# -- argument parsing -----------------------------------------------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _whole(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high] (a database holds 64 bits at most,
    and a typo like an extra dozen digits should be a usage error, not a crash)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    parse.__name__ = "whole number"
    return parse


def _status_label(text: str) -> Status:
    try:
        return Status.from_label(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_PRIORITY = _whole(-1_000_000, 1_000_000)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sitesync",
        description="Keep an OpenPype/Avalon pipeline's published files in sync between sites.",
    )
    parser.add_argument("--version", action="version", version=f"sitesync {__version__}")
    parser.add_argument("--config", help="settings file (default: $SITESYNC_CONFIG or the "
                        "platform config folder)")
    parser.add_argument("--debug", action="store_true", help="verbose logs and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for name, text in (("tray", "the tray app with the sync engine (the default; creates "
                                "the demo project on first run)"), ("run", "same as tray")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--quit-after", type=_positive_seconds, metavar="SECONDS",
                       help="quit by itself after this many seconds, as the menu's Quit does "
                       "(smoke tests of an installed or packaged app)")
    p = sub.add_parser("serve", help="run the sync engine headless (no tray)")
    p.add_argument("--once", action="store_true", help="exit when nothing is left to do now")
    p.add_argument("--site", help="serve as this site (e.g. studio on a studio server)")

    p = sub.add_parser("status", help="representation status per project")
    p.add_argument("--project")
    p.add_argument("--active", help="active site (default: from settings)")
    p.add_argument("--remote", help="remote site (default: from settings)")
    p.add_argument("--status", action="append", type=_status_label,
                   help="only rows with this status (repeatable)")
    p.add_argument("--text", help="filter on asset, subset or representation")
    p.add_argument("--sort", default="asset", choices=SummaryQuery.SORT_KEYS)
    p.add_argument("--limit", type=_whole(0, 1_000_000), default=200)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("reset", help="retry failed files (reset tries)")
    p.add_argument("--project")
    p.add_argument("--repre", help="one representation id (default: every failed file)")
    p.add_argument("--file", help="one file id of that representation")
    p.add_argument("--site", help="only this site")
    p.add_argument("--force", action="store_true", help="with --repre: reset even files that "
                   "site holds alone (their copies there are gone)")

    for name, text in (("pause", "pause syncing"), ("resume", "resume syncing")):
        p = sub.add_parser(name, help=f"{text} (this machine, a project, or a representation)")
        p.add_argument("--project")
        p.add_argument("--repre")
        p.add_argument("--site")

    for name in ("add-site", "remove-site"):
        p = sub.add_parser(name, help=f"{name.split('-')[0]} a site on a representation")
        p.add_argument("--project", required=True)
        p.add_argument("--repre", required=True)
        p.add_argument("--site", required=True)
        if name == "add-site":
            p.add_argument("--force", action="store_true", help="re-sync existing entries")
            p.add_argument("--priority", type=_PRIORITY)

    p = sub.add_parser("priority", help="set a representation's priority")
    p.add_argument("--project", required=True)
    p.add_argument("--repre", required=True)
    p.add_argument("--site", help="default: the active site (as OpenPype)")
    p.add_argument("value", type=_PRIORITY)

    p = sub.add_parser("publish", help="register existing files as a representation")
    p.add_argument("--project", required=True)
    p.add_argument("--site", help="site the files are on (default: the active site)")
    p.add_argument("--asset", required=True)
    p.add_argument("--subset", required=True)
    p.add_argument("--version", type=_whole(-1_000_000, 1_000_000_000), required=True)
    p.add_argument("--name", required=True, help="representation name, e.g. exr")
    p.add_argument("--family", default="render")
    p.add_argument("--priority", type=_PRIORITY)
    p.add_argument("files", nargs="+")

    p = sub.add_parser("hooks", help="event hook plugins: list them, replay or skip events")
    hooks = p.add_subparsers(dest="hooks_command", metavar="ACTION", required=True)
    h = hooks.add_parser("list", help="plugins, their place in the event log and errors")
    h.add_argument("--json", action="store_true", help="machine-readable output")
    h = hooks.add_parser("replay", help="let one plugin handle events again")
    h.add_argument("plugin")
    h.add_argument("--from", dest="from_id", type=int, required=True, metavar="ID",
                   help="first event id to handle again")
    h.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    h = hooks.add_parser("skip", help="let one plugin skip events (default: the one it "
                         "failed on)")
    h.add_argument("plugin")
    h.add_argument("--to", metavar="ID|latest", help="skip every event up to this id")
    h.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    sub.add_parser("demo", help="create the demo project with real files")
    sub.add_parser("doctor", help="check settings, database and sites")
    add_policy_parsers(sub)
    return parser


_COMMANDS: dict[str, Callable[[_Context], int]] = {
    "tray": cmd_tray,
    "run": cmd_tray,
    "serve": cmd_serve,
    "status": cmd_status,
    "reset": cmd_reset,
    "pause": lambda ctx: cmd_pause(ctx, True),
    "resume": lambda ctx: cmd_pause(ctx, False),
    "add-site": cmd_add_site,
    "remove-site": cmd_remove_site,
    "priority": cmd_priority,
    "publish": cmd_publish,
    "demo": cmd_demo,
    "doctor": cmd_doctor,
    **POLICY_COMMANDS,
    "hooks": cmd_hooks,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx = _Context(args)
    try:
        return _COMMANDS[args.command or "tray"](ctx)
    except ConfigError as exc:
        _error(f"settings problem: {exc}", args.debug)
        return 2
    except UserFixableError as exc:
        _error(str(exc), args.debug)
        return 2
    except KeyError as exc:
        _error(f"not found: {exc.args[0] if exc.args else exc}", args.debug)
        return 1
    except SiteSyncError as exc:
        _error(str(exc), args.debug)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`sitesync status | head`): stop quietly, as `cat` does,
        # and keep Python's exit-time flush of stdout from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        ctx.close()


def _error(text: str, debug: bool) -> None:
    if debug:
        logging.getLogger("sitesync").exception(text)
    print(f"sitesync: error: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
