"""``rerank cache stats|prune|merge``: the call cache's size and contents, pruning it, merging caches.

``stats`` reports the path, the entries, the bytes on disk (with ``-wal``), the
oldest and newest entry, the claims in flight and the malformed entries; a missing file is
reported as such (nothing is created). ``prune`` removes entries older than ``--older-than``
days, the oldest ones until the file is under ``--max-size`` MB, and with ``--malformed`` the
entries that do not hold a valid answer; then it drops dead claims and compacts the file.
``merge OUT IN...`` copies the inputs' entries into OUT (see :func:`rerank.cache_admin.merge_caches`).
Cache modules are imported by the handler, so that ``rerank --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

CACHE_HELP = "call cache file (default: $RERANK_CACHE or ~/.cache/rerank/calls.sqlite)"


def add_cache_command(subparsers) -> argparse.ArgumentParser:
    """Add ``rerank cache stats|prune|merge`` to the ``rerank`` command's subparsers.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        What ``ArgumentParser.add_subparsers`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The ``cache`` parser.
    """
    cache = subparsers.add_parser(
        "cache", help="report on the call cache, prune it, or merge caches",
        description="Report the call cache's size and contents (stats), remove old, surplus or "
                    "malformed entries and compact the file (prune), or copy caches into one (merge).")
    actions = cache.add_subparsers(dest="action", metavar="ACTION", required=True)
    stats = actions.add_parser("stats", help="path, entries, bytes on disk, oldest/newest entry, claims in "
                                             "flight, malformed entries")
    stats.add_argument("--cache", metavar="PATH", help=CACHE_HELP)
    stats.add_argument("--json", action="store_true", help="print the report as JSON")
    prune = actions.add_parser("prune", help="remove entries, then compact the file (VACUUM)",
                               description="Remove the entries the options name (none: only dead claims), "
                                           "then compact the file, and report what was removed.")
    prune.add_argument("--cache", metavar="PATH", help=CACHE_HELP)
    prune.add_argument("--older-than", type=float, metavar="DAYS", help="remove entries stored more than DAYS ago")
    prune.add_argument("--max-size", type=float, metavar="MB",
                       help="remove the oldest entries until the file is at most MB megabytes (10^6 bytes)")
    prune.add_argument("--malformed", action="store_true",
                       help="remove entries that do not hold a valid answer (bad JSON, wrong types)")
    prune.add_argument("--json", action="store_true", help="print the report as JSON")
    merge = actions.add_parser("merge", help="copy the entries of call caches into one (created or added to)",
                               description="Copy every entry of IN.sqlite... into OUT.sqlite (created if missing, "
                                           "added to if it exists): entries under the same key are kept once, the "
                                           "newer one where two differ (counted as conflicts); claims are not "
                                           "copied. Use it to gather per-machine caches, or to seed a run.")
    merge.add_argument("out", metavar="OUT.sqlite", help="the cache to write")
    merge.add_argument("inputs", metavar="IN.sqlite", nargs="+", help="call caches to copy from")
    merge.add_argument("--json", action="store_true", help="print the report as JSON")
    cache.set_defaults(handler=cache_command)
    return cache


def cache_command(args: argparse.Namespace) -> int:
    """Run ``rerank cache stats``, ``prune`` or ``merge``; returns the exit code.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options.

    Returns
    -------
    int
        0 on success.

    Raises
    ------
    ConfigError
        When the path exists but is not a call cache, or an option is out of range.
    RerankError
        When SQLite fails on the file (locked, corrupt).
    """
    import sqlite3

    from ..cache import CallCache
    from ..cache_admin import cache_stats, is_cache, prune_cache
    from ..errors import ConfigError, RerankError
    from ..paths import default_cache_path

    if args.action == "merge":
        return _merge_command(args)
    path = args.cache or default_cache_path()
    if args.action == "stats" and not os.path.lexists(path):
        print(f"no cache at {path} (nothing created)")
        return 0
    if not is_cache(path):
        what = "does not exist" if not os.path.lexists(path) else "is not a rerank call cache"
        raise ConfigError(f"--cache {path}: {what}")
    if args.action == "prune":
        for name in ("older_than", "max_size"):
            value = getattr(args, name)
            if value is not None and not value >= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be a number >= 0, got {value}")
    cache = CallCache(path)
    try:
        if args.action == "stats":
            report = cache_stats(cache, _validate)
            print(json.dumps(report, indent=2) if args.json else _format_stats(report))
        else:
            report = prune_cache(cache, older_than=None if args.older_than is None else args.older_than * 86400,
                                 max_bytes=None if args.max_size is None else int(args.max_size * 1e6),
                                 malformed=_validate if args.malformed else None)
            print(json.dumps({"path": path, **report}, indent=2) if args.json else _format_prune(path, report))
    except sqlite3.Error as exc:
        raise RerankError(f"cache {path}: {exc}") from None
    finally:
        cache.close()
    sys.stdout.flush()
    return 0


def _merge_command(args: argparse.Namespace) -> int:
    """``rerank cache merge OUT IN...``."""
    import sqlite3

    from ..cache_admin import is_cache, merge_caches
    from ..errors import ConfigError, RerankError

    if os.path.lexists(args.out) and not is_cache(args.out):
        raise ConfigError(f"{args.out}: is not a rerank call cache (refusing to write into it)")
    try:
        report = merge_caches(args.out, args.inputs).as_dict()
    except sqlite3.Error as exc:
        raise RerankError(f"cache merge into {args.out}: {exc}") from None
    if args.json:
        print(json.dumps({"path": args.out, **report}, indent=2))
    else:
        print(f"cache: {args.out}\n"
              f"read {report['read']:,} entries from {len(args.inputs)} caches: {report['added']:,} added, "
              f"{report['duplicates']:,} duplicates, {report['conflicts']:,} conflicts (the newer answer kept)")
    sys.stdout.flush()
    return 0


def _validate(text) -> None:
    """Raise unless ``text`` holds an answer the reranker would trust."""
    from ..backends.base import Completion

    Completion.from_json(json.loads(text))


def _when(seconds: float | None) -> str:
    return "-" if seconds is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def _format_stats(report: dict) -> str:
    return "\n".join([
        f"cache: {report['path']}",
        f"entries: {report['entries']:,}",
        f"on disk: {_size(report['bytes'])} (with -wal)",
        f"oldest entry: {_when(report['oldest'])}",
        f"newest entry: {_when(report['newest'])}",
        f"claims in flight: {report['claims']} ({report['stale_claims']} stale)",
        f"malformed entries: {report['malformed']}"])


def _format_prune(path: str, report: dict) -> str:
    removed = report["malformed"] + report["older"] + report["size"]
    return (f"cache: {path}\n"
            f"removed {removed:,} entries ({report['malformed']:,} malformed, {report['older']:,} old, "
            f"{report['size']:,} for size) and {report['stale_claims']} stale claims; {report['entries']:,} "
            f"entries left\n"
            f"on disk: {_size(report['bytes_before'])} -> {_size(report['bytes_after'])}")
