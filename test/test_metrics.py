"""Confusion-matrix metrics: hand-computed matrices, ignore index, NaN conventions, torch/numpy parity, JSON."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from road_seg_core.metrics import ConfusionMatrix, format_table, to_json

NAMES3 = ("background", "road", "obstacle")


def _cm3() -> ConfusionMatrix:
    return ConfusionMatrix(3, NAMES3)


def test_known_matrix_and_per_class_metrics():
    target = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    pred = np.array([0, 0, 1, 2, 1, 1, 0, 2, 2, 1])
    cm = _cm3()
    cm.update(pred, target)
    np.testing.assert_array_equal(cm.matrix, [[2, 1, 1], [1, 2, 0], [0, 1, 2]])
    m = cm.compute()
    # class 0: tp 2, fp 1, fn 2; class 1: tp 2, fp 2, fn 1; class 2: tp 2, fp 1, fn 1
    assert m["per_class"]["background"]["iou"] == pytest.approx(2 / 5)
    assert m["per_class"]["road"]["iou"] == pytest.approx(2 / 5)
    assert m["per_class"]["obstacle"]["iou"] == pytest.approx(2 / 4)
    assert m["per_class"]["background"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["background"]["recall"] == pytest.approx(2 / 4)
    assert m["per_class"]["road"]["f1"] == pytest.approx(4 / 7)
    assert m["per_class"]["obstacle"]["support"] == 3
    assert m["pixel_accuracy"] == pytest.approx(6 / 10)
    assert m["miou"] == pytest.approx((0.4 + 0.4 + 0.5) / 3)
    assert m["miou_without_background"] == pytest.approx((0.4 + 0.5) / 2)
    assert m["num_pixels"] == 10


def test_include_background_switches_the_mean_only():
    cm = _cm3()
    cm.update(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 1]))
    with_bg, without_bg = cm.compute(True), cm.compute(False)
    assert with_bg["miou"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert without_bg["miou"] == pytest.approx(0.5) == with_bg["miou_without_background"]
    assert with_bg["per_class"] == without_bg["per_class"]
    assert with_bg["include_background"] and not without_bg["include_background"]


def test_background_index_can_be_another_class():
    cm = ConfusionMatrix(3, ("obstacle", "road", "background"), background_index=2)
    cm.update(np.array([0, 1, 1]), np.array([0, 1, 2]))
    m = cm.compute()
    # background (id 2) has iou 0, the others 1 and 0.5
    assert m["miou_without_background"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["miou"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)


def test_ignore_index_pixels_are_not_counted_even_with_out_of_range_predictions():
    cm = _cm3()
    target = np.array([[0, 255], [1, 255]], np.uint8)
    pred = np.array([[0, 7], [1, 9]], np.uint8)  # predictions on ignored pixels are never looked at
    cm.update(pred, target)
    assert cm.total == 2
    np.testing.assert_array_equal(cm.matrix, [[1, 0, 0], [0, 1, 0], [0, 0, 0]])


def test_absent_class_is_nan_and_excluded_from_means():
    cm = _cm3()
    cm.update(np.array([0, 0, 1]), np.array([0, 0, 1]))
    m = cm.compute()
    obstacle = m["per_class"]["obstacle"]
    assert all(math.isnan(obstacle[k]) for k in ("iou", "precision", "recall", "f1"))
    assert obstacle["support"] == 0
    assert m["miou"] == pytest.approx(1.0)
    assert m["miou_without_background"] == pytest.approx(1.0)


def test_predicted_but_absent_class_has_zero_iou_and_nan_recall():
    cm = _cm3()
    cm.update(np.array([0, 2]), np.array([0, 0]))
    obstacle = cm.compute()["per_class"]["obstacle"]
    assert obstacle["iou"] == 0.0 and obstacle["precision"] == 0.0
    assert math.isnan(obstacle["recall"])
    assert cm.compute()["miou"] == pytest.approx((0.5 + 0.0) / 2)  # road stays NaN and out of the mean


def test_empty_matrix_gives_nan_everywhere():
    m = _cm3().compute()
    assert math.isnan(m["miou"]) and math.isnan(m["pixel_accuracy"]) and m["num_pixels"] == 0


def test_torch_and_numpy_updates_agree_and_merge_adds():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, (2, 16, 20)).astype(np.uint8)
    target[:, :3] = 255
    pred = rng.integers(0, 4, (2, 16, 20))
    a, b = ConfusionMatrix(), ConfusionMatrix()
    a.update(pred, target)
    b.update(torch.from_numpy(pred), torch.from_numpy(target))
    np.testing.assert_array_equal(a.matrix, b.matrix)
    assert a.total == 2 * 13 * 20
    half1, half2 = ConfusionMatrix(), ConfusionMatrix()
    half1.update(pred[0], target[0])
    half2.update(pred[1], target[1])
    half1.merge(half2)
    np.testing.assert_array_equal(half1.matrix, a.matrix)


def test_invalid_inputs_raise():
    cm = _cm3()
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="target contains class ids outside"):
        cm.update(np.zeros(2, int), np.array([0, 5]))
    with pytest.raises(ValueError, match="prediction contains class ids outside"):
        cm.update(torch.tensor([0, 3]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="different classes"):
        cm.merge(ConfusionMatrix())
    with pytest.raises(ValueError, match="class names"):
        ConfusionMatrix(3, ("a", "b"))
    with pytest.raises(ValueError, match="ignore_index"):
        ConfusionMatrix(3, NAMES3, ignore_index=1)


def test_to_json_is_strict_json_with_nan_as_null():
    cm = _cm3()
    cm.update(np.array([0, 1]), np.array([0, 1]))
    m = cm.compute()
    text = json.dumps(to_json(m), allow_nan=False)
    back = json.loads(text)
    assert back["per_class"]["obstacle"]["iou"] is None
    assert back["per_class"]["road"]["iou"] == 1.0
    assert to_json({"a": np.float32(np.inf), "b": np.int64(3), "c": np.array([1.0, np.nan])}) == \
        {"a": None, "b": 3, "c": [1.0, None]}
    table = format_table(m)
    assert "obstacle" in table and "n/a" in table
