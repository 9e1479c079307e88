"""Command line: argparse only; each sub-command module calls one function of the layers below.

`main` is exported here so that ``relama-bench = "bench.cli:main"`` and ``python -m bench.cli`` work.
"""

import os

# Torch's OpenMP threads (libgomp in PyTorch's Linux wheels) spin at every barrier before they sleep.
# A run keeps its cores busy with worker processes while it scores, so long spins take the cores from
# the threads they wait for; sleeping at once (OMP_WAIT_POLICY=PASSIVE) makes every small op pay a
# wake-up instead. Measured on 2 idle cores, wall s of the default run / a 256-image 64x64 scale run:
# default spin 70.9 / 52.0, passive 50.4 / 72.6, a short spin of 10,000 iterations 50.2 / 48.6.
# Sleeping or spinning changes no result. Set before torch loads OpenMP; a user's own choice is kept.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from bench.cli.app import main  # noqa: E402  (after the environment is set)

__all__ = ["main"]
