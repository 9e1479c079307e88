"""Time ICT per image on the CPU with the reference sampler and with the bit-identical fast one.

Two configurations:

* ``small``: the small golden models (2-layer transformer, upsampler of width 16), loaded from the
  checkpoint replicas in ``../shared/golden/ict/replica`` (or ``--weights``), run end to end in
  reference mode on the golden 256x256 example, whose mask leaves 142 tokens to sample;
* ``places2``: the released Places2_Nature configuration (35 layers, width 512) with random weights.
  A whole image is too slow to time repeatedly, so single sampling steps are timed and multiplied by
  the token count of the golden example, plus the upsampler at 256x256. Both samplers are first run
  on three tokens to check that they draw the same ones.

Usage: ``python -m bench.studies.ict_speed [--threads N] [--steps K] [--shared DIR]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from methods import ict

GOLDEN_TOKENS = 142


def _interleaved(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median CPU seconds of this process per call of each function.

    CPU time rather than wall time, because on a shared machine other jobs inflate wall times by
    factors; with one torch thread it equals the wall time of an idle machine. The functions are
    called in turn so that what noise remains hits every variant alike.
    """
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.process_time()
            function()
            times[name].append(time.process_time() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _replica_folder(shared: Path, folder: Path) -> Path:
    replica = shared / "golden" / "ict" / "replica"
    (folder / "Transformer").mkdir()
    (folder / "Upsample" / "Places2_Nature").mkdir(parents=True)
    (folder / "Transformer" / "Places2_Nature.pth").symlink_to(replica / "replica_transformer_small.pth")
    (folder / "Upsample" / "Places2_Nature" / "InpaintingModel_gen.pth").symlink_to(
        replica / "replica_InpaintingModel_gen_small.pth")
    return folder


def time_small(shared: Path, repeats: int) -> dict[str, float]:
    """Seconds per image for the small golden models, reference sampler vs fast sampler."""
    example = torch.load(shared / "golden" / "ict" / "golden_transformer_small.pt", weights_only=True)["example"]
    image = example["image_256"].numpy()
    mask = example["mask_256"].numpy() > 127
    with tempfile.TemporaryDirectory() as folder:
        weights = _replica_folder(shared, Path(folder))
        adapters = {
            name: ict.ICT(weights, mode="reference", n_head=2, fast=name == "fast", progress=False)
            for name in ("reference", "fast")
        }
        outputs = {name: adapter.inpaint(image, mask, seed=0) for name, adapter in adapters.items()}
        if not np.array_equal(outputs["reference"], outputs["fast"]):
            raise AssertionError("fast and reference samplers gave different images")
        runs = {name: (lambda adapter=adapter: adapter.inpaint(image, mask, seed=0)) for name, adapter in adapters.items()}
        results = _interleaved(runs, repeats)
        results["tokens"] = adapters["fast"].stats.forward_passes
    return results


def time_places2(steps: int) -> dict[str, float]:
    """Seconds per sampling step and for the upsampler, released Places2 configuration, random weights."""
    adapter = ict.ICT.with_random_weights("Places2_Nature", progress=False)
    model = adapter.transformer
    length = model.config.block_size
    tokens = torch.from_numpy(np.random.default_rng(0).integers(0, 512, length)).unsqueeze(0)
    missing = torch.zeros(1, length)
    missing[0, 300:303] = 1.0
    sampled = {
        fast: ict.sample_tokens(model, tokens, missing, generator=torch.Generator().manual_seed(0), fast=fast)[0]
        for fast in (False, True)
    }
    if not torch.equal(sampled[False], sampled[True]):
        raise AssertionError("fast and reference samplers gave different tokens")
    one_step = torch.zeros(1, length)
    one_step[0, 300] = 1.0
    per_step = _interleaved(
        {name: (lambda fast=fast: ict.sample_tokens(model, tokens, one_step, fast=fast))
         for name, fast in (("step_reference", False), ("step_fast", True))},
        steps,
    )
    results = dict(per_step)
    upsampler_input = torch.rand(1, 6, ict.UPSAMPLER_SIZE, ict.UPSAMPLER_SIZE)
    with torch.inference_mode():
        adapter.upsampler(upsampler_input)
        results.update(_interleaved({"upsampler": lambda: adapter.upsampler(upsampler_input)}, 3))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1, for which CPU time is the idle wall time)")
    parser.add_argument("--steps", type=int, default=5,
                        help="single sampling steps timed per sampler for the Places2 configuration")
    parser.add_argument("--repeats", type=int, default=3, help="runs per small-configuration timing")
    default_shared = os.environ.get("RELAMA_SHARED_DIR", Path(__file__).resolve().parents[3] / "shared")
    parser.add_argument("--shared", type=Path, default=Path(default_shared), help="the shared folder holding golden/ict")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s); times are CPU seconds of this process")

    small = time_small(args.shared, args.repeats)
    print(f"small golden models, reference mode, 256x256 example, {small['tokens']:.0f} tokens, 1 sample:")
    print(f"  reference sampler {small['reference']:.2f} s/image, fast sampler {small['fast']:.2f} s/image "
          f"({small['reference'] / small['fast']:.2f}x), identical output")

    places2 = time_places2(args.steps)
    per_image = {key: places2[f"step_{key}"] * GOLDEN_TOKENS + places2["upsampler"] for key in ("reference", "fast")}
    print(f"Places2_Nature configuration (random weights), median of {args.steps} single steps per sampler:")
    print(f"  per token: reference {places2['step_reference']:.3f} s, fast {places2['step_fast']:.3f} s "
          f"({places2['step_reference'] / places2['step_fast']:.2f}x), identical tokens")
    print(f"  upsampler at 256x256: {places2['upsampler']:.3f} s")
    print(f"  estimated per image with {GOLDEN_TOKENS} missing tokens: reference {per_image['reference']:.1f} s, "
          f"fast {per_image['fast']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
