"""Peak memory of the report step's set metrics (FID, KID, FID differences) against the number of images.

``python -m bench.studies.set_metrics_memory --sizes 128,2000,8000`` writes, for each N, random 2048-d
float32 features of N originals and of two methods for one case into a scratch run directory, laid out
as a run caches them, then computes `bench.run.scoring.set_metrics` and `fid_differences` in a fresh
process and records that process's peak resident memory (``ru_maxrss``) before and after, and the
seconds they took. The difference is what the set metrics add to the report step.

Not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

DIMENSION = 2048
DEFAULT_SIZES = (128, 2000, 8000)

#: Runs in a fresh process: the run directory is argv[1]; prints peak RSS (KiB) before and after.
_MEASURE = (
    "import json, resource, sys, time\n"
    "from pathlib import Path\n"
    "import pandas as pd\n"
    "from bench.run.scoring import fid_differences, set_metrics\n"
    "run_dir = Path(sys.argv[1])\n"
    "rows = pd.read_parquet(run_dir / 'rows.parquet')\n"
    "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "start = time.perf_counter()\n"
    "sets = set_metrics(run_dir, rows)\n"
    "middle = time.perf_counter()\n"
    "differences = fid_differences(run_dir, rows, 'first')\n"
    "end = time.perf_counter()\n"
    "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "print(json.dumps({'before_kib': before, 'peak_kib': after, 'set_metrics_s': middle - start,\n"
    "                  'fid_differences_s': end - middle, 'forms': sorted(set(sets['fid_trace_form']))}))\n"
)


def write_features(run_dir: Path, count: int, seed: int = 0) -> None:
    """Random features of ``count`` originals and of methods ``first`` and ``second`` (case ``large``),
    and the rows that name them, one image at a time (the writer holds no set)."""
    import numpy as np
    import pandas as pd

    from bench.run.rundir import RunDir

    paths, rng = RunDir(run_dir), np.random.default_rng(seed)
    for index in range(count):
        original = rng.random(DIMENSION, dtype=np.float32)
        targets = {paths.original_features(f"i{index}"): original}
        for shift, method in enumerate(("first", "second"), start=1):
            targets[paths.features(method, "large", f"i{index}")] = original + np.float32(0.05 * shift) * rng.random(
                DIMENSION, dtype=np.float32)
        for path, vector in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, vector[None])
    rows = pd.DataFrame([{"method": method, "case": "large", "image_id": f"i{index}", "hole_fraction": 0.3}
                         for method in ("first", "second") for index in range(count)])
    paths.write_rows(rows)


def measure(count: int, scratch: Path, code_root: Path | None = None) -> dict:
    """Peak memory and time of the set metrics of ``count`` images, computed by the ``bench`` package of
    ``code_root`` (a checkout; default: the one importing this) in a fresh process."""
    run_dir = scratch / f"n{count}"
    write_features(run_dir, count)
    finished = subprocess.run([sys.executable, "-c", _MEASURE, str(run_dir)], capture_output=True, text=True,
                              check=True, cwd=code_root)
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    return {"images": count, "peak_rss_mib": result["peak_kib"] / 1024,
            "added_mib": (result["peak_kib"] - result["before_kib"]) / 1024,
            "set_metrics_s": result["set_metrics_s"], "fid_differences_s": result["fid_differences_s"],
            "fid_form": ",".join(result["forms"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="numbers of images, comma-separated (default %(default)s)")
    parser.add_argument("--code-root", type=Path, default=None,
                        help="checkout whose bench package computes the metrics (to compare versions)")
    args = parser.parse_args(argv)
    print("| images | peak RSS MiB | added by set metrics MiB | set_metrics s | fid_differences s | FID form |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="set-metrics-memory-") as scratch:
        for count in (int(size) for size in args.sizes.split(",")):
            row = measure(count, Path(scratch), args.code_root)
            print(f"| {row['images']} | {row['peak_rss_mib']:.0f} | {row['added_mib']:.0f} | "
                  f"{row['set_metrics_s']:.1f} | {row['fid_differences_s']:.1f} | {row['fid_form']} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
