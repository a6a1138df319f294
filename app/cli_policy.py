"""`sitesync` commands of the transfer policy: ``limit`` (and, with their features,
``validate`` and ``subscribe``). Registered by :mod:`app.cli`; they share its context,
printing and error handling, so they behave like every other command."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from app.errors import UserFixableError
from app.policy.bandwidth import format_rate, parse_bwlimit
from app.policy.concurrency import parse_transfers
from app.settings import LOCAL_SITE, update_settings

__all__ = ["POLICY_COMMANDS", "add_policy_parsers"]

Context = Any  # app.cli._Context (imported lazily: app.cli imports this module)


def add_policy_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "limit", help="show or set bandwidth and transfer limits per site",
        description="Without options: show every site's limits. With options: save them in "
        "the settings; a running engine applies them within a second.")
    p.add_argument("site", nargs="?", help="site to change ('local' = this machine)")
    p.add_argument("--bwlimit", help="rclone syntax: off, 10M, 10M:2M (upload:download), or a "
                   "timetable like \"Mon-08:00,2M Fri-19:00,off\"")
    p.add_argument("--transfers", help="transfers at once: 4, or 2:8 (upload:download)")
    p.add_argument("--clear", action="store_true", help="remove this site's limits")

    p = sub.add_parser(
        "validate", help="adopt copies already on a site and verify the rest",
        description="Look for every file the database lists on SITE, hash what is there and "
        "record matching copies as available without moving a byte; report files that "
        "differ, changed after publishing or are missing, with what to do. Exit status 1 "
        "when something is wrong.")
    p.add_argument("--site", required=True, help="site to scan ('local' = this machine)")
    p.add_argument("--project", help="only this project (default: every project)")
    p.add_argument("--reference", help="site to hash copies on when no checksum is recorded "
                   "(files published by OpenPype have none)")
    p.add_argument("--dry-run", action="store_true", help="report only, record nothing")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser(
        "subscribe", help="add a rule that fetches matching new publishes to this machine",
        description="Patterns are case-insensitive globs; repeat an option for several. A "
        "running engine applies the rule to new publishes within seconds.")
    p.add_argument("--project", default="*", help="project name or pattern (default: all)")
    p.add_argument("--asset", action="append", help="asset pattern, e.g. 'sh01*'")
    p.add_argument("--subset", action="append", help="subset pattern, e.g. 'render*'")
    p.add_argument("--representation", action="append", help="representation name, e.g. exr")
    p.add_argument("--family", action="append", help="family, e.g. render")
    p.add_argument("--mode", choices=("as_available", "when_complete"), default="as_available",
                   help="as_available: each file as soon as it is there; when_complete: the "
                   "representation appears only when every file has arrived")
    p.add_argument("--priority", type=int, help="0-100 (50 is normal)")
    p.add_argument("--site", default="local", help="site to add (default: this machine)")
    p.add_argument("--name", help="a name for the rule")
    p.add_argument("--existing", action="store_true",
                   help="also apply it now to what is already published")
    sub.add_parser("subscriptions", help="list subscription rules")
    p = sub.add_parser("unsubscribe", help="remove a subscription rule")
    p.add_argument("rule", help="its number (from `sitesync subscriptions`) or name")


def cmd_limit(ctx: Context) -> int:
    from app.cli import _print, _table

    args = ctx.args
    changing = args.bwlimit is not None or args.transfers is not None or args.clear
    if not changing:
        shown = ctx.settings.sites
        if args.site is not None:
            shown = {_site_name(ctx.settings, args.site): None}
        rows = []
        for name in shown:
            site = ctx.settings.sites[name]
            bw = site.bwlimit
            now = bw.at(_local_now()) if bw else None
            rows.append((name, bw.text if bw else "off",
                         "-" if now is None else f"{format_rate(now.upload)} up, "
                         f"{format_rate(now.download)} down",
                         site.transfers.text() if site.transfers else
                         f"default ({ctx.settings.engine.workers_per_site})"))
        _print(_table(("Site", "Bandwidth limit", "In force now", "Transfers"), rows))
        return 0
    if args.site is None:
        raise UserFixableError("which site?", fix="name it: sitesync limit SITE --bwlimit 10M")
    settings = ctx.settings
    name = _site_name(settings, args.site)
    # Checked here first, so the error names the option rather than a settings key.
    for option, value, check in (("--bwlimit", args.bwlimit, parse_bwlimit),
                                 ("--transfers", args.transfers, parse_transfers)):
        if value is not None:
            try:
                check(value)
            except ValueError as exc:
                raise UserFixableError(f"{option} {value!r}: {exc}",
                                       fix=getattr(exc, "fix", "")) from None

    def change(raw: dict) -> None:
        sites = raw.setdefault("sites", {})
        block_name = _raw_block(sites, name, settings.local_id)
        block = sites.setdefault(block_name, {})
        if args.clear:
            block.pop("bwlimit", None)
            block.pop("transfers", None)
        if args.bwlimit is not None:
            block["bwlimit"] = args.bwlimit
        if args.transfers is not None:
            block["transfers"] = _transfers_value(args.transfers)

    saved = update_settings(change, settings.path)
    site = saved.sites[name]
    bw = site.bwlimit.text if site.bwlimit else "off"
    transfers = site.transfers.text() if site.transfers else \
        f"default ({saved.engine.workers_per_site})"
    _print(f"{args.site}: bandwidth {bw}; transfers {transfers}. Saved in {saved.path}; "
           "a running engine applies it within a second")
    return 0


def _site_name(settings: Any, site: str) -> str:
    """The configured name of ``site`` ("local" = this machine), or a UserFixableError."""
    name = settings.local_id if site == LOCAL_SITE else site
    if name not in settings.sites:
        known = ", ".join(sorted(settings.sites))
        raise UserFixableError(f"site {site!r} is not configured (configured: {known})",
                               fix="use one of those names, or add the site to the settings")
    return name


def _raw_block(sites: dict, name: str, local_id: str) -> str:
    """The settings block holding site ``name`` (this machine's may be under "local")."""
    if name == local_id and local_id not in sites and LOCAL_SITE in sites:
        return LOCAL_SITE
    return name


def _transfers_value(text: str) -> Any:
    """What to write in the settings file for ``--transfers`` (a number when it is one)."""
    limits = parse_transfers(text)
    if limits.upload == limits.download:
        return limits.upload
    return {"upload": limits.upload, "download": limits.download}


def _local_now() -> datetime:
    return datetime.now().astimezone()


def cmd_validate(ctx: Context) -> int:
    from app.cli import _now, _print
    from app.events.bus import EventBus
    from app.events.types import IntegrityAlert
    from app.policy.adopt import KINDS, QUIET, validate_site

    args = ctx.args
    settings = ctx.settings
    site = _site_name(settings, args.site)
    reference = _site_name(settings, args.reference) if args.reference else None
    bus = EventBus()  # IntegrityAlerts go on a bus, like the engine's, for any listener
    alerts: list[IntegrityAlert] = []
    bus.subscribe(alerts.append, IntegrityAlert)
    report = validate_site(ctx.store, settings, site, ctx.projects(), now=_now(),
                           reference=reference, dry_run=args.dry_run, publish=bus.publish)
    if args.json:
        import json

        _print(json.dumps({
            "site": site, "dry_run": report.dry_run, "checked": report.checked,
            "counts": dict(report.counts), "integrity_alerts": len(alerts),
            "findings": [f.__dict__ for f in report.findings],
        }, indent=2))
        return 1 if report.problems else 0
    counts = ", ".join(f"{kind} {report.counts[kind]}" for kind in KINDS if report.counts[kind])
    verb = "would adopt" if report.dry_run else "adopted"
    _print(f"site {site}: {report.checked} file(s) checked; {counts or 'nothing found'}")
    for finding in report.findings:
        _print(f"  {finding.kind.upper():<10} {finding.project} {finding.path}: {finding.detail}")
        if finding.action:
            _print(f"             what to do: {finding.action}")
    if len(report.findings) < sum(n for kind, n in report.counts.items() if kind not in QUIET):
        _print(f"  (first {len(report.findings)} shown; use --json for the list)")
    adopted = report.counts["adopted"]
    _print(f"{verb} {adopted} file(s) without moving them; {report.problems} problem(s)")
    return 1 if report.problems else 0


def cmd_subscribe(ctx: Context) -> int:
    from app.cli import _print
    from app.policy.subscriptions import SubscriptionError, SubscriptionScanner, parse_subscriptions

    args = ctx.args
    rule: dict[str, Any] = {"project": args.project, "mode": args.mode}
    for key, values in (("asset", args.asset), ("subset", args.subset),
                        ("representation", args.representation), ("family", args.family)):
        if values:
            rule[key] = values
    for key, value in (("priority", args.priority), ("name", args.name)):
        if value is not None:
            rule[key] = value
    if args.site != LOCAL_SITE:
        rule["site"] = args.site
    try:
        parse_subscriptions([rule])
    except SubscriptionError as exc:
        where = exc.subpath.split(".", 1)[-1]
        raise UserFixableError(f"--{where}: {exc.message}", fix=exc.fix) from None
    saved = update_settings(lambda raw: raw.setdefault("subscriptions", []).append(rule),
                            ctx.settings.path)
    index = len(saved.subscriptions) - 1
    added = saved.subscriptions[index]
    _print(f"added subscription {index}: {added.describe()}. A running engine applies it to "
           "new publishes within seconds")
    if args.existing:
        scanner = SubscriptionScanner(ctx.store, None)
        count = 0

        def apply(project: str, head: Any, rule: Any, _index: int) -> None:
            nonlocal count
            count += bool(ctx.store.add_site(project, head.id, rule.site,
                                             priority=rule.priority, atomic=rule.when_complete))

        for info in ctx.store.list_projects():
            if added.covers_project(info.name):
                scanner.apply_existing(info.name, (added,), apply)
        _print(f"applied to {count} representation(s) already published")
    return 0


def cmd_subscriptions(ctx: Context) -> int:
    from app.cli import _print

    rules = ctx.settings.subscriptions
    if not rules:
        _print("no subscriptions; add one with `sitesync subscribe --asset 'sh01*' ...`")
    for index, rule in enumerate(rules):
        state = "" if rule.enabled else " (disabled)"
        name = f" {rule.name}:" if rule.name else ""
        _print(f"{index}:{name} {rule.describe()}{state}")
    return 0


def cmd_unsubscribe(ctx: Context) -> int:
    from app.cli import _print

    rules = ctx.settings.subscriptions
    wanted = ctx.args.rule
    index = next((i for i, r in enumerate(rules) if r.name and r.name == wanted), None)
    if index is None and wanted.isdigit() and int(wanted) < len(rules):
        index = int(wanted)
    if index is None:
        raise UserFixableError(f"no subscription {wanted!r}",
                               fix="list them with `sitesync subscriptions`")
    update_settings(lambda raw: raw["subscriptions"].pop(index), ctx.settings.path)
    _print(f"removed subscription {index}: {rules[index].describe()}")
    return 0


POLICY_COMMANDS: dict[str, Callable[[Context], int]] = {
    "limit": cmd_limit,
    "validate": cmd_validate,
    "subscribe": cmd_subscribe,
    "subscriptions": cmd_subscriptions,
    "unsubscribe": cmd_unsubscribe,
}
