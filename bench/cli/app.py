"""``relama-bench`` command line.

Each sub-command lives in its own module, which exposes ``add_command(subparsers)``; that function
adds a parser whose ``func`` default takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import shlex
import sys
from typing import Sequence

from PIL import Image

from bench.errors import UserError
from bench.metrics.backbones import WeightsUnavailable
from methods.base import MethodUnavailable
from methods.checkpoint import CheckpointError

#: Modules providing sub-commands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "bench.cli.run",
    "bench.cli.score",
    "bench.cli.list",
    "bench.cli.weights",
    "bench.cli.perf",
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


_KEPT = "finished work is kept and a rerun resumes it"
#: What to do about a failed file operation, by errno.
_OS_ERROR_FIXES = {
    errno.ENOSPC: f"free disk space or pass --runs-dir on another disk; {_KEPT}",
    errno.EDQUOT: f"free space within your quota or pass --runs-dir on another disk; {_KEPT}",
    errno.EROFS: "pass --runs-dir pointing to a writable folder",
    errno.EACCES: "check its permissions, or pass --runs-dir pointing to a writable folder",
    errno.ENAMETOOLONG: "use a shorter file or folder name",
    errno.EISDIR: "a folder stands where a file is expected: move it away or pass a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder: fix the path",
    errno.ENOENT: "check the path",
}


#: What an interrupted command keeps, for commands whose work is cached; a sub-command whose work is not
#: sets its own ``on_interrupt`` default.
RESUMABLE_INTERRUPT = "finished work is kept and a rerun resumes it"


def error_sentence(error: BaseException) -> str:
    """One sentence for an error the user can act on: what failed, where, and the fix."""
    if isinstance(error, OSError):
        # A failed rename names its target second; the target is the file the user knows.
        where = error.filename2 or error.filename
        what = (error.strerror or str(error)).rstrip(".")
        fix = _OS_ERROR_FIXES.get(error.errno, "check the file and try again")
        return f"{where}: {what}: {fix}" if where else f"{what}: {fix}"
    if isinstance(error, Image.DecompressionBombError):
        return f"an image is too large to decode safely ({error}): shrink or remove it"
    if isinstance(error, MemoryError):
        return f"out of memory: pass a smaller --size or --max-side, fewer --workers or fewer images; {_KEPT}"
    return str(error)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser.set_defaults(on_interrupt=RESUMABLE_INTERRUPT)
    args = parser.parse_args(arguments)
    # Recorded in run directories so that a report can print the command that reproduces it.
    args.command_line = "relama-bench " + " ".join(shlex.quote(argument) for argument in arguments)
    try:
        return int(args.func(args) or 0)
    except (UserError, MethodUnavailable, CheckpointError, WeightsUnavailable, OSError,
            Image.DecompressionBombError, MemoryError) as error:
        print(f"relama-bench: error: {error_sentence(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"relama-bench: interrupted; {args.on_interrupt}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
