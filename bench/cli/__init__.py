"""Command line: argparse only; each sub-command module calls one function of the layers below.

`main` is exported here so that ``relama-bench = "bench.cli:main"`` and ``python -m bench.cli`` work.
"""

import os

# Torch's OpenMP threads spin for milliseconds at every barrier by default. A run keeps its cores busy
# with worker processes while it scores, and the machine may be shared: spinning threads then take the
# cores from the threads they wait for (measured under load: Inception 0.8-1.4 s per image instead of
# 0.12 s, a big-lama pass at 256x256 17-23 s instead of 1.0-1.7 s). Sleeping waits change no result.
# Set before torch is imported (OpenMP reads it once); a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bench.cli.app import main  # noqa: E402  (after the environment is set)

__all__ = ["main"]
