"""Batching samples of one or several datasets for a model: missing modalities become zeros (validity 0)."""
from __future__ import annotations

from typing import Any, Callable

import torch

from road_seg_core.models import MODALITY_CHANNELS, ModelConfig


def make_collate(model_cfg: ModelConfig) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """A DataLoader `collate_fn` stacking every model modality, zeros where a dataset lacks it."""
    modalities = tuple(model_cfg.modalities)

    def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
        first = samples[0]
        height, width = first["labels"].shape[-2:]
        inputs = {}
        for m in modalities:
            tensors = []
            for s in samples:
                x = s["inputs"].get(m)
                tensors.append(torch.zeros((MODALITY_CHANNELS[m], height, width), dtype=torch.float32)
                               if x is None else torch.as_tensor(x, dtype=torch.float32))
            inputs[m] = torch.stack(tensors)
        return {
            "inputs": inputs,
            "target": torch.stack([torch.as_tensor(s["target"]) for s in samples]),
            "labels": torch.stack([torch.as_tensor(s["labels"]) for s in samples]),
            "meta": [s.get("meta", {}) for s in samples],
        }

    return collate
