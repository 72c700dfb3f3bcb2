"""Per-modality encoder streams cut from torchvision classification backbones.

Each stream is a backbone split into four stages whose outputs sit at strides
4, 8, 16 and 32: the fusion blocks work stage by stage and the decoder takes a
skip from every stage. Backbones are always built with ``weights=None``;
ImageNet (or any other) initialisation comes only from a local file, so a car
or a CI box never reaches for the network.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torchvision import models as tvm

from road_seg_core.models.config import MOBILENET_ENCODERS, RESNET_ENCODERS

STAGE_STRIDES: tuple[int, int, int, int] = (4, 8, 16, 32)

_RESNETS: dict[str, Callable[..., tvm.ResNet]] = {
    "resnet18": tvm.resnet18, "resnet34": tvm.resnet34, "resnet50": tvm.resnet50,
}
_MOBILENETS: dict[str, Callable[..., tvm.MobileNetV3]] = {
    "mobilenet_v3_large": tvm.mobilenet_v3_large, "mobilenet_v3_small": tvm.mobilenet_v3_small,
}
#: Classifier parameters a segmentation trunk never uses: absent keys are fine, anything else missing is not.
_HEAD_PREFIXES = ("fc.", "classifier.")


class EncoderStream(nn.Module):
    """A backbone as four sequential stages; ``stages[i]`` ends at ``STAGE_STRIDES[i]``.

    Stages are called one at a time by the fusion network (the primary stream's
    next stage consumes the fused feature), so the stream exposes them rather
    than a single forward returning all features.
    """

    def __init__(self, stages: list[nn.Module], channels: tuple[int, int, int, int]) -> None:
        super().__init__()
        if len(stages) != len(STAGE_STRIDES) or len(channels) != len(STAGE_STRIDES):
            raise ValueError(f"an encoder stream needs {len(STAGE_STRIDES)} stages, got {len(stages)}")
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(int(c) for c in channels)

    def forward(self, x: Tensor) -> list[Tensor]:
        """All four stage features of a stand-alone stream (useful for inspection and tests)."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def build_encoder(name: str, in_channels: int, width_mult: float = 1.0,
                  weights_path: str | Path | None = None) -> EncoderStream:
    """Build one stream for a modality with `in_channels` channels.

    `weights_path` is a local torchvision-layout state dict (e.g. an ImageNet
    ``resnet18-*.pth``) loaded before the first conv is adapted, so a 3-channel
    pretrained filter bank becomes a 1-channel one by averaging over its input
    channels (the usual depth/thermal initialisation).
    """
    if name in _RESNETS:
        backbone: nn.Module = _RESNETS[name](weights=None)
    elif name in _MOBILENETS:
        backbone = _MOBILENETS[name](weights=None, width_mult=float(width_mult))
    else:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(RESNET_ENCODERS + MOBILENET_ENCODERS)}")
    if weights_path is not None:
        load_backbone_weights(backbone, weights_path, name)
    if name in _RESNETS:
        backbone.conv1 = adapt_first_conv(backbone.conv1, in_channels)
        return _split_resnet(backbone)
    first = backbone.features[0][0]
    backbone.features[0][0] = adapt_first_conv(first, in_channels)
    return _split_by_stride(backbone.features)


def adapt_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """Return `conv` taking `in_channels` inputs; existing filters are averaged over input channels and repeated."""
    if conv.in_channels == in_channels:
        return conv
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=conv.bias is not None)
    with torch.no_grad():
        mean = conv.weight.mean(dim=1, keepdim=True)
        # Scaling by in/out channel ratio keeps the response magnitude of the (pretrained) filters.
        new.weight.copy_(mean.repeat(1, in_channels, 1, 1) * (conv.in_channels / in_channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def load_backbone_weights(backbone: nn.Module, path: str | Path, name: str) -> None:
    """Load a local state dict into a full torchvision backbone, ignoring only its classifier head."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights file for {name} not found: {path} "
                                f"(weights are never downloaded; point encoder_weights at a local .pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for unreadable files
        raise ValueError(f"cannot read encoder weights {path}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"encoder weights {path} is not a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES)}
    expected = {k: v.shape for k, v in backbone.state_dict().items() if not k.startswith(_HEAD_PREFIXES)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k])
    if missing or unexpected or wrong_shape:
        details = [f"{label} {keys[:5]}{' ...' if len(keys) > 5 else ''}"
                   for label, keys in (("missing", missing), ("unexpected", unexpected),
                                       ("wrong shape", wrong_shape)) if keys]
        raise ValueError(f"encoder weights {path} do not fit {name} (check the encoder name and width_mult): "
                         + "; ".join(details))
    backbone.load_state_dict(state, strict=False)


def _split_resnet(net: tvm.ResNet) -> EncoderStream:
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    layers = [stem, net.layer2, net.layer3, net.layer4]
    expansion = type(net.layer1[-1]).expansion  # 1 for BasicBlock, 4 for Bottleneck
    channels = tuple(width * expansion for width in (64, 128, 256, 512))
    return EncoderStream(layers, channels)


def _split_by_stride(blocks: nn.Sequential) -> EncoderStream:
    """Group consecutive blocks so each stage ends just before the next stride-2 block.

    Strides are read from the convs, not hard-coded block indices, so any width
    multiplier (and both MobileNetV3 sizes) split correctly.
    """
    groups: list[list[nn.Module]] = []
    stride = 1
    for block in blocks:
        block_stride = _block_stride(block)
        if not groups or (block_stride > 1 and stride >= STAGE_STRIDES[0]):
            groups.append([])
        stride *= block_stride
        groups[-1].append(block)
    if stride != STAGE_STRIDES[-1] or len(groups) != len(STAGE_STRIDES):
        raise ValueError(f"backbone does not reduce to stride {STAGE_STRIDES[-1]} in {len(STAGE_STRIDES)} stages")
    stages = [nn.Sequential(*group) for group in groups]
    # torchvision's Conv2dNormActivation and InvertedResidual both record their out_channels.
    return EncoderStream(stages, tuple(int(group[-1].out_channels) for group in groups))


def _block_stride(block: nn.Module) -> int:
    return max((m.stride[0] for m in block.modules() if isinstance(m, nn.Conv2d)), default=1)
