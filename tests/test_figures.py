"""Figures draw user text (image ids, method names) as typed: mathtext parsing is off for it; grid panels
are shrunk to their slot before drawing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.report import figures

#: An unbalanced ``$`` makes mathtext raise at draw time; balanced ones would be typeset as maths.
HOSTILE_NAMES = ["cost $5", r"$\frac{$", "a_b^c$x$", "$$"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_comparison_grid_draws_dollar_signs_in_ids(name, tmp_path):
    original = np.full((16, 16, 3), 120, np.uint8)
    hole = np.zeros((16, 16), bool)
    hole[4:9, 4:9] = True
    path = tmp_path / "grid.png"
    figures.comparison_grid([name], [original], [hole], {name: [original]}, path, title=f"case {name}")
    assert Image.open(path).size[0] > 0


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_curves_and_scatter_draw_dollar_signs_in_method_names(name, tmp_path):
    bins = pd.DataFrame({"method": [name, name], "metric": ["psnr", "psnr"], "bin_low": [0.0, 0.1],
                         "bin_high": [0.1, 0.2], "mean": [20.0, 18.0]})
    figures.area_curve(bins, "psnr", tmp_path / "curve.png", ylabel=name)
    points = pd.DataFrame({"method": [name], "psnr": [20.0], "median_s": [0.02]})
    figures.speed_quality_scatter(points, "psnr", tmp_path / "scatter.png")
    assert (tmp_path / "curve.png").stat().st_size and (tmp_path / "scatter.png").stat().st_size


def test_user_text_is_shown_as_typed(monkeypatch, tmp_path):
    drawn = {}
    real_save = figures.save_figure

    def keep_labels(figure, path, **kwargs):
        drawn["texts"] = [(text.get_text(), text.get_parse_math()) for axis in figure.axes for text in axis.texts]
        real_save(figure, path, **kwargs)

    monkeypatch.setattr(figures, "save_figure", keep_labels)
    original = np.zeros((12, 12, 3), np.uint8)
    figures.comparison_grid(["$x^2$"], [original], [np.ones((12, 12), bool)], {"$m$": [original]},
                            tmp_path / "g.png", title="case $c")
    shown = dict(drawn["texts"])
    assert shown["$x^2$\n100.0% hole"] is False and shown["$m$"] is False and shown["case $c"] is False


def test_grid_panels_are_scaled_to_their_slot_and_placed_in_order(monkeypatch, tmp_path):
    shown = {}
    monkeypatch.setattr(figures, "save_figure",
                        lambda figure, path, **kwargs: shown.update(mosaic=figure.axes[0].images[0].get_array()))
    original = np.full((20, 40, 3), 90, np.uint8)
    hole = np.zeros((20, 40), bool)
    hole[:, :20] = True
    prediction = np.full((20, 40, 3), 200, np.uint8)
    figures.comparison_grid(["a"], [original], [hole], {"m": [prediction], "failed": [None]}, tmp_path / "g.png")
    mosaic = np.asarray(shown["mosaic"])
    side, cell = figures.SLOT_PIXELS, figures.SLOT_PIXELS + figures.PANEL_GAP_PIXELS
    assert mosaic.shape == (side, 5 * cell - figures.PANEL_GAP_PIXELS, 3)
    middle = side // 2
    assert np.all(mosaic[middle, 0] == 90) and np.all(mosaic[middle, 3 * cell + 5] == 200)
    assert np.all(mosaic[middle, cell + 5] == 255) and np.all(mosaic[middle, cell + side - 5] == 0)  # mask
    assert np.all(mosaic[middle, 2 * cell + 5] == figures.HOLE_COLOUR)
    assert np.all(mosaic[:, 4 * cell:] == figures.BACKGROUND)  # the failed panel stays blank
    assert np.all(mosaic[:side // 4 - 1, 0] == figures.BACKGROUND)  # a 2:1 panel is centred in its slot


def test_fit_to_slot_shrinks_large_panels_only_and_keeps_aspect() -> None:
    image = np.full((384, 512, 3), 200, np.uint8)
    shrunk = figures.fit_to_slot(image)
    assert shrunk.shape == (round(384 * figures.SLOT_PIXELS / 512), figures.SLOT_PIXELS, 3)
    assert shrunk.dtype == np.uint8 and np.all(shrunk == 200)
    small = np.zeros((64, 48, 3), np.uint8)
    assert figures.fit_to_slot(small) is small
    mask = np.zeros((400, 400), bool)
    mask[:, :200] = True
    shrunk_mask = figures.fit_to_slot(mask)
    assert shrunk_mask.dtype == np.float32 and shrunk_mask.min() == 0 and shrunk_mask.max() == 1


def test_grid_of_large_images_renders(tmp_path) -> None:
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)
    mask = np.zeros((300, 500), bool)
    mask[100:200, 200:300] = True
    path = tmp_path / "grid.png"
    figures.comparison_grid(["a"], [original], [mask], {"m": [original], "failed": [None]}, path, title="case")
    assert Image.open(path).size[0] > 0
