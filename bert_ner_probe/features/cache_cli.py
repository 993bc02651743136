"""``bert-ner-probe-cache``: list, verify and clear the feature cache (like ``huggingface-cli scan-cache``).

::

    bert-ner-probe-cache [--dir DIR] list
    bert-ner-probe-cache [--dir DIR] verify [--full] [NAME ...]
    bert-ner-probe-cache [--dir DIR] rm NAME ... | --older-than 30d [--dry-run]
    bert-ner-probe-cache [--dir DIR] prune --max-size 20G [--dry-run]

``DIR`` defaults to the runs' default (``$BERT_NER_PROBE_CACHE`` or
``~/.cache/bert_ner_probe``); pass the ``cache_dir`` your runs use. ``list``
shows each entry's encoder, data, pooling, context, hidden states held, size
and last use; ``verify`` checks sizes and sampled checksums (``--full``: whole-file CRC-32)
and exits 1 when an entry is damaged; ``rm`` deletes entries by name or by
last use; ``prune`` deletes the least recently used entries until the cache
fits ``--max-size``, and any temporary build folder no build holds.
A user error prints ``error: …`` and exits 2.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Iterable, List, Optional

from filelock import FileLock, Timeout

from bert_ner_probe.features.cache import (EntryInfo, check_entry, default_root, human_size, list_entries, old_layout,
                                          remove_entry)
from bert_ner_probe.hidden_states import states_text
from bert_ner_probe.errors import UserError

_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    """``"20G"``, ``"500MB"``, ``"1.5T"`` or plain bytes → bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if not m:
        raise UserError(f"--max-size {text!r}: expected a size such as 500M, 20G or 1.5T")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def parse_age(text: str) -> float:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if not m:
        raise UserError(f"--older-than {text!r}: expected an age such as 30d, 12h, 90m or 2w")
    return float(m.group(1)) * _TIME_UNITS[m.group(2)]


def _describe(e: EntryInfo) -> List[str]:
    """The ``list`` columns of one entry."""
    used = datetime.fromtimestamp(e.last_used).strftime("%Y-%m-%d %H:%M")
    if e.meta is None:
        return [e.name, "?", "(incomplete: no meta.json)", "?", "?", "?", human_size(e.bytes), used]
    key = e.meta.get("key", {})
    sources = e.meta.get("data_sources") or {}
    train = str(sources.get("train", key.get("data", "?")))
    data = str(Path(train).parent) if Path(train).suffix else train
    counts = key.get("sentences") or {}
    if counts:
        data += " (" + "/".join(str(counts.get(s, "?")) for s in ("train", "dev", "test")) + " sentences)"
    held = e.meta.get("hidden_states")
    states = "old layout" if old_layout(e.meta) else states_text(held) if held else "?"
    return [e.name, str(key.get("encoder", "?")), data, str(key.get("pooling", "?")),
            str(key.get("context", "?")), states, human_size(e.bytes), used]


