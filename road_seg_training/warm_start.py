"""Warm start: initialise a new network from a trained checkpoint, tensor by tensor.

Retraining the bundled model from scratch for every change (a new modality, a
larger input) costs hours on a small CPU; most of the network is unchanged and
fine-tuning it takes a fraction of that. Every tensor whose name and shape
match the checkpoint's is copied. A modality the checkpoint lacks can borrow
another modality's stream (`streams`, e.g. ``{"height": "depth"}``): its input
encoder and its fusion gates start from that stream's weights instead of from
scratch, which helps when the two carry related content (both geometric maps).
"""
from __future__ import annotations

import re
from typing import Mapping

from torch import nn

from road_seg_core.checkpoint import CheckpointError, load_checkpoint

_STREAM_KEY = re.compile(r"^(encoders|inputs)\.([^.]+)\.(.*)$")
_GATE_KEY = re.compile(r"^(fusions\.\d+\.gates\.)(\d+)\.(.*)$")


def _source_key(key: str, modalities: tuple[str, ...], source_modalities: tuple[str, ...],
                streams: Mapping[str, str]) -> str:
    """The checkpoint key that should initialise `key` of the new model."""
    match = _STREAM_KEY.match(key)
    if match and match.group(2) in streams:
        return f"{match.group(1)}.{streams[match.group(2)]}.{match.group(3)}"
    match = _GATE_KEY.match(key)
    if match:
        modality = modalities[int(match.group(2))]
        source = streams.get(modality, modality)
        if source in source_modalities:
            return f"{match.group(1)}{source_modalities.index(source)}.{match.group(3)}"
        return ""
    return key


def warm_start(model: nn.Module, path: str, streams: Mapping[str, str] | None = None) -> dict[str, int]:
    """Copy matching tensors from checkpoint `path` into `model`; returns counts of copied and fresh tensors.

    Raises ValueError naming the problem when the file is not a usable
    checkpoint or `streams` names a modality the checkpoint does not have.
    """
    streams = dict(streams or {})
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as exc:
        raise ValueError(f"init_from: {exc}") from None
    source_modalities = tuple(checkpoint.config.modalities)
    missing = sorted(set(streams.values()) - set(source_modalities))
    if missing:
        raise ValueError(f"init_streams copies {missing}, which {path} does not have "
                         f"(its modalities: {list(source_modalities)})")
    modalities = tuple(model.config.modalities)  # type: ignore[union-attr]
    state = model.state_dict()
    copied = fresh = 0
    for key, tensor in state.items():
        source = checkpoint.state_dict.get(_source_key(key, modalities, source_modalities, streams))
        if source is not None and tuple(source.shape) == tuple(tensor.shape):
            state[key] = source.to(tensor.dtype).clone()
            copied += 1
        else:
            fresh += 1
    model.load_state_dict(state)
    return {"copied": copied, "fresh": fresh}
