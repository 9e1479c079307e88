"""``relama-bench perf``: measurement helpers, random-weights labelling, tables and the sub-command."""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest
import torch

from bench.errors import UserError
from bench.cli.perf import add_command
from bench.studies.perf import (RANDOM_WEIGHTS_LABEL, build_for_perf, measure_peak_memory, synthetic_pair,
                        time_runs)
from methods.base import MethodUnavailable


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(["perf", *argv])


def test_synthetic_pair_is_deterministic_with_a_quarter_hole() -> None:
    image, mask = synthetic_pair(64)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert mask.dtype == np.bool_ and mask.mean() == 0.25
    assert np.array_equal(image, synthetic_pair(64)[0])


def test_time_runs_warms_up_then_times() -> None:
    calls = []
    times = time_runs(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(times) == 3 and all(t >= 0 for t in times)


def test_peak_memory_sees_a_large_allocation() -> None:
    peak, extra, method = measure_peak_memory(lambda: np.ones(160 * 2**20 // 8).sum(), torch.device("cpu"))
    assert peak > 0 and method
    if "VmHWM" in method:
        assert extra >= 80


def test_deep_methods_need_weights_or_the_random_flag() -> None:
    with pytest.raises(MethodUnavailable, match="weights missing"):
        build_for_perf("lama", {}, random_weights=False)
    method, label = build_for_perf("telea", {}, random_weights=False)
    assert label == "none needed"


def test_perf_command_writes_tables(tmp_path, capsys) -> None:
    args = _parse("--methods", "telea,lama", "--sizes", "32", "--repeats", "1", "--warmup", "0",
                  "--out", str(tmp_path))
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "skipped lama: weights missing" in printed
    rows = list(csv.DictReader(open(tmp_path / "perf.csv")))
    assert [(row["method"], row["size"]) for row in rows] == [("telea", "32")]
    assert float(rows[0]["median_ms"]) >= 0
    assert "| telea" in (tmp_path / "perf.md").read_text()


def test_random_weights_rows_are_labelled(tmp_path, capsys, monkeypatch) -> None:
    from methods.lama import LaMa

    # A small configuration keeps the test fast; the label is what is checked.
    small = {"input_nc": 4, "output_nc": 3, "ngf": 8, "n_downsampling": 3, "n_blocks": 1, "add_out_act": "sigmoid",
             "resnet_conv_kwargs": {"ratio_gin": 0.75, "ratio_gout": 0.75, "enable_lfu": False},
             "init_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
             "downsample_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False}}
    monkeypatch.setattr(LaMa, "default_config", small)
    args = _parse("--methods", "lama", "--sizes", "32", "--repeats", "1", "--random-weights", "--out", str(tmp_path))
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert RANDOM_WEIGHTS_LABEL in printed and "timing only" in printed
    assert list(csv.DictReader(open(tmp_path / "perf.csv")))[0]["weights"] == RANDOM_WEIGHTS_LABEL


def test_bad_sizes_and_methods_are_user_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="--sizes"):
        args = _parse("--sizes", "abc", "--out", str(tmp_path))
        args.func(args)
    with pytest.raises(UserError, match="unknown method"):
        args = _parse("--methods", "nope", "--out", str(tmp_path))
        args.func(args)


def test_pluralistic_has_a_random_weights_mode_for_timing() -> None:
    method, label = build_for_perf("pluralistic", {}, random_weights=True)
    image = np.zeros((64, 64, 3), np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[16:40, 20:44] = True
    assert method.inpaint(image, mask, seed=0).shape == image.shape
    assert "random" in label and method.weights is None
