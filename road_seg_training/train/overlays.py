"""Validation pictures for TensorBoard: road_seg_core.visualize's camera | prediction | ground truth."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from road_seg_core.visualize import compose


def render_overlays(batch: dict[str, Any], pred: np.ndarray, limit: int) -> list[np.ndarray]:
    """camera | prediction | ground truth, titled, with the legend (thermal/depth as grey if there is no rgb)."""
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
        title = "camera" if "rgb" in inputs else f"{next(iter(inputs))} (grey)"
        images.append(compose(base, pred[b].astype(np.uint8), batch["labels"][b].numpy(), image_title=title))
    return images
