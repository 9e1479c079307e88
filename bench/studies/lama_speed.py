"""LaMa inference speed: our optimised generator against the unoptimised (reference-style) path.

Both paths use the full big-lama configuration with the same random weights, in one process, with
the timed runs interleaved so that machine load affects both alike. The unoptimised path runs the
generator as trained (BatchNorm separate, ``torch.no_grad``), as the reference's predict script
does; the optimised path folds BatchNorm and runs under ``torch.inference_mode``. Prints the median
wall and process-CPU latencies, their ratios, the largest output difference and each path's peak
memory. On a loaded machine the CPU-time ratio (with ``--threads 1``) is the steadier number.

Usage: ``python -m bench.studies.lama_speed [--size 512] [--repeats 5] [--config big-lama] [--threads 1]``
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from bench.studies.perf import measure_peak_memory
from methods.nets.configs import build_generator, generator_input
from methods.nets.fold import prepare_for_inference


def compare(config: str, size: int, repeats: int, channels_last: bool = True) -> dict[str, float | str]:
    """Median latencies (ms), speed-up, max output difference and peak memory of both paths."""
    torch.manual_seed(0)
    reference = build_generator(config).eval()
    # Non-trivial BatchNorm statistics, so that folding has something to get wrong.
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.8, 1.2)
                module.bias.uniform_(-0.1, 0.1)
    optimised = prepare_for_inference(copy.deepcopy(reference), channels_last=channels_last)
    image = torch.rand(1, 3, size, size)
    mask = (torch.rand(1, 1, size, size) > 0.7).float()
    batch = generator_input(image, mask)
    fast_batch = batch.contiguous(memory_format=torch.channels_last) if channels_last else batch

    def run_reference() -> torch.Tensor:
        with torch.no_grad():
            return reference(batch)

    def run_optimised() -> torch.Tensor:
        with torch.inference_mode():
            return optimised(fast_batch)

    expected, produced = run_reference(), run_optimised()  # also the warm-up
    difference = (expected - produced).abs().max().item()
    times: dict[str, list[float]] = {"reference": [], "optimised": []}
    cpu_times: dict[str, list[float]] = {"reference": [], "optimised": []}
    for _ in range(repeats):
        for name, run in (("reference", run_reference), ("optimised", run_optimised)):
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            times[name].append((time.perf_counter() - start) * 1000)
            cpu_times[name].append((time.process_time() - cpu_start) * 1000)
    device = torch.device("cpu")
    reference_peak, reference_extra, memory_method = measure_peak_memory(run_reference, device)
    optimised_peak, optimised_extra, _ = measure_peak_memory(run_optimised, device)
    reference_ms, optimised_ms = statistics.median(times["reference"]), statistics.median(times["optimised"])
    reference_cpu, optimised_cpu = statistics.median(cpu_times["reference"]), statistics.median(cpu_times["optimised"])
    return {"config": config, "size": size, "threads": torch.get_num_threads(), "reference_ms": reference_ms,
            "optimised_ms": optimised_ms, "speedup": reference_ms / optimised_ms,
            "reference_cpu_ms": reference_cpu, "optimised_cpu_ms": optimised_cpu,
            "cpu_time_speedup": reference_cpu / optimised_cpu, "max_abs_diff": difference,
            "reference_peak_mb": reference_peak, "reference_run_mb": reference_extra,
            "optimised_peak_mb": optimised_peak, "optimised_run_mb": optimised_extra, "memory_method": memory_method}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="big-lama")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="optimised path without the channels-last layout the adapter uses")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for key, value in compare(args.config, args.size, args.repeats, args.channels_last).items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
