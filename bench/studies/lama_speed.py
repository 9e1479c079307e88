"""LaMa inference speed: the reference-equivalent path against the optimised fp32 and bf16 paths.

One run prints, for each input size:

- the sustained convolution throughput of this machine on the network's own dominant convolutions
  (the bottleneck's 3x3 convolutions alone, run as the fused network runs them: channels-last, one
  oneDNN call each, weights kept in oneDNN's blocked layout; fp32 and bf16) and, for comparison, on a
  square 512 -> 512 3x3 convolution, measured in the same timing rounds as the generators;
- for each path (``reference``: the generator as trained, BatchNorm separate, ``torch.no_grad``, as
  the reference's predict script runs it; ``fp32``: BatchNorm folded and the fused channels-last
  kernels of `methods.nets.ffc_fused`, ``torch.inference_mode``; ``bf16``: the same with weights
  stored in bf16, under CPU autocast, FFTs in float32 (as the adapter's ``precision="bf16"``);
  ``compiled``: ``torch.compile`` of the fp32 path, with ``--compile``)
  its median time per forward pass, speed-up over the reference and over fp32, GFLOP/s (convolution
  and matrix FLOPs counted by ``torch.utils.flop_counter``), the fraction of the measured
  convolution peak of its own type (bf16 against bf16), and the largest output difference from
  the reference.

All paths use the full big-lama configuration with the same random weights (BatchNorm statistics
perturbed so that folding has something to get wrong) in one process, timed in alternating rounds
so that machine load affects all alike. The process keeps freed memory for reuse
(`methods.nets.allocator.retain_freed_memory`, as the LaMa adapter sets it on the CPU), for every
path and the peak alike. With one thread (the default) times are process CPU times,
which a busy machine disturbs far less than wall time; with more threads they are wall times.
``--default-run`` adds the wall time of ``relama-bench run --cases small,region,large --workers 1``
split by stage (from a ``cProfile`` of the run in its own process, which adds a little overhead to
Python-level code).

Usage: ``python -m bench.studies.lama_speed [--sizes 256,512] [--repeats 5] [--threads 1] [--compile]
[--default-run]``
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from tabulate import tabulate
from torch.utils.flop_counter import FlopCounterMode

from methods.nets.allocator import retain_freed_memory
from methods.nets.configs import build_generator, generator_input
from methods.nets.ffc_fused import FusedFFCResnetBlock, PackedWeights, fast_conv2d
from methods.nets.fold import prepare_for_inference

#: A square convolution for comparison with the network's own: 512 -> 512 channels, 3x3, at 64x64.
SQUARE_CHANNELS, SQUARE_SIDE = 512, 64


def perturbed_generator(config: str | Mapping[str, Any]) -> torch.nn.Module:
    """``config``'s generator (a configuration name or dict, as `build_generator` takes) with seed-0
    weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    model = build_generator(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.8, 1.2)
                module.bias.uniform_(-0.1, 0.1)
    return model


