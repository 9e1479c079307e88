"""How a run's cost grows with the number of images, in one process and in two under torchrun.

``python -m bench.studies.scale_benchmark --scenes ../shared/datasets/scenes/test --out scale-study``
cuts 64 x 64 crops (``--crop``) from the scenes test photographs (one per photograph, then a second per photograph,
and so on), and for each N runs ``relama-bench run`` with Telea and Navier-Stokes on one mask case of
the suite, LPIPS and FID/KID on, as a fresh run (nothing cached), once in one process and once as
``torchrun --nproc-per-node 2``. It records the wall time of the whole command and the peak resident
memory of its largest process (``ru_maxrss`` of the waited-for descendants, read in a wrapper process
per measurement so runs do not share it), and writes ``scale.csv`` and ``scale.md`` (with the wall time
per added image between consecutive sizes, which start-up costs do not blur).

Not a test: it takes many minutes, and its numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from PIL import Image

CROP = 64
DEFAULT_SIZES = (8, 128, 2000)
METHODS = "telea,ns"
CASE = "region"

#: Runs a command and prints its wall time and the peak RSS (KiB) of its largest descendant.
_MEASURE = (
    "import json, resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
    "wall = time.perf_counter() - start\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print(json.dumps({'code': code.returncode, 'wall_s': wall, 'peak_rss_kib': peak,"
    " 'stderr': code.stderr[-2000:]}))\n"
)


def write_crops(scenes: Path, folder: Path, count: int, crop: int = CROP) -> None:
    """The first ``count`` ``crop x crop`` crops, taken round robin over the photographs' crop grids.

    Raises
    ------
    ValueError
        The photographs hold fewer than ``count`` crops of that size.
    """
    folder.mkdir(parents=True, exist_ok=True)
    photos = sorted(path for path in scenes.iterdir() if path.suffix.lower() in (".jpg", ".png"))
    written, index = 0, 0
    grids = {}
    while written < count:
        for photo in photos:
            if written == count:
                break
            if photo not in grids:
                with Image.open(photo) as opened:
                    width, height = opened.size
                grids[photo] = [(x, y) for y in range(0, height - crop + 1, crop)
                                for x in range(0, width - crop + 1, crop)]
            if index >= len(grids[photo]):
                continue
            x, y = grids[photo][index]
            with Image.open(photo) as opened:
                opened.convert("RGB").crop((x, y, x + crop, y + crop)).save(folder / f"{photo.stem}_{index:02d}.png")
            written += 1
        index += 1
        if written < count and index >= max(len(grid) for grid in grids.values()):
            raise ValueError(f"{scenes} holds {written} crops of {crop} x {crop}, fewer than {count}")


def measure(command: list[str], environment: dict[str, str]) -> dict:
    finished = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True,
                              env=environment, check=True)
    result = json.loads(finished.stdout)
    if result["code"] != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result['stderr']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=Path, required=True, help="folder of photographs (the scenes test split)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the crops, runs and tables")
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="numbers of images")
    parser.add_argument("--crop", type=int, default=CROP,
                        help=f"side of the square crops (default {CROP}); larger crops show memory held per image")
    parser.add_argument("--processes", default="1,2",
                        help="numbers of processes to measure each size with (1: plain run, more: torchrun)")
    parser.add_argument("--learned-max", type=int, default=None,
                        help="run larger sizes with --no-learned-metrics (pixel metrics only), for a machine too "
                             "busy for thousands of Inception passes; the table says which rows")
    args = parser.parse_args(argv)
    environment = dict(os.environ)
    repo = Path(__file__).resolve().parents[2]
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), environment.get("PYTHONPATH")]))
    records = []
    for count in [int(text) for text in args.sizes.split(",")]:
        data = args.out / f"data-{args.crop}-{count}"
        write_crops(args.scenes, data, count, args.crop)
        for processes in [int(text) for text in args.processes.split(",")]:
            run_id = f"n{count}-p{processes}-{int(time.time())}"
            learned = args.learned_max is None or count <= args.learned_max
            arguments = ["run", "--data", str(data), "--methods", METHODS, "--cases", CASE, "--runs-dir",
                         str(args.out / "runs"), "--run-id", run_id, "--workers", "1", "--no-progress",
                         *([] if learned else ["--no-learned-metrics"])]
            launcher = ([sys.executable, "-m", "bench.cli"] if processes == 1 else
                        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                         str(processes), "-m", "bench.cli"])
            result = measure([*launcher, *arguments], environment)
            record = {"images": count, "crop": args.crop, "processes": processes, "jobs": count * 2,
                      "metrics": "pixel + LPIPS + FID/KID" if learned else "pixel only", "wall_s": result["wall_s"],
                      "s_per_image": result["wall_s"] / count, "peak_rss_mib": result["peak_rss_kib"] / 1024}
            print(record, flush=True)
            records.append(record)
    table = pd.DataFrame(records)
    speedups = table.pivot(index="images", columns="processes", values="wall_s")
    table["speed_up_vs_1"] = [speedups.loc[row.images, 1] / row.wall_s if 1 in speedups.columns else float("nan")
                              for row in table.itertuples()]
    # Wall time per added image between consecutive sizes: the start-up (imports, model loading, report)
    # does not grow with N, so wall / N falls while this stays the cost of one more image.
    table = table.sort_values(["processes", "images"], kind="stable")
    previous = table.groupby("processes")[["images", "wall_s"]].shift()
    table["marginal_s_per_image"] = (table["wall_s"] - previous["wall_s"]) / (table["images"] - previous["images"])
    table = table.sort_values(["images", "processes"], kind="stable")
    table.to_csv(args.out / "scale.csv", index=False)
    (args.out / "scale.md").write_text(table.to_markdown(index=False, floatfmt=".3f") + "\n", encoding="utf-8")
    print(table.to_markdown(index=False, floatfmt=".3f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
