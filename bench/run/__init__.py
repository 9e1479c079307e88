"""A benchmark run: its configuration, run directory, data, runner and set-level scoring."""
