"""Fusion segmentation models for road perception.

``from road_seg_core.models import ModelConfig`` stays torch-free (config only),
so the onnxruntime/TensorRT backends can read a model config on machines
without torch; the torch modules are imported on first access.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from road_seg_core.models.config import (
    DEFAULT_NORMS,
    DEPTH_LIKE,
    ENCODERS,
    FUSIONS,
    MODALITIES,
    MODALITY_CHANNELS,
    MODALITY_RANGES,
    OUTPUT_STRIDE,
    ModalityNorm,
    ModelConfig,
)

if TYPE_CHECKING:
    from road_seg_core.models.fusion_segnet import FusionSegNet, OrderedInputs, build_model, count_parameters

_TORCH_EXPORTS = {
    "FusionSegNet": "road_seg_core.models.fusion_segnet",
    "OrderedInputs": "road_seg_core.models.fusion_segnet",
    "build_model": "road_seg_core.models.fusion_segnet",
    "count_parameters": "road_seg_core.models.fusion_segnet",
}

__all__ = [
    "DEFAULT_NORMS", "DEPTH_LIKE", "ENCODERS", "FUSIONS", "MODALITIES", "MODALITY_CHANNELS", "MODALITY_RANGES",
    "OUTPUT_STRIDE",
    "ModalityNorm", "ModelConfig", *_TORCH_EXPORTS,
]


def __getattr__(name: str) -> Any:
    module = _TORCH_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
