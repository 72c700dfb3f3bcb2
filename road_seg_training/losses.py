"""Cross-entropy for partial labels: each pixel names a set of allowed classes.

With allowed set A the pixel loss is ``-log sum_{k in A} p_k``: the probability
the network gives to "one of the allowed classes". For a single class this is
ordinary cross-entropy; when every class is allowed it is exactly 0; and its
gradient raises the allowed classes together (in proportion to their current
probabilities) while lowering only the others, so a dataset that cannot tell
road from background never pushes the network either way between them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn


def allowed_mask(target_bits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, K, H, W) bool from (B, H, W) bitmasks: channel k is bit k."""
    shifts = torch.arange(num_classes, device=target_bits.device).view(1, -1, 1, 1)
    return (target_bits.long().unsqueeze(1) >> shifts) & 1 == 1


class PartialLabelCrossEntropy(nn.Module):
    """``mean over labelled pixels of -log sum_{k allowed} softmax(logits)_k`` (optionally class-weighted).

    `target_bits` is (B, H, W) uint8/long: bit k set = class k allowed, 0 =
    ignore (bits beyond K are dropped; a pixel with none left is ignored).
    `class_weights` (one per class) weight each pixel by the smallest weight of
    its allowed classes, and the mean is weighted like ``F.cross_entropy(weight=)``
    (sum of w * loss / sum of w) - so for singleton targets this equals weighted
    cross-entropy, and a broad set that merely *contains* a rare class (DRNO's
    "unlabeled" may be a vehicle) is not up-weighted as if it were that class.
    Returns 0 (with a graph) for a batch without labelled pixels.

    `focal_gamma` > 0 multiplies each pixel's loss by ``(1 - p_allowed) ** gamma``
    (focal loss), and `hard_pixel_fraction` < 1 keeps only that share of the
    labelled pixels with the largest weighted loss (online hard-pixel mining):
    both shift the gradient from the millions of easy road pixels to the rare
    and ambiguous ones (pothole rims, far cones) without hand-tuned weights.
    """

    def __init__(self, class_weights: Sequence[float] | None = None, focal_gamma: float = 0.0,
                 hard_pixel_fraction: float = 1.0) -> None:
        super().__init__()
        if not focal_gamma >= 0 or not 0 < hard_pixel_fraction <= 1:
            raise ValueError(f"need focal_gamma >= 0 and 0 < hard_pixel_fraction <= 1, got {focal_gamma}, "
                             f"{hard_pixel_fraction}")
        self.focal_gamma = float(focal_gamma)
        self.hard_pixel_fraction = float(hard_pixel_fraction)
        if class_weights is not None:
            weights = torch.as_tensor(list(class_weights), dtype=torch.float32)
            if weights.ndim != 1 or not torch.all(weights > 0):
                raise ValueError(f"class_weights must be a list of positive numbers, got {list(class_weights)}")
            self.register_buffer("class_weights", weights)
        else:
            self.class_weights = None

    def forward(self, logits: torch.Tensor, target_bits: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 4 or target_bits.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(f"expected logits (B,K,H,W) and target (B,H,W), got {tuple(logits.shape)} "
                             f"and {tuple(target_bits.shape)}")
        num_classes = logits.shape[1]
        if self.class_weights is not None and self.class_weights.numel() != num_classes:
            raise ValueError(f"{self.class_weights.numel()} class weights for {num_classes} classes")
        logits = logits.float()  # logsumexp in fp32 also under autocast
        allowed = allowed_mask(target_bits, num_classes)
        labelled = allowed.any(dim=1)
        # Ignored pixels allow every class: their loss is exactly 0 and no -inf reaches the backward pass.
        allowed = allowed | ~labelled.unsqueeze(1)
        log_norm = torch.logsumexp(logits, dim=1)
        log_allowed = torch.logsumexp(logits.masked_fill(~allowed, float("-inf")), dim=1)
        pixel_loss = log_norm - log_allowed
        if self.focal_gamma > 0:
            pixel_loss = pixel_loss * (-torch.expm1(-pixel_loss)).clamp_min(0.0) ** self.focal_gamma

        if self.class_weights is None:
            weight = labelled.float()
        else:
            per_class = self.class_weights.to(logits.device).view(1, -1, 1, 1).expand_as(logits)
            weight = per_class.masked_fill(~allowed, float("inf")).amin(dim=1) * labelled.float()
        if self.hard_pixel_fraction < 1:
            weight = weight * self._hardest(pixel_loss.detach() * weight, labelled)
        total = weight.sum()
        if total <= 0:
            return logits.sum() * 0.0
        return (pixel_loss * weight).sum() / total


    def _hardest(self, scores: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
        """1.0 for the `hard_pixel_fraction` share of labelled pixels with the highest `scores`, else 0.0."""
        count = int(labelled.sum())
        keep = max(1, int(round(count * self.hard_pixel_fraction)))
        if count == 0 or keep >= count:
            return labelled.float()
        flat = scores.masked_fill(~labelled, float("-inf")).flatten()
        threshold = torch.topk(flat, keep, sorted=False).values.min()
        return ((scores >= threshold) & labelled).float()


def class_weights_from_counts(counts: Sequence[float], power: float = 0.5, max_ratio: float = 50.0) -> list[float]:
    """Weights ``(median / count) ** power`` clipped to [1/max_ratio, max_ratio], normalised to mean 1.

    `power` 1 is inverse frequency, 0.5 (default) its square root, gentler for
    classes as rare as negative obstacles (~0.2 % of DRNO pixels); classes with
    no pixels get the largest weight of the present ones. Count singleton pixels with
    `road_seg_training.label_sets.class_counts` over a few hundred training targets.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0 or np.any(counts < 0):
        raise ValueError(f"counts must be a non-empty list of non-negative numbers, got {counts.tolist()}")
    present = counts[counts > 0]
    if present.size == 0:
        return [1.0] * counts.size
    ratio = np.median(present) / np.maximum(counts, 1e-12)
    weights = np.clip(ratio ** power, 1.0 / max_ratio, max_ratio)
    weights[counts == 0] = weights[counts > 0].max()
    return (weights / weights.mean()).tolist()
