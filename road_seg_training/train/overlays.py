"""Validation pictures for TensorBoard: ground truth and prediction drawn over the camera image."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from road_seg_core import labels as L
from road_seg_core.postprocess import overlay


def render_overlays(batch: dict[str, Any], pred: np.ndarray, limit: int) -> list[np.ndarray]:
    """[ground truth | prediction] overlays on the colour image (thermal/depth as grey if there is no rgb)."""
    images = []
    inputs = batch["inputs"]
    for b in range(min(limit, pred.shape[0])):
        if "rgb" in inputs:
            base = inputs["rgb"][b].permute(1, 2, 0).clamp(0, 255).to(torch.uint8).numpy()
        else:
            x = next(iter(inputs.values()))[b, 0].numpy()
            grey = (255 * x / max(float(x.max()), 1e-6)).astype(np.uint8)
            base = np.repeat(grey[..., None], 3, axis=2)
        base = np.ascontiguousarray(base)
        gt = batch["labels"][b].numpy().astype(np.uint8)
        gt = np.where(gt == L.IGNORE, L.BACKGROUND, gt).astype(np.uint8)
        images.append(np.concatenate([overlay(base, gt), overlay(base, pred[b].astype(np.uint8))], axis=1))
    return images