def counted_gflop(model: torch.nn.Module, batch: torch.Tensor) -> float:
    """Convolution and matrix GFLOP of one forward pass (FFTs and element-wise work not counted)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(batch)
    return counter.get_total_flops() / 1e9


def bottleneck_shapes(fused: torch.nn.Module) -> list[tuple[int, int]]:
    """``(out, in)`` channels of the 3x3 convolutions of the fused network's first residual block layer.

    These are the network's dominant convolutions (about 70 % of its FLOPs in big-lama), as the fused
    layer runs them: ``l2l``, ``l2g`` and ``g2l``.
    """
    layer = next(module for module in fused.modules() if isinstance(module, FusedFFCResnetBlock)).conv1
    weights = (layer.l2l_weight, layer.l2g_weight, layer.g2l_weight)
    return [tuple(weight.shape[:2]) for weight in weights if weight is not None]


def peak_convolution(shapes: list[tuple[int, int]], side: int,
                     dtype: torch.dtype) -> tuple[Callable[[], object], float]:
    """Unpadded channels-last 3x3 convolutions of ``shapes`` on ``side + 2`` square inputs, and their GFLOP.

    Given the network's bottleneck shapes and size, this is the speed the network's dominant
    convolutions reach on their own, run as the fused network runs them (pre-padded inputs, one
    oneDNN call each with the weight kept in oneDNN's blocked layout): the measured convolution
    peak the network's throughput is compared with.
    """
    generator = torch.Generator().manual_seed(0)
    packed = PackedWeights()
    pairs = []
    for out_channels, in_channels in shapes:
        data = torch.rand(1, in_channels, side + 2, side + 2, generator=generator)
        weight = torch.rand(out_channels, in_channels, 3, 3, generator=generator) - 0.5
        pairs.append((data.to(dtype).contiguous(memory_format=torch.channels_last),
                      weight.to(dtype).contiguous(memory_format=torch.channels_last)))

    def run() -> object:
        with torch.inference_mode():
            return [fast_conv2d(data, weight, None, packed=(packed, str(index)))
                    for index, (data, weight) in enumerate(pairs)]

    return run, sum(2 * 9 * out_channels * in_channels * side ** 2 for out_channels, in_channels in shapes) / 1e9


def compare(config: str, size: int, repeats: int, compile_model: bool) -> tuple[list[list], dict[str, float]]:
    """Table rows of every path at ``size`` and the measured convolution peaks (GFLOP/s)."""
    reference = perturbed_generator(config)
    optimised = prepare_for_inference(copy.deepcopy(reference), channels_last=True)
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, size, size, generator=generator)
    mask = (torch.rand(1, 1, size, size, generator=generator) > 0.7).float()
    batch = generator_input(image, mask)
    fast_batch = batch.contiguous(memory_format=torch.channels_last)
    gflop = counted_gflop(reference, batch)

    def run_reference() -> torch.Tensor:
        with torch.no_grad():
            return reference(batch)

    def run_fp32() -> torch.Tensor:
        with torch.inference_mode():
            return optimised(fast_batch)

    # As the adapter runs bf16: weights stored in bf16 once, autocast for the rest.
    optimised_bf16 = copy.deepcopy(optimised).to(torch.bfloat16)

    def run_bf16() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return optimised_bf16(fast_batch).float()

    paths: dict[str, Callable[[], torch.Tensor]] = {"reference": run_reference, "fp32": run_fp32, "bf16": run_bf16}
    notes = {"reference": "as trained, no_grad", "fp32": "folded + fused channels-last",
             "bf16": "fp32 path, bf16 weights + autocast, FFTs fp32"}
    if compile_model:
        compiled = torch.compile(optimised)

        def run_compiled() -> torch.Tensor:
            with torch.inference_mode():
                return compiled(fast_batch)

        start = time.perf_counter()
        run_compiled()
        notes["compiled"] = f"torch.compile of fp32; first call {time.perf_counter() - start:.1f} s (compile)"
        paths["compiled"] = run_compiled
    expected = run_reference()
    differences = {name: (run() - expected).abs().max().item() for name, run in paths.items()}  # also warm-up
    shapes, side = bottleneck_shapes(optimised), size // reference.size_multiple
    square = [(SQUARE_CHANNELS, SQUARE_CHANNELS)]
    peaks = {"fp32": peak_convolution(shapes, side, torch.float32),
             "bf16": peak_convolution(shapes, side, torch.bfloat16),
             "square fp32": peak_convolution(square, SQUARE_SIDE, torch.float32)}
    for run, _ in peaks.values():
        run()
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    times: dict[str, list[float]] = {name: [] for name in [*paths, *("peak " + key for key in peaks)]}
    for _ in range(repeats):
        for name, run in paths.items():
            start = clock()
            run()
            times[name].append(clock() - start)
        for key, (run, _) in peaks.items():
            start = clock()
            for _ in range(3):
                run()
            times["peak " + key].append((clock() - start) / 3)
    peak_rates = {key: flop / statistics.median(times["peak " + key]) for key, (_, flop) in peaks.items()}
    reference_s = statistics.median(times["reference"])
    fp32_s = statistics.median(times["fp32"])
    rows = []
    for name in paths:
        seconds = statistics.median(times[name])
        rate = gflop / seconds
        peak = peak_rates["bf16" if name == "bf16" else "fp32"]
        rows.append([f"{size}x{size}", name, f"{seconds * 1000:.0f}", f"{reference_s / seconds:.2f}x",
                     f"{fp32_s / seconds:.2f}x", f"{rate:.0f}", f"{rate / peak * 100:.0f} %",
                     f"{differences[name]:.2e}", notes[name]])
    return rows, {"gflop": gflop, "shapes": shapes, "side": side, **peak_rates}


def default_run_stages(runs_dir: str, threads: int) -> list[list]:
    """Wall seconds of ``relama-bench run --cases small,region,large`` by stage, from a cProfile of the run.

    The run is a separate ``python -m cProfile -m bench.cli`` process with ``threads`` OpenMP threads
    and one worker, so the profile sees every job.
    """
    environment = dict(os.environ, OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import bench.cli.app"], check=True, env=environment)
    import_s = time.perf_counter() - start
    profile_path = os.path.join(runs_dir, "run.prof")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cProfile", "-o", profile_path, "-m", "bench.cli", "run", "--cases",
                    "small,region,large", "--runs-dir", runs_dir, "--no-progress", "--workers", "1"],
                   check=True, env=environment, stdout=subprocess.DEVNULL)
    total_s = time.perf_counter() - start
    stats = pstats.Stats(profile_path)

    def cumulative(function: str, file_part: str) -> float:
        return sum(entry[3] for (path, _, name), entry in stats.stats.items()  # type: ignore[attr-defined]
                   if name == function and file_part in path)

    jobs = cumulative("run_job", "runner.py")
    methods = cumulative("inpaint", "methods/")
    # The run's own account of its learned metrics: backbone loading plus every LPIPS and Inception pass.
    scoring = json.loads(next(Path(runs_dir).glob("run-*/run.json")).read_text())["scoring"]
    learned = (scoring["backbone_setup_seconds"]
               + (scoring["lpips_seconds_per_image"] or 0.0) * scoring["lpips_scored"]
               + (scoring["features_seconds_per_image"] or 0.0) * scoring["features_extracted"])
    report = cumulative("build_report", "build.py")
    grids = cumulative("comparison_grid", "figures.py")
    rows = [["imports (measured alone)", import_s],
            ["methods' own calls (inpaint)", methods],
            ["per-job harness (masking, pixel metrics, PNG, records)", jobs - methods],
            ["learned metrics (LPIPS, Inception: loading and passes)", learned],
            ["report: comparison grids", grids],
            ["report: everything else", report - grids],
            ["rest (imports, inputs, masks, loading methods, tables)", total_s - jobs - learned - report],
            ["total wall time of the run process", total_s]]
    return [[stage, f"{seconds:.1f}"] for stage, seconds in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="big-lama")
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: CPU-time clock)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the fp32 path")
    parser.add_argument("--default-run", action="store_true",
                        help="also run the default benchmark once and split its wall time by stage")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    allocator = "freed memory retained" if retain_freed_memory() else "allocator default (not glibc)"
    clock = "process CPU time" if args.threads == 1 else "wall time"
    print(f"{args.config}, {args.threads} thread(s), {clock}, {args.repeats} alternating rounds, {allocator}; "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    rows, facts = [], []
    for size in (int(part) for part in args.sizes.split(",")):
        size_rows, measured = compare(args.config, size, args.repeats, args.compile)
        rows += size_rows
        convs = " + ".join(f"{c_in}->{c_out}" for c_out, c_in in measured["shapes"])
        facts.append(f"{size}x{size}: {measured['gflop']:.1f} GFLOP per pass; conv peak (the network's bottleneck "
                     f"3x3 convs {convs} at {measured['side']}x{measured['side']}, alone) fp32 "
                     f"{measured['fp32']:.0f} GFLOP/s, bf16 {measured['bf16']:.0f} GFLOP/s; a square "
                     f"{SQUARE_CHANNELS}->{SQUARE_CHANNELS} 3x3 conv at {SQUARE_SIDE}x{SQUARE_SIDE}: fp32 "
                     f"{measured['square fp32']:.0f} GFLOP/s")
    print(tabulate(rows, headers=["size", "path", "ms", "vs reference", "vs fp32", "GFLOP/s",
                                  "of conv peak (same type)", "max |diff| vs reference", "what"]))
    print("\n".join(facts))
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    if args.default_run:
        with tempfile.TemporaryDirectory() as runs_dir:
            print(tabulate(default_run_stages(runs_dir, args.threads), headers=["default run stage", "wall s"]))


if __name__ == "__main__":
    main()
