"""Light FPN decoder: fused stage features (strides 4..32) to full-resolution logits.

Global context is added at stride 32 with an LR-ASPP-style pooled gate (one
global average pool, no dilated branches), then a top-down pathway adds each
finer skip and refines it with a depthwise-separable 3x3 conv. The classifier
runs at stride 4 and is bilinearly upsampled to the input size, as in
torchvision's segmentation heads. Every op (1x1/3x3/depthwise conv, BN, ReLU,
global pool, sigmoid, bilinear resize) exports to ONNX opset 17 and is native
in TensorRT.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops.misc import Conv2dNormActivation


class SeparableConvBNReLU(nn.Sequential):
    """3x3 depthwise + 1x1 pointwise, each with BN+ReLU: ~9x cheaper than a full 3x3 at the same width."""

    def __init__(self, channels: int) -> None:
        super().__init__(
            Conv2dNormActivation(channels, channels, kernel_size=3, groups=channels),
            Conv2dNormActivation(channels, channels, kernel_size=1),
        )


class GlobalContext(nn.Module):
    """Project the deepest features and re-weight channels by their image-wide average (LR-ASPP)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.project = Conv2dNormActivation(in_channels, out_channels, kernel_size=1)
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.project(x) * self.scale(x)


class FPNDecoder(nn.Module):
    """Top-down decoder over features at strides (4, 8, 16, 32) with `channels` everywhere."""

    def __init__(self, in_channels: Sequence[int], channels: int, num_classes: int) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"FPNDecoder expects 4 feature levels, got {len(in_channels)}")
        self.context = GlobalContext(in_channels[-1], channels)
        self.laterals = nn.ModuleList(
            Conv2dNormActivation(c, channels, kernel_size=1) for c in in_channels[:-1]
        )
        self.refine = nn.ModuleList(SeparableConvBNReLU(channels) for _ in in_channels[:-1])
        self.classifier = nn.Sequential(
            SeparableConvBNReLU(channels),
            nn.Conv2d(channels, num_classes, kernel_size=1),
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: Sequence[Tensor], output_size: tuple[int, int]) -> Tensor:
        """`features` fine to coarse; `output_size` (H, W) of the logits (the network input size)."""
        logits = self.classifier(self.top_down(features))
        return F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)

    def top_down(self, features: Sequence[Tensor]) -> Tensor:
        """The refined stride-4 features the classifier reads (the detail head reads them too)."""
        x = self.context(features[-1])
        # Coarse to fine: 16, 8, 4. Sizes come from the skip tensors, so no scale factors are baked in.
        for index in range(len(self.laterals) - 1, -1, -1):
            skip = self.laterals[index](features[index])
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False) + skip
            x = self.refine[index](x)
        return x
