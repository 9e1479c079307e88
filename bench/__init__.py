"""The benchmark harness: CLI, data, runner, metrics, statistics and reports."""
