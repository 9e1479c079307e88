"""``relama-bench check``: fail when a run's metric tables drift from the committed baseline."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.analysis.regression import check_run, format_result, update_baseline

DEFAULT_BASELINE = Path("reports/baseline")


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``check`` sub-command to ``subparsers``."""
    check = subparsers.add_parser(
        "check", help="compare a run's summary table with a baseline; non-zero exit on any difference beyond tolerance",
        description="Compare RUN_DIR/tables/summary.csv with BASELINE/summary.csv metric by metric. Regressions, "
                    "improvements, changed N and missing or new entries all fail (exit 1), so an intended change "
                    "must come with a refreshed baseline (--update).")
    check.add_argument("run_dir", type=Path, help="a finished run directory, e.g. runs/latest")
    check.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE,
                       help=f"baseline folder (default {DEFAULT_BASELINE})")
    check.add_argument("--update", action="store_true",
                       help="write the run's summary table as the new baseline instead of checking")
    check.add_argument("--allow-improvements", action="store_true",
                       help="let improvements pass (regressions, changes and missing entries still fail)")
    check.set_defaults(func=check_command)


def check_command(args: argparse.Namespace) -> int:
    """Check (or with ``--update`` rewrite) the baseline; 0 when it passes, 1 when it fails."""
    if args.update:
        path = update_baseline(args.run_dir, args.baseline)
        print(f"baseline written: {path} (commit {args.baseline} to make it the reference)")
        return 0
    result = check_run(args.run_dir, args.baseline)
    print(format_result(result, run_dir=args.run_dir, baseline_dir=args.baseline,
                        allow_improvements=args.allow_improvements))
    return 1 if result.failed(allow_improvements=args.allow_improvements) else 0
