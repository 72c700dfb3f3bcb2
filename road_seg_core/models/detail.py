"""Detail head: full-resolution logits for what a stride-4 classifier blurs away.

A crack lying across the lane 10 m ahead is 1-2 pixels tall at 640x360 (its
30-50 cm along the road, seen from 1.2 m up); the FPN decoder classifies at
stride 4, where such a line is a third of a cell and loses to the road around
it. Measured on the selection drives with the stride-4 model: near potholes at
least 8 px thick were all found, those under 2.5 px thick 4 of 49 (with this
head fine-tuned onto that model for 8 epochs, 7 of 49, as without it: README).

The head reads the network's normalised inputs (all modalities, stacked) with
one stride-2 convolution, adds the decoder's stride-4 features, refines them
and predicts a 2x2 block of logits per stride-2 cell (`PixelShuffle`, ONNX
DepthToSpace), so its output has the input's resolution at stride-2 cost. The
block is added to the decoder's bilinearly upsampled logits; its last layer
starts at zero, so a network warm-started from one without the head begins
exactly where that one was.
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops.misc import Conv2dNormActivation

from road_seg_core.models.decoder import SeparableConvBNReLU

#: The head works at stride 2 and predicts each cell's 2x2 input pixels.
DETAIL_STRIDE = 2


class DetailHead(nn.Module):
    """Adds an input-resolution correction to the decoder's logits (see the module docstring)."""

    def __init__(self, in_channels: int, decoder_channels: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            Conv2dNormActivation(in_channels, channels, kernel_size=3, stride=DETAIL_STRIDE),
            SeparableConvBNReLU(channels),
        )
        self.lateral = Conv2dNormActivation(decoder_channels, channels, kernel_size=1)
        self.refine = SeparableConvBNReLU(channels)
        self.classifier = nn.Conv2d(channels, num_classes * DETAIL_STRIDE ** 2, kernel_size=1)
        self.shuffle = nn.PixelShuffle(DETAIL_STRIDE)
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, inputs: Tensor, features: Tensor, logits: Tensor) -> Tensor:
        """`inputs` (B, C, H, W) normalised and stacked; `features` and `logits` the decoder's at stride 4.

        Returns (B, num_classes, H, W) logits."""
        height, width = inputs.shape[-2:]
        x = self.stem(inputs)
        x = self.refine(x + F.interpolate(self.lateral(features), size=x.shape[-2:], mode="bilinear",
                                          align_corners=False))
        base = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        return base + self.shuffle(self.classifier(x))
