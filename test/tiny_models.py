"""Tiny checkpoints whose logits are O(1), so backend parity tests compare real numbers.

A freshly initialised network in eval mode uses BatchNorm's default statistics
(mean 0, var 1) and its activations shrink stage after stage, leaving logits near
1e-3 where any two backends "agree". Re-estimating the BatchNorm statistics on a
few sensor-like batches (what a short training run would do) restores unit-scale
activations and well-separated logits, in well under a second at test sizes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from road_seg_core.checkpoint import save_checkpoint
from road_seg_core.export.exporter import sensor_like_inputs
from road_seg_core.models import ModelConfig, build_model

TINY = ModelConfig(modalities=("rgb", "depth", "thermal"), encoder="mobilenet_v3_small", width_mult=0.5,
                   decoder_channels=16, input_size=(64, 96))


def calibrated_model(config: ModelConfig = TINY, seed: int = 0) -> torch.nn.Module:
    """A model with BatchNorm statistics estimated on sensor-like inputs (eval mode)."""
    torch.manual_seed(seed)
    model = build_model(config)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add contention on a shared machine
    try:
        with torch.no_grad():
            for i in range(3):
                inputs = sensor_like_inputs(config.modalities, config.input_size, batch=4, seed=100 + i)
                model({m: torch.from_numpy(x) for m, x in inputs.items()})
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def save_calibrated(path: Path, config: ModelConfig = TINY, seed: int = 0) -> Path:
    save_checkpoint(path, calibrated_model(config, seed), config, provenance={"purpose": "export tests",
                                                                              "seed": seed})
    return path


def logit_scale(model: torch.nn.Module, config: ModelConfig = TINY) -> float:
    inputs = sensor_like_inputs(config.modalities, config.input_size, batch=1, seed=7)
    with torch.no_grad():
        return float(np.abs(model({m: torch.from_numpy(x) for m, x in inputs.items()}).numpy()).max())
