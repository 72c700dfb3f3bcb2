"""Partial-label cross-entropy: reduces to CE for single classes, is 0 when everything is allowed,
pushes only towards the allowed set, and skips ignored pixels."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from road_seg_training.label_sets import ALL, bits
from road_seg_training.losses import PartialLabelCrossEntropy, allowed_mask, class_weights_from_counts


def _logits(seed: int = 0, shape=(2, 4, 5, 6)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * 2).requires_grad_(True)


def _single_bits(labels: torch.Tensor) -> torch.Tensor:
    return (1 << labels).to(torch.uint8)


def test_allowed_mask_reads_bits_per_class():
    target = torch.tensor([[[bits(0, 2), 0, ALL]]], dtype=torch.uint8)
    mask = allowed_mask(target, 4)
    assert mask.shape == (1, 4, 1, 3)
    assert mask[0, :, 0, 0].tolist() == [True, False, True, False]
    assert not mask[0, :, 0, 1].any() and mask[0, :, 0, 2].all()


def test_singleton_sets_equal_standard_cross_entropy():
    logits = _logits()
    labels = torch.randint(0, 4, (2, 5, 6), generator=torch.Generator().manual_seed(1))
    ours = PartialLabelCrossEntropy()(logits, _single_bits(labels))
    assert ours.item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)


def test_singleton_sets_equal_weighted_cross_entropy():
    logits = _logits(2)
    labels = torch.randint(0, 4, (2, 5, 6), generator=torch.Generator().manual_seed(3))
    weights = [0.5, 1.0, 2.0, 8.0]
    ours = PartialLabelCrossEntropy(weights)(logits, _single_bits(labels).long())
    reference = F.cross_entropy(logits, labels, weight=torch.tensor(weights))
    assert ours.item() == pytest.approx(reference.item(), rel=1e-6)


def test_set_loss_is_minus_log_of_summed_probability():
    logits = _logits(4, (1, 4, 2, 3))
    target = torch.full((1, 2, 3), bits(0, 1), dtype=torch.uint8)
    p = logits.softmax(1)
    expected = -(p[:, 0] + p[:, 1]).log().mean()
    assert PartialLabelCrossEntropy()(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_all_classes_allowed_gives_zero_loss_and_zero_gradient():
    logits = _logits(5)
    loss = PartialLabelCrossEntropy()(logits, torch.full((2, 5, 6), ALL, dtype=torch.uint8))
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert logits.grad.abs().max().item() < 1e-6


def test_gradient_raises_allowed_classes_and_lowers_the_rest():
    logits = _logits(6)
    target = torch.full((2, 5, 6), bits(1, 3), dtype=torch.uint8)
    PartialLabelCrossEntropy()(logits, target).backward()
    grad = logits.grad
    # Gradient descent moves logits against the gradient: allowed classes up, the others down.
    assert (grad[:, [1, 3]] <= 0).all() and (grad[:, [0, 2]] >= 0).all()
    assert grad[:, [0, 2]].abs().sum() > 0
    torch.testing.assert_close(grad.sum(1), torch.zeros(2, 5, 6), atol=1e-7, rtol=0)


def test_ignored_pixels_contribute_nothing():
    logits = _logits(7)
    labels = torch.randint(0, 4, (2, 5, 6), generator=torch.Generator().manual_seed(8))
    target = _single_bits(labels)
    target[:, :2] = 0                  # ignore
    target[0, 2, :] = 1 << 5           # only a bit beyond K: ignored as well
    loss = PartialLabelCrossEntropy()(logits, target)
    keep = (target != 0) & (target < 16)
    reference = F.cross_entropy(logits.permute(0, 2, 3, 1)[keep], labels[keep])
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    loss.backward()
    assert logits.grad[:, :, :2].abs().max().item() == 0.0
    assert torch.isfinite(logits.grad).all()


def test_batch_without_labels_is_zero_with_a_graph():
    logits = _logits(9)
    loss = PartialLabelCrossEntropy([1, 2, 3, 4])(logits, torch.zeros(2, 5, 6, dtype=torch.uint8))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad.abs().max().item() == 0.0


def test_set_weight_is_the_smallest_weight_of_its_classes():
    logits = _logits(10, (1, 4, 1, 2))
    target = torch.tensor([[[bits(0, 3), bits(3)]]], dtype=torch.uint8)
    weights = [1.0, 1.0, 1.0, 10.0]
    p = logits.softmax(1)[0, :, 0]
    per_pixel = torch.stack([-(p[0, 0] + p[3, 0]).log(), -p[3, 1].log()])
    expected = (per_pixel * torch.tensor([1.0, 10.0])).sum() / 11.0
    got = PartialLabelCrossEntropy(weights)(logits, target)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_fp16_logits_and_invalid_arguments():
    logits = _logits(11).detach().half()
    target = torch.full((2, 5, 6), bits(2), dtype=torch.uint8)
    assert torch.isfinite(PartialLabelCrossEntropy()(logits, target))
    with pytest.raises(ValueError, match="class weights for"):
        PartialLabelCrossEntropy([1.0, 2.0])(logits, target)
    with pytest.raises(ValueError, match="positive"):
        PartialLabelCrossEntropy([1.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="expected logits"):
        PartialLabelCrossEntropy()(logits, target[0])


def test_class_weights_from_counts_favour_rare_classes():
    weights = class_weights_from_counts([1_000_000, 500_000, 50_000, 2_000])
    assert weights[3] > weights[2] > weights[1] > weights[0]
    assert sum(weights) / 4 == pytest.approx(1.0)
    assert class_weights_from_counts([10, 0])[1] == pytest.approx(class_weights_from_counts([10, 0])[0])


def test_focal_term_matches_the_focal_loss_formula():
    logits = _logits(5)
    labels = torch.randint(0, 4, (2, 5, 6), generator=torch.Generator().manual_seed(6))
    ours = PartialLabelCrossEntropy(focal_gamma=2.0)(logits, _single_bits(labels))
    ce = F.cross_entropy(logits, labels, reduction="none")
    reference = ((1 - torch.exp(-ce)) ** 2 * ce).mean()
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)


def test_hard_pixel_mining_averages_the_hardest_share_only():
    logits = _logits(7)
    labels = torch.randint(0, 4, (2, 5, 6), generator=torch.Generator().manual_seed(8))
    ours = PartialLabelCrossEntropy(hard_pixel_fraction=0.25)(logits, _single_bits(labels))
    ce = F.cross_entropy(logits, labels, reduction="none").flatten()
    keep = round(ce.numel() * 0.25)
    assert ours.item() == pytest.approx(ce.topk(keep).values.mean().item(), rel=1e-5)
    # Ignored pixels are never among the "hard" ones.
    target = _single_bits(labels)
    target[0] = 0
    only_second = PartialLabelCrossEntropy(hard_pixel_fraction=0.5)(logits, target)
    ce2 = F.cross_entropy(logits[1:], labels[1:], reduction="none").flatten()
    assert only_second.item() == pytest.approx(ce2.topk(round(ce2.numel() * 0.5)).values.mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="hard_pixel_fraction"):
        PartialLabelCrossEntropy(hard_pixel_fraction=0.0)
