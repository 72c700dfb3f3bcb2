"""The stride-2 detail head: wiring, warm start, old checkpoints, and that it resolves 1-px lines (export:
test_models)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from road_seg_core.checkpoint import load_checkpoint, load_model, save_checkpoint
from road_seg_core.export.exporter import sensor_like_inputs
from road_seg_core.models import ModelConfig, build_model
from road_seg_training.warm_start import warm_start
from tiny_models import TINY, calibrated_model

DETAIL = dataclasses.replace(TINY, detail_channels=8)


def inputs_for(config: ModelConfig, seed: int = 0, batch: int = 1) -> dict[str, torch.Tensor]:
    """Sensor-like inputs, on which the calibrated tiny models give O(1) logits."""
    arrays = sensor_like_inputs(config.modalities, config.input_size, batch=batch, seed=seed)
    return {m: torch.from_numpy(x) for m, x in arrays.items()}


def test_head_gives_input_resolution_logits_and_every_parameter_learns():
    model = build_model(DETAIL).train()
    assert model.detail is not None and build_model(TINY).detail is None
    logits = model(inputs_for(DETAIL, batch=2))
    assert logits.shape == (2, 4, *DETAIL.input_size)
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 4, (2, *DETAIL.input_size))).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    # The head's last layer starts at zero, so its upstream layers only learn once it has moved.
    assert model.detail.classifier.weight.grad.abs().sum() > 0


def test_config_validates_and_round_trips_the_head():
    assert ModelConfig.from_dict(DETAIL.to_dict()) == DETAIL
    with pytest.raises(ValueError, match="detail_channels must be 0 .* got 2"):
        ModelConfig.from_dict({**TINY.to_dict(), "detail_channels": 2})
    with pytest.raises(ValueError, match="detail_channels must be 0 .* got True"):
        dataclasses.replace(TINY, detail_channels=True).validate()


def test_old_checkpoint_without_the_key_loads_as_no_head(tmp_path):
    """Checkpoints written before the head existed have no detail_channels in their config."""
    source = calibrated_model(TINY)
    path = tmp_path / "old.pt"
    save_checkpoint(path, source, TINY)
    payload = torch.load(path, weights_only=True)
    del payload["config"]["detail_channels"]
    torch.save(payload, path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.config.detail_channels == 0
    model, _ = load_model(checkpoint)
    x = inputs_for(TINY)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x))


def test_warm_start_from_a_model_without_head_starts_where_it_was(tmp_path):
    source = calibrated_model(TINY)
    path = tmp_path / "old.pt"
    save_checkpoint(path, source, TINY)
    model = build_model(DETAIL, load_encoder_weights=False)
    counts = warm_start(model, str(path))
    assert counts["fresh"] == sum(1 for k in model.state_dict() if k.startswith("detail."))
    model.eval()
    x = inputs_for(TINY, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), source(x))


def _line_scenes(count: int, size: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey road images with one dark horizontal line one pixel tall at a random row; label 3 on the line."""
    rng = np.random.default_rng(seed)
    h, w = size
    rgb = np.full((count, 3, h, w), 120.0, np.float32) + rng.normal(0, 4, (count, 3, h, w)).astype(np.float32)
    target = np.ones((count, h, w), np.int64)
    for i in range(count):
        row, x0 = int(rng.integers(4, h - 4)), int(rng.integers(0, w // 3))
        rgb[i, :, row, x0:x0 + w // 2] = 40.0
        target[i, row, x0:x0 + w // 2] = 3
    return torch.from_numpy(rgb), torch.from_numpy(target)


def _line_iou(config: ModelConfig, steps: int, seed: int = 0) -> float:
    torch.manual_seed(seed)
    model = build_model(config).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    weights = torch.tensor([1.0, 1.0, 1.0, 10.0])
    for step in range(steps):
        rgb, target = _line_scenes(8, config.input_size, seed=step)
        loss = torch.nn.functional.cross_entropy(model({"rgb": rgb}), target, weight=weights)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    # Precise BatchNorm statistics (averaged over batches, not the last steps' running mean): at this tiny size
    # the deepest maps are 1x2 and the running estimate is too noisy to compare two models by.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.momentum = None
        for step in range(10):
            model({"rgb": _line_scenes(8, config.input_size, seed=5_000 + step)[0]})
    model.eval()
    rgb, target = _line_scenes(16, config.input_size, seed=10_000)
    with torch.no_grad():
        predicted = model({"rgb": rgb}).argmax(1) == 3
    truth = target == 3
    return float((predicted & truth).sum() / (predicted | truth).sum().clamp(min=1))


def test_head_resolves_one_pixel_lines_a_stride_4_classifier_cannot():
    """What the head is for: a 1-px line is a quarter of a stride-4 cell; at input resolution it is a pixel."""
    torch.set_num_threads(1)
    base = ModelConfig(modalities=("rgb",), encoder="mobilenet_v3_small", width_mult=0.5, decoder_channels=16,
                       input_size=(32, 64))
    without = _line_iou(base, steps=150)
    with_head = _line_iou(dataclasses.replace(base, detail_channels=8), steps=150)
    assert with_head > 0.6 and with_head > without + 0.15, (with_head, without)
