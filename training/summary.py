"""`road-seg summary`: parameters, FLOPs and output shapes of a model config, before spending hours training it.

Accepts a training config (its ``model`` section is used), a bare model
config YAML, or a checkpoint. FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` on one forward pass at the input
size (batch 1); one multiply-add counts as two FLOPs, as in that counter.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from road_seg_core.models import ModelConfig, build_model
from road_seg_core.models.encoders import STAGE_STRIDES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="training config YAML (its `model:` section) or model YAML")
    source.add_argument("--checkpoint", type=Path, help="a road_seg checkpoint (.pt)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of the config, e.g. --set model.input_size=[384,640]")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"),
                        help="count at this input size instead of the config's")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_model_config(args)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"road-seg summary: {exc}", file=sys.stderr)
        return 2
    info = summarize(config, tuple(args.input_size) if args.input_size else None)
    print(json.dumps(info, indent=2) if args.json else format_summary(info))
    return 0


def load_model_config(args: argparse.Namespace) -> ModelConfig:
    if args.checkpoint:
        from road_seg_core.checkpoint import load_checkpoint

        return load_checkpoint(args.checkpoint).config
    from training.config import TrainConfig, apply_overrides

    data = yaml.safe_load(args.config.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{args.config} must be a mapping")
    if "model" in data or any(o.startswith("model.") for o in args.overrides):
        return TrainConfig.from_dict(apply_overrides(data, args.overrides)).model
    model_overrides = [o.removeprefix("model.") for o in args.overrides]
    return ModelConfig.from_dict(apply_overrides(data, model_overrides))


def summarize(config: ModelConfig, input_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Parameter counts (total and per part), FLOPs and the shapes flowing through the network."""
    from torch.utils.flop_counter import FlopCounterMode

    height, width = input_size or tuple(config.input_size)
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
        "width_mult": config.width_mult,
        "fusion": config.fusion,
        "decoder_channels": config.decoder_channels,
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
    lines = [
        f"model       {'+'.join(info['modalities'])}  {info['encoder']} (width {info['width_mult']:g})  "
        f"{info['fusion']} fusion  decoder {info['decoder_channels']} ch",
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
