"""Accuracy of the reduced-precision modes on real trained outputs: bf16 (or fp16 on CUDA) against fp32.

For each shipped model of ``--models`` (the face models by default; ``lama-scenes,relama-cbam-scenes``
on photographs) and each mask case, the first ``--images`` test images of ``--data`` are filled once in fp32 and once in the reduced
precision (both through the optimised path). Printed per model and case: the mean and largest
``|LPIPS(reduced, truth) - LPIPS(fp32, truth)|`` (AlexNet LPIPS), the largest per-pixel change in
grey levels, the mean absolute change inside the holes and the hole PSNR of the reduced output
against the fp32 one. The acceptance bound of issue 19 is a mean |LPIPS change| below 0.002.

Usage: ``python -m bench.studies.precision_accuracy --data shared/datasets/celebahq_64/test [--images 50]``
or ``... --data shared/datasets/scenes/test --models lama-scenes,relama-cbam-scenes``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tabulate import tabulate

from bench.metrics.learned import LPIPSMetric
from masks.cases import case_mask
from methods.registry import create_method

FACE_MODELS = ("lama-celebahq64", "relama-cbam-celebahq64")
CASES = ("small", "region", "large")
#: Issue 19's acceptance bound on the mean |LPIPS change|.
LPIPS_BOUND = 0.002


def read_images(folder: Path, count: int) -> tuple[list[str], list[np.ndarray]]:
    """The first ``count`` images of ``folder`` (sorted by name) as uint8 RGB arrays, with their stems."""
    paths = sorted(path for path in folder.iterdir() if path.suffix.lower() in (".png", ".jpg", ".jpeg"))[:count]
    if len(paths) < count:
        raise SystemExit(f"{folder} holds {len(paths)} images, fewer than --images {count}")
    return [path.stem for path in paths], [np.asarray(Image.open(path).convert("RGB")) for path in paths]


def hole_psnr(first: np.ndarray, second: np.ndarray, hole: np.ndarray) -> float:
    """PSNR (dB, peak 255) between two uint8 images over the hole pixels; ``inf`` when they are equal there."""
    difference = first[hole].astype(np.float64) - second[hole].astype(np.float64)
    mse = float(np.mean(difference ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def compare(model: str, precision: str, images: list[np.ndarray], masks: list[np.ndarray],
            lpips: LPIPSMetric, device: str) -> dict[str, float]:
    """Accuracy figures of ``precision`` against fp32 for one model over paired images and masks."""
    exact = create_method(model, device=device).inpaint_batch(images, masks)
    reduced = create_method(model, device=device, precision=precision).inpaint_batch(images, masks)
    change = np.abs(lpips(reduced, images) - lpips(exact, images))
    pixel = [np.abs(a.astype(np.int16) - b.astype(np.int16)) for a, b in zip(exact, reduced)]
    return {
        "mean_lpips_change": float(change.mean()),
        "max_lpips_change": float(change.max()),
        "max_pixel_change": float(max(p.max() for p in pixel)),
        "mean_hole_change": float(np.mean([p[m].mean() for p, m in zip(pixel, masks)])),
        "min_hole_psnr_db": float(min(hole_psnr(a, b, m) for a, b, m in zip(exact, reduced, masks))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of test images (e.g. celebahq_64/test)")
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp16"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default=",".join(FACE_MODELS),
                        help="comma-separated shipped models that take the precision option")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names, images = read_images(args.data, args.images)
    lpips = LPIPSMetric("alex", device=args.device)
    rows = []
    for model in dict.fromkeys(name.strip() for name in args.models.split(",") if name.strip()):
        for case in CASES:
            masks = [case_mask(image.shape[:2], name, case) for name, image in zip(names, images)]
            result = compare(model, args.precision, images, masks, lpips, args.device)
            rows.append([model, case, result["mean_lpips_change"], result["max_lpips_change"],
                         result["max_pixel_change"], result["mean_hole_change"], result["min_hole_psnr_db"],
                         "yes" if result["mean_lpips_change"] < LPIPS_BOUND else "NO"])
    print(f"{args.precision} vs fp32, {len(images)} images of {args.data.name}, device {args.device}, "
          f"{args.threads} thread(s)")
    print(tabulate(rows, headers=["model", "case", "mean |dLPIPS|", "max |dLPIPS|", "max pixel change",
                                  "mean hole change", "min hole PSNR dB", f"mean < {LPIPS_BOUND}"],
                   floatfmt=".5f"))


if __name__ == "__main__":
    main()
