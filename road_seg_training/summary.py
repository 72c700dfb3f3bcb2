"""`road-seg summary`: parameters, FLOPs and output shapes of a model config, before spending hours training it.

Accepts a training config (its ``model`` section is used), a bare model
config YAML, or a checkpoint. FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` on one forward pass at the input
size (batch 1); one multiply-add counts as two FLOPs, as in that counter.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

from road_seg_core.errors import UserError
from road_seg_core.models import ModelConfig, build_model
from road_seg_core.models.config import MOBILENET_ENCODERS, OUTPUT_STRIDE
from road_seg_core.models.encoders import STAGE_STRIDES


def load_model_config(config: Path | None = None, checkpoint: Path | None = None,
                      overrides: Sequence[str] = ()) -> ModelConfig:
    """The model config of a checkpoint, of a training config's `model:` section, or of a bare model YAML."""
    if checkpoint is not None:
        from road_seg_core.checkpoint import load_checkpoint

        return load_checkpoint(checkpoint).config
    from road_seg_training.config import ConfigError, TrainConfig, apply_overrides

    try:
        data = yaml.safe_load(Path(config).read_text()) or {}
    except OSError as exc:
        raise UserError(f"--config {config}: cannot read it ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise UserError(f"--config {config}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {config}: must be a mapping")
    if "model" in data or any(o.startswith("model.") for o in overrides):
        return TrainConfig.from_dict(apply_overrides(data, overrides)).model
    model_overrides = [o.removeprefix("model.") for o in overrides]
    try:
        return ModelConfig.from_dict(apply_overrides(data, model_overrides)).validate()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{config}: {exc}") from None


def check_input_size(input_size: Sequence[int]) -> tuple[int, int]:
    """(H, W) the network accepts: positive multiples of its output stride (32)."""
    height, width = (int(v) for v in input_size)
    if height < OUTPUT_STRIDE or width < OUTPUT_STRIDE or height % OUTPUT_STRIDE or width % OUTPUT_STRIDE:
        raise UserError(f"--input-size {height} {width}: height and width must be multiples of {OUTPUT_STRIDE} "
                        f"(e.g. {_round(height)} {_round(width)})")
    return height, width


def _round(value: int) -> int:
    return max(OUTPUT_STRIDE, int(round(value / OUTPUT_STRIDE)) * OUTPUT_STRIDE)


def summarize(config: ModelConfig, input_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Parameter counts (total and per part), FLOPs and the shapes flowing through the network."""
    from torch.utils.flop_counter import FlopCounterMode

    height, width = check_input_size(input_size) if input_size else tuple(config.input_size)
    model = build_model(config, load_encoder_weights=False).eval()
    inputs = model.example_inputs(1, (height, width))
    stage_shapes: dict[str, list[list[int]]] = {}
    hooks = []
    for modality, stream in model.encoders.items():
        for i, stage in enumerate(stream.stages):
            hooks.append(stage.register_forward_hook(
                lambda _m, _i, out, key=modality: stage_shapes.setdefault(key, []).append(list(out.shape))))
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        logits = model.forward_ordered(*inputs)
    for hook in hooks:
        hook.remove()
    parts = {name: _count(module) for name, module in model.named_children() if _count(module)}
    per_stream = {m: _count(model.encoders[m]) for m in model.modalities}
    total = _count(model)
    return {
        "modalities": list(config.modalities),
        "encoder": config.encoder,
        "width_mult": config.width_mult if config.encoder in MOBILENET_ENCODERS else None,
        "fusion": config.fusion,
        "decoder_channels": config.decoder_channels,
        "detail_channels": config.detail_channels,
        "input_size": [height, width],
        "inputs": {m: list(x.shape) for m, x in zip(model.modalities, inputs)},
        "output": list(logits.shape),
        "stage_strides": list(STAGE_STRIDES),
        "stage_shapes": stage_shapes,
        "parameters": total,
        "parameters_by_part": parts,
        "parameters_by_stream": per_stream,
        "size_mb_fp32": round(total * 4 / 2**20, 2),
        "gflops": round(counter.get_total_flops() / 1e9, 3),
    }


def format_summary(info: dict[str, Any]) -> str:
    h, w = info["input_size"]
    # width_mult only thins MobileNets; a ResNet is always built at full width
    encoder = (f"{info['encoder']} (width {info['width_mult']:g})" if info["encoder"] in MOBILENET_ENCODERS
               else f"{info['encoder']} (full width)")
    lines = [
        f"model       {'+'.join(info['modalities'])}  {encoder}  "
        f"{info['fusion']} fusion  decoder {info['decoder_channels']} ch"
        + (f"  detail head {info['detail_channels']} ch" if info.get("detail_channels") else ""),
        f"input       {h}x{w}: " + ", ".join(f"{m} {tuple(s)}" for m, s in info["inputs"].items()),
        f"output      logits {tuple(info['output'])}",
        f"parameters  {info['parameters']:,} ({info['size_mb_fp32']} MB fp32)",
    ]
    lines += [f"  {name:<18}{count:>12,}" for name, count in info["parameters_by_part"].items()]
    lines += [f"  {'encoder[' + m + ']':<18}{count:>12,}" for m, count in info["parameters_by_stream"].items()]
    lines.append(f"FLOPs       {info['gflops']:.3f} GFLOPs per frame (batch 1)")
    lines.append("stages      " + "  ".join(f"/{s}" for s in info["stage_strides"]))
    for m, shapes in info["stage_shapes"].items():
        lines.append(f"  {m:<18}" + "  ".join(str(tuple(s[1:])) for s in shapes))
    return "\n".join(lines)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
