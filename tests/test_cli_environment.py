"""The command line's process environment: OpenMP threads spin only briefly before they sleep."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PRINT_WAITING = ("import os, bench.cli; "
                  "print(os.environ.get('OMP_WAIT_POLICY', '-'), os.environ.get('GOMP_SPINCOUNT', '-'))")
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


@pytest.mark.parametrize("given, expected", [
    ({}, ["-", "10000"]),
    ({"GOMP_SPINCOUNT": "500"}, ["-", "500"]),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, ["ACTIVE", "-"]),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, ["PASSIVE", "-"]),
])
def test_cli_shortens_openmp_spinning_unless_the_user_chose_how_threads_wait(given, expected):
    environment = {key: value for key, value in os.environ.items() if key not in _WAIT_VARIABLES}
    environment.update(given)
    printed = subprocess.run([sys.executable, "-c", _PRINT_WAITING], env=environment, check=True,
                             capture_output=True, text=True).stdout.split()
    assert printed == expected


def test_the_spin_count_is_set_before_torch_is_imported():
    """OpenMP reads it once, when torch loads it: bench.cli must set it before any import of torch."""
    probe = ("import builtins, os, sys\n"
             "real_import = builtins.__import__\n"
             "def watching(name, *args, **kwargs):\n"
             "    if name == 'torch' and 'torch' not in sys.modules and os.environ.get('GOMP_SPINCOUNT') is None:\n"
             "        raise SystemExit('torch imported before the spin count was set')\n"
             "    return real_import(name, *args, **kwargs)\n"
             "builtins.__import__ = watching\n"
             "import bench.cli\n")
    environment = {key: value for key, value in os.environ.items() if key not in _WAIT_VARIABLES}
    result = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