def _table(rows: List[List[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def cmd_list(root: Path) -> int:
    entries = list_entries(root)
    if not entries:
        print(f"{root}: no cache entries")
        return 0
    header = ["NAME", "ENCODER", "DATA", "POOLING", "CONTEXT", "HIDDEN STATES", "SIZE", "LAST USED"]
    print(_table([header] + [_describe(e) for e in entries]))
    print(f"\n{len(entries)} entries, {human_size(sum(e.bytes for e in entries))} in {root}")
    return 0


def _select(root: Path, names: Iterable[str]) -> List[EntryInfo]:
    entries = {e.name: e for e in list_entries(root)}
    chosen = []
    for name in names:
        name = Path(name).name  # a path to the entry works too
        if name not in entries:
            raise UserError(f"{root / name}: no such cache entry (see bert-ner-probe-cache list)")
        chosen.append(entries[name])
    return chosen


def cmd_verify(root: Path, names: List[str], full: bool) -> int:
    entries = _select(root, names) if names else list_entries(root)
    damaged = 0
    for e in entries:
        why = check_entry(e.path, full=full)
        old = why is None and old_layout(e.meta)
        print(f"{'ok' if why is None else 'damaged'}  {e.name}" + ("" if why is None else f": {why}")
              + (" (older one-file layout: the next run that needs it rebuilds it)" if old else ""), flush=True)
        damaged += why is not None
    print(f"{len(entries)} entries checked ({'whole files' if full else 'sizes and sampled checksums'}), "
          f"{damaged} damaged" + (": the next run that needs one rebuilds it, or remove it with "
                                  "bert-ner-probe-cache rm NAME" if damaged else ""))
    return 1 if damaged else 0


def _remove(root: Path, entries: List[EntryInfo], dry_run: bool) -> int:
    freed = 0
    for e in entries:
        freed += e.bytes if dry_run else remove_entry(root, e.name)
        print(f"{'would remove' if dry_run else 'removed'}  {e.name}  {human_size(e.bytes)}", flush=True)
    print(f"{'would free' if dry_run else 'freed'} {human_size(freed)} ({len(entries)} entries)")
    return 0


def cmd_rm(root: Path, names: List[str], older_than: Optional[str], dry_run: bool) -> int:
    if bool(names) == (older_than is not None):
        raise UserError("rm: give entry NAMEs or --older-than AGE (one of the two)")
    if names:
        entries = _select(root, names)
    else:
        cutoff = time.time() - parse_age(older_than)
        entries = [e for e in list_entries(root) if e.last_used < cutoff]
    return _remove(root, entries, dry_run)


def _stale_tmp_folders(root: Path) -> List[Path]:
    """Temporary build folders whose entry lock is free: left by a killed build."""
    stale = []
    for tmp in sorted(root.glob(".tmp-*")):
        name = re.sub(r"-\d+-[0-9a-f]{8}$", "", tmp.name[len(".tmp-"):])
        try:
            with FileLock(str(root / f"{name}.lock"), timeout=0):
                stale.append(tmp)
        except Timeout:  # a build is running
            continue
    return stale


def cmd_prune(root: Path, max_size: str, dry_run: bool) -> int:
    limit = parse_size(max_size)
    for tmp in _stale_tmp_folders(root):
        if not dry_run:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"{'would remove' if dry_run else 'removed'}  {tmp.name} (left by a killed build)")
    entries = list_entries(root)  # least recently used first
    total = sum(e.bytes for e in entries)
    doomed = []
    for e in entries:
        if total <= limit:
            break
        doomed.append(e)
        total -= e.bytes
    _remove(root, doomed, dry_run)
    print(f"cache size {'would be ' if dry_run else ''}{human_size(total)} (limit {human_size(limit)})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bert-ner-probe-cache",
                                     description="List, verify and clear the bert-ner-probe feature cache.")
    parser.add_argument("--dir", default=None,
                        help="the cache folder (default: $BERT_NER_PROBE_CACHE or ~/.cache/bert_ner_probe)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="each entry's encoder, data, pooling, context, hidden states, size and last use")
    verify = sub.add_parser("verify", help="check entries' sizes and checksums; exit 1 if one is damaged")
    verify.add_argument("names", nargs="*", metavar="NAME", help="entries to check (default: all)")
    verify.add_argument("--full", action="store_true", help="read whole files (CRC-32), not sampled blocks")
    rm = sub.add_parser("rm", help="remove entries by name or by last use")
    rm.add_argument("names", nargs="*", metavar="NAME")
    rm.add_argument("--older-than", default=None, metavar="AGE", help="entries last used before AGE ago (30d, 12h)")
    rm.add_argument("--dry-run", action="store_true")
    prune = sub.add_parser("prune", help="remove least recently used entries until the cache fits a size")
    prune.add_argument("--max-size", required=True, metavar="SIZE", help="e.g. 20G, 500M")
    prune.add_argument("--dry-run", action="store_true")
    return parser


def cli(argv: Optional[Iterable[str]] = None) -> None:
    """Entry point of ``bert-ner-probe-cache``."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    root = Path(args.dir).expanduser() if args.dir else default_root()
    try:
        if args.command != "list" and not root.is_dir():
            raise UserError(f"{root}: no such cache folder")
        if args.command == "list":
            code = cmd_list(root)
        elif args.command == "verify":
            code = cmd_verify(root, args.names, args.full)
        elif args.command == "rm":
            code = cmd_rm(root, args.names, args.older_than, args.dry_run)
        else:
            code = cmd_prune(root, args.max_size, args.dry_run)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)


if __name__ == "__main__":
    cli()
