"""Studies beyond a benchmark run: speed (perf), effective receptive fields, sweeps and speed scripts."""
