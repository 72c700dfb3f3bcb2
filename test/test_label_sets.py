"""Allowed-class bitmasks: dataset tables, singleton evaluation labels, evaluation spaces."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from road_seg_training import label_sets as ls

BG, DR, POS, NEG = 0, 1, 2, 3


def test_bits_and_single_table():
    assert ls.bits(BG, NEG) == 0b1001 and ls.bits() == 0 and ls.ALL == 0b1111
    np.testing.assert_array_equal(ls.SINGLE[[0, 1, 2, 3, 4, 255]], [1, 2, 4, 8, 0, 0])
    with pytest.raises(ValueError):
        ls.bits(8)


def test_dataset_tables():
    np.testing.assert_array_equal(ls.npo_lut()[:3], [ls.bits(BG, DR), ls.bits(NEG), ls.bits(POS)])
    np.testing.assert_array_equal(ls.npo_lut(["negative", "background", "pos"])[:3],
                                  [ls.bits(NEG), ls.bits(BG, DR), ls.bits(POS)])
    np.testing.assert_array_equal(ls.DRNO_LUT[:3], [ls.bits(BG, POS), ls.bits(DR), ls.bits(NEG)])
    np.testing.assert_array_equal(ls.MFNET_LUT[:9], [ls.bits(BG, DR, NEG)] + [ls.bits(POS)] * 7 + [ls.bits(DR, POS)])
    assert ls.npo_lut()[3] == 0 and ls.DRNO_LUT[255] == 0 and ls.MFNET_LUT[9] == 0  # unknown ids are ignored
    with pytest.raises(ValueError, match="class_order"):
        ls.npo_class_order(["background", "background", "positive"])


def test_apply_lut_handles_16bit_labels():
    labels16 = np.array([[0, 1], [2, 300]], np.uint16)
    np.testing.assert_array_equal(ls.apply_lut(ls.DRNO_LUT, labels16), [[5, 2], [8, 0]])


def test_eval_labels_keeps_singletons_only_numpy_and_torch():
    masks = np.array([1, 2, 4, 8, 3, 0, 15, 16], np.uint8)
    np.testing.assert_array_equal(ls.eval_labels(masks), [0, 1, 2, 3, 255, 255, 255, 255])
    assert ls.eval_labels(torch.from_numpy(masks)).tolist() == [0, 1, 2, 3, 255, 255, 255, 255]


def test_eval_spaces_judge_at_the_granularity_a_dataset_knows():
    npo = ls.npo_space()
    masks = np.array([ls.bits(BG, DR), ls.bits(NEG), ls.bits(POS), ls.bits(BG), ls.bits(BG, POS), 0], np.uint8)
    np.testing.assert_array_equal(npo.target(masks), [0, 1, 2, 0, 255, 255])
    np.testing.assert_array_equal(npo.pred(np.array([BG, DR, POS, NEG])), [0, 0, 2, 1])
    assert npo.background_index == 0
    mfnet = ls.MFNET_SPACE.target(ls.MFNET_LUT[np.arange(9)])
    np.testing.assert_array_equal(mfnet, [0, 1, 1, 1, 1, 1, 1, 1, 255])  # a bump may be road or obstacle
    np.testing.assert_array_equal(ls.NODE_SPACE.target(masks), ls.eval_labels(masks))
    preds = torch.tensor([[BG, NEG]])
    assert ls.DRNO_SPACE.pred(preds).tolist() == [[0, 2]]
    assert ls.npo_space("positive,negative,background").background_index == 2
    with pytest.raises(ValueError, match="partition"):
        ls.EvalSpace(("a", "b"), ((0, 1), (1, 2, 3)))


def test_label_map_lut_accepts_names_and_ids():
    table = ls.label_map_lut({0: ["background", "drivable"], "1": 3, 7: []})
    np.testing.assert_array_equal(table[[0, 1, 7, 8]], [ls.bits(BG, DR), ls.bits(NEG), 0, 0])


def test_class_counts_count_singletons_only():
    masks = torch.tensor([[1, 1, 8, 3], [0, 4, 15, 8]], dtype=torch.uint8)
    np.testing.assert_array_equal(ls.class_counts(masks), [2, 0, 1, 2])
    np.testing.assert_array_equal(ls.class_counts(masks.numpy()), [2, 0, 1, 2])
