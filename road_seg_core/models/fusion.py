"""Stage-wise fusion of per-modality features into the primary stream.

Both blocks take the features of every modality at one stage (same shape) and
return one tensor of that shape, so they slot into the encoder between stages
for any number of modalities.

* `AddFusion` is RTFNet's element-wise sum: cheap and strong when every sensor
  works, but a dead sensor still injects its "zero input" features.
* `GatedFusion` learns a per-pixel confidence for each modality from its
  features and its validity, multiplies it by the validity so a modality with no
  data at a pixel contributes exactly nothing there, and takes the normalised
  weighted sum (in the spirit of AMFNet's adaptive fusion). This is what keeps
  the network usable at night without rgb detail, in depth holes, or outside the
  thermal camera's view.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class AddFusion(nn.Module):
    """Element-wise sum of all modality features (validity is ignored)."""

    def __init__(self, num_modalities: int) -> None:
        super().__init__()
        if num_modalities < 1:
            raise ValueError("fusion needs at least one modality")
        self.num_modalities = num_modalities

    def forward(self, features: Sequence[Tensor], validity: Sequence[Tensor | None]) -> Tensor:
        fused = features[0]
        for feature in features[1:]:
            fused = fused + feature
        return fused


class GatedFusion(nn.Module):
    """Validity-aware weighted average of modality features.

    ``validity[i]`` is the fraction of valid input pixels under each stage pixel
    (B,1,h,w) in [0, 1], or ``None`` for a modality that is always valid (rgb),
    in which case its gate does not see a validity channel.
    """

    def __init__(self, channels: int, has_validity: Sequence[bool], eps: float = 1e-4) -> None:
        super().__init__()
        if not has_validity:
            raise ValueError("fusion needs at least one modality")
        self.has_validity = tuple(bool(v) for v in has_validity)
        self.eps = float(eps)
        # A 3x3 kernel lets the gate judge a pixel by its neighbourhood (e.g. depth edges) at C*9 weights.
        self.gates = nn.ModuleList(
            nn.Conv2d(channels + int(valid), 1, kernel_size=3, padding=1) for valid in self.has_validity
        )
        for gate in self.gates:
            nn.init.zeros_(gate.bias)  # start as a plain average over the valid modalities

    def forward(self, features: Sequence[Tensor], validity: Sequence[Tensor | None]) -> Tensor:
        weighted: Tensor | None = None
        total: Tensor | None = None
        for feature, valid, gate, has_valid in zip(features, validity, self.gates, self.has_validity):
            if has_valid:
                if valid is None:
                    raise ValueError("GatedFusion was built to expect a validity mask for this modality")
                weight = torch.sigmoid(gate(torch.cat([feature, valid], dim=1))) * valid
            else:
                weight = torch.sigmoid(gate(feature))
            term = feature * weight
            weighted = term if weighted is None else weighted + term
            total = weight if total is None else total + weight
        assert weighted is not None and total is not None
        # clamp_min (not + eps) keeps a single valid modality's feature exact; all-invalid pixels give 0.
        return weighted / total.clamp_min(self.eps)


def build_fusion(kind: str, channels: int, has_validity: Sequence[bool]) -> nn.Module:
    """Fusion block for one stage; `has_validity[i]` says whether modality i has a validity mask."""
    if kind == "add":
        return AddFusion(len(has_validity))
    if kind == "gated":
        return GatedFusion(channels, has_validity)
    raise ValueError(f"unknown fusion {kind!r}; known: add, gated")
