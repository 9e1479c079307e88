"""``relama-bench`` command line.

Each sub-command lives in its own module, which exposes ``add_command(subparsers)``; that function
adds a parser whose ``func`` default takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from typing import Sequence

from bench.errors import UserError
from methods.base import MethodUnavailable
from methods.checkpoint import CheckpointError

#: Modules providing sub-commands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "bench.cli.run",
    "bench.cli.list",
    "bench.cli.weights",
    "bench.studies.perf",
    "bench.cli.check",
    "bench.cli.erf",
    "bench.cli.sweep",
    "bench.cli.train",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relama-bench",
        description="Compare image-inpainting methods on the same images, masks and metrics.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(arguments)
    # Recorded in run directories so that a report can print the command that reproduces it.
    args.command_line = "relama-bench " + " ".join(shlex.quote(argument) for argument in arguments)
    try:
        return int(args.func(args) or 0)
    except (UserError, MethodUnavailable, CheckpointError) as error:
        print(f"relama-bench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("relama-bench: interrupted; finished work is kept and a rerun resumes it", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
