"""The reliability table: run tests/reliability with more rounds and examples than CI
does, and turn what each test reports into the table in docs/reliability.md.

Every test there appends one JSON line of figures (how many kills, faults, documents,
argument lists...) to ``$SITESYNC_RELIABILITY_REPORT`` after it passed; this script sets
that file, scales the work (``SITESYNC_RELIABILITY_SCALE`` multiplies race rounds,
property-test examples and user-action time; ``SITESYNC_CRASH_ROUNDS`` sets the kills per
crash run) and sums the lines per row. A test that fails writes no line, and the script
exits non-zero with pytest's output.

Usage:  python -m bench.reliability_report [--scale 5] [--crash-rounds 100] [--repeat 1]
                                           [--out FILE] [-k EXPR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: test key -> (what was tried, what held), in table order.
ROWS: dict[str, tuple[str, str]] = {
    "crash": ("SIGKILL of `sitesync serve` at random moments while files of 1 B-8 MiB move "
              "both ways; part files of files no longer wanted left behind",
              "no partial or wrong file under a final name; nothing marked available with "
              "other bytes or checksum; no try counted; every file synced by the next run; "
              "orphaned part files swept, no other part file left"),
    "three_engines": ("3 `serve --once` engines on one database and site pair",
                      "every file moved exactly once; engines' counts agree; console lines whole"),
    "steady_faults": ("provider faults at a steady rate on both sides (refused connections, "
                      "timeouts, stalls, drops mid-stream, commit answers lost)",
                      "every file synced with the source's bytes and checksum; each fault "
                      "counted as exactly one try, cleared by the success; no part file left"),
    "source_edited": ("source rewritten in place or replaced by rename while being copied",
                      "never committed: retried; with a recorded checksum it fails for good "
                      "(\"no longer matches\"), without one the new version is synced whole"),
    "source_deleted": ("source deleted while being copied",
                       "the open file gives the whole published version; synced, no failure"),
    "db_outage": ("MongoDB-wire server killed mid-run for 2 leases, restarted on its port",
                  "engine reports \"offline\" naming the server, resumes by itself; every file "
                  "synced right, no try counted, no part file left"),
    "db_down_at_start": ("`serve --once` started while the database is down",
                         "waits (\"offline\"), syncs everything once it answers, exits 0"),
    "sqlite_locked": ("embedded database write-locked by another process past its busy timeout",
                      "engine reports \"offline\" (\"locked\"), resumes when released; no try "
                      "counted"),
    "disk_full": ("target site on a full 4 MiB tmpfs (a real mount)",
                  "that file fails at once: \"disk full on site ... free space\"; its part "
                  "file removed; files before and after unaffected; reset after growing syncs it"),
    "store_race": ("user actions racing engine writes on one document (rounds per case)",
                   "no lost update: priority, pause, reset, add/remove site and lease, "
                   "progress, success all survive or win as intended"),
    "user_actions": ("random pause/resume, priority, reset, add/remove site during transfers",
                     "every file synced right; no user action counted as a try; last "
                     "priority kept; no part file left"),
    "bad_documents": ("damaged representation documents through insert_document (property test)",
                      "stored, or refused with a DocumentError naming the document; find_work, "
                      "summary, file_details and `sitesync status` keep working"),
    "raw_documents": ("damaged documents written straight into MongoDB",
                      "skipped by work and summary; reading one names it; CLI status works"),
    "bad_arguments": ("random `sitesync` argument lists (property test)",
                      "never a traceback; exit 0, 1 or 2 with a message"),
    "damaged_settings": ("settings files damaged byte by byte",
                         "load, or ConfigError saying why; the file is never rewritten"),
    "settings_start_engine": ("random settings that load",
                              "providers built or refused with a SiteSyncError; engine finds "
                              "pairs and sweeps"),
    "escaping_paths": ("documents with `..`, absolute, drive-letter, UNC, backslash, NUL, "
                       "unknown-root paths and symlinks out of both roots",
                       "each fails with a message naming the path; nothing read or written "
                       "outside the roots; the good file beside them syncs"),
    "secrets": ("CLI runs with a MongoDB password in the URL (server unreachable), SFTP "
                "password and key passphrase, a broken settings file",
                "no password in any output, --debug log, error text or file written"),
    "permissions": ("fresh install under umask 000",
                    "settings, database (+ -wal/-shm) and state files 0600 in 0700 folders"),
}


def _sum(lines: list[dict], key: str) -> int:
    return sum(int(line.get(key, 0)) for line in lines)


def _stores(lines: list[dict]) -> str:
    stores = sorted({line["store"] for line in lines if "store" in line})
    return ", ".join(stores) if stores else "-"


def _times(key: str, lines: list[dict]) -> str:
    """How many times, in the words that fit the row."""
    n = len(lines)
    if key == "crash":
        reasons = Counter()
        for line in lines:
            reasons.update(line.get("kill_reasons", {}))
        return (f"{_sum(lines, 'kills'):,} kills in {n} runs ({_sum(lines, 'mid_work_kills'):,} "
                f"with work in flight; {reasons.get('part file being written', 0):,} while a part "
                f"file was being written); {_sum(lines, 'files'):,} files "
                f"({_sum(lines, 'downloads'):,} downloads); {_sum(lines, 'orphan_parts_swept')} "
                "orphaned part files")
    if key == "three_engines":
        return f"{n} runs, {_sum(lines, 'files'):,} files, {_sum(lines, 'moved'):,} moves"
    if key == "steady_faults":
        injected = Counter()
        for line in lines:
            injected.update(line.get("injected", {}))
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(injected.items()))
        return (f"{n} runs, {_sum(lines, 'files'):,} files; injected: {kinds}; "
                f"{_sum(lines, 'file_failed_events'):,} tries counted")
    if key == "db_outage":
        return f"{n} outages of {lines[0]['outage_s']} s, {_sum(lines, 'files')} files each"
    if key == "store_race":
        by_case: dict[str, int] = defaultdict(int)
        for line in lines:
            by_case[line["case"]] += int(line["rounds"])
        return "; ".join(f"{case}: {rounds:,}" for case, rounds in sorted(by_case.items()))
    if key == "user_actions":
        return f"{_sum(lines, 'actions'):,} actions in {n} runs over {_sum(lines, 'files'):,} files"
    if key == "bad_documents":
        return f"{_sum(lines, 'stored') + _sum(lines, 'refused'):,} documents " \
               f"({_sum(lines, 'refused'):,} refused)"
    if key == "raw_documents":
        return f"{_sum(lines, 'written'):,} documents"
    if key == "bad_arguments":
        codes = Counter()
        for line in lines:
            codes.update({str(k): v for k, v in line.get("exit_codes", {}).items()})
        return f"{sum(codes.values()):,} argument lists (exit " + \
            ", ".join(f"{c}: {n:,}" for c, n in sorted(codes.items())) + ")"
    if key == "damaged_settings":
        return f"{_sum(lines, 'refused') + _sum(lines, 'loaded'):,} files " \
               f"({_sum(lines, 'loaded')} still valid)"
    if key == "settings_start_engine":
        return f"{_sum(lines, 'loaded'):,} settings"
    if key == "escaping_paths":
        return f"{_sum(lines, 'documents'):,} documents"
    if key == "secrets":
        return f"{_sum(lines, 'commands')} commands, {_sum(lines, 'files_scanned')} files scanned"
    if key == "permissions":
        return f"{_sum(lines, 'files')} files, {_sum(lines, 'folders')} folders"
    return f"{n}"


def table(lines: list[dict]) -> str:
    by_test: dict[str, list[dict]] = defaultdict(list)
    for line in lines:
        by_test[line["test"]].append(line)
    out = ["| What was tried | Stores | How many times | What held |", "|---|---|---|---|"]
    for key, (tried, held) in ROWS.items():
        if by_test.get(key):
            out.append(f"| {tried} | {_stores(by_test[key])} | {_times(key, by_test[key])} | {held} |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--crash-rounds", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="run the suite this many times")
    parser.add_argument("-k", dest="select", help="pytest -k expression")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.jsonl"
        env = {**os.environ, "SITESYNC_RELIABILITY_REPORT": str(report),
               "SITESYNC_RELIABILITY_SCALE": str(args.scale),
               "SITESYNC_CRASH_ROUNDS": str(args.crash_rounds), "QT_QPA_PLATFORM": "offscreen"}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/reliability"]
        if args.select:
            command += ["-k", args.select]
        started = time.monotonic()
        failed = 0
        for n in range(args.repeat):
            print(f"run {n + 1}/{args.repeat}: {' '.join(command[2:])}", file=sys.stderr, flush=True)
            result = subprocess.run(command, cwd=ROOT, env=env)
            failed += result.returncode != 0
        lines = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    text = table(lines)
    text += (f"\n\n{args.repeat} run(s) of tests/reliability, scale {args.scale}, "
             f"{args.crash_rounds} kills per crash run, {time.monotonic() - started:,.0f} s"
             f"{'; FAILURES: see the pytest output above' if failed else '; every test passed'}.")
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
