"""road_seg_core.visualize: the one picture (camera | prediction | ground truth, titled, legend) every output uses."""
from __future__ import annotations

import numpy as np
import pytest

from road_seg_core import labels as L
from road_seg_core.postprocess import overlay
from road_seg_core.visualize import (BAR_COLOR, CAPTION_COLOR, GAP, PANEL_TITLES, bar_height, compose, compose_small,
                                     legend_strip, stack_rows, title_bar)

H, W = 40, 64


@pytest.fixture
def frame():
    rgb = np.full((H, W, 3), 100, np.uint8)
    pred = np.full((H, W), L.DRIVABLE, np.uint8)
    gt = np.full((H, W), L.POSITIVE_OBSTACLE, np.uint8)
    gt[:, : W // 2] = L.IGNORE
    return rgb, pred, gt


def _columns(img: np.ndarray, bh: int) -> list[np.ndarray]:
    return [img[:bh + H, k * (W + GAP): k * (W + GAP) + W] for k in range(3)]


def test_panels_are_camera_prediction_truth_in_order_each_under_its_title(frame):
    rgb, pred, gt = frame
    img = compose(rgb, pred, gt)
    bh = bar_height(W)
    assert img.dtype == np.uint8 and img.shape[1] == 3 * W + 2 * GAP
    cam, prd, tru = _columns(img, bh)
    for col, title in zip((cam, prd, tru), PANEL_TITLES):
        assert np.array_equal(col[:bh], title_bar(W, title, bh))  # the title, drawn on its bar
        assert np.count_nonzero(np.any(col[:bh] != BAR_COLOR, axis=2)) > 10  # ... and it has visible text
    assert np.array_equal(cam[bh:], rgb)
    assert np.array_equal(prd[bh:], overlay(rgb, pred))
    # Ground truth over the camera image (not on black); ignored pixels left unpainted.
    assert np.array_equal(tru[bh:, : W // 2], rgb[:, : W // 2])
    assert np.array_equal(tru[bh:, W // 2:], overlay(rgb, gt.clip(0, 3))[:, W // 2:])
    assert not np.array_equal(tru[bh:, W // 2:], rgb[:, W // 2:])
    assert np.all(img[bh:bh + H, W:W + GAP] == BAR_COLOR)  # a gap between panels


def test_legend_below_the_panels_shows_every_class_colour(frame):
    rgb, pred, gt = frame
    img = compose(rgb, pred, gt)
    legend = img[bar_height(W) + H:]
    assert legend.shape[0] >= bar_height(W)
    assert np.array_equal(legend, legend_strip(img.shape[1], bar_height(W)))
    for cls in (L.DRIVABLE, L.POSITIVE_OBSTACLE, L.NEGATIVE_OBSTACLE):
        assert np.any(np.all(legend == L.CLASS_COLORS[cls], axis=2)), L.CLASS_NAMES[cls]
    no_legend = compose(rgb, pred, gt, legend=False)
    assert no_legend.shape[0] == bar_height(W) + H


def test_missing_truth_caption_and_rows(frame):
    rgb, pred, _ = frame
    img = compose(rgb, pred, None, caption="worst: frame 7", legend=False)
    bh = bar_height(W)
    assert img.shape[0] == 2 * bh + H
    assert np.count_nonzero(np.any(img[:bh] != CAPTION_COLOR, axis=2)) > 10  # the caption line
    truth = img[2 * bh:, 2 * (W + GAP):]
    assert np.median(truth) < 100 and truth.max() > 200  # dimmed camera, "no ground truth" written on it
    both = stack_rows([img, img])
    assert both.shape[0] > 2 * img.shape[0] and both.shape[1] == img.shape[1]


def test_compose_small_scales_down_only_and_rejects_mismatched_labels(frame):
    rgb, pred, gt = frame
    assert compose_small(rgb, pred, gt, max_width=32).shape[1] == 3 * 32 + 2 * GAP
    assert compose_small(rgb, pred, gt, max_width=500).shape[1] == 3 * W + 2 * GAP
    with pytest.raises(ValueError, match="ground truth labels"):
        compose(rgb, pred, gt[:10])
