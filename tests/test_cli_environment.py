"""The command line's process environment: OpenMP threads sleep while they wait."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PRINT_POLICY = "import os, bench.cli; print(os.environ['OMP_WAIT_POLICY'])"


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_cli_sets_a_sleeping_openmp_wait_policy_unless_the_user_chose_one(given, expected):
    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if given is not None:
        environment["OMP_WAIT_POLICY"] = given
    printed = subprocess.run([sys.executable, "-c", _PRINT_POLICY], env=environment, check=True,
                             capture_output=True, text=True).stdout.split()
    assert printed == [expected]


def test_the_policy_is_set_before_torch_is_imported():
    """OpenMP reads the policy once, when torch loads it: bench.cli must set it before any import of torch."""
    probe = ("import builtins, os, sys\n"
             "real_import = builtins.__import__\n"
             "def watching(name, *args, **kwargs):\n"
             "    if name == 'torch' and 'torch' not in sys.modules and os.environ.get('OMP_WAIT_POLICY') is None:\n"
             "        raise SystemExit('torch imported before the wait policy was set')\n"
             "    return real_import(name, *args, **kwargs)\n"
             "builtins.__import__ = watching\n"
             "import bench.cli\n")
    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    result = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
