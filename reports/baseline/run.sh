#!/usr/bin/env bash
# The deterministic CI-sized run whose summary table reports/baseline/summary.csv holds.
# Usage: bash reports/baseline/run.sh [RUNS_DIR]   (then: relama-bench check RUNS_DIR/ci-baseline)
set -euo pipefail
relama-bench run --limit 4 --methods telea,ns,biharmonic,lama-celebahq64,relama-cbam-celebahq64 \
  --cases small,region,large --seed 0 --runs-dir "${1:-runs}" --run-id ci-baseline --workers 2 --no-progress
