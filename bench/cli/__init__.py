"""Command line: argparse only; each sub-command module calls one function of the layers below.

`main` is exported here so that ``relama-bench = "bench.cli:main"`` and ``python -m bench.cli`` work.
"""

from bench.cli.app import main

__all__ = ["main"]
