"""`FusionSegNet`: multi-stream encoder, stage-wise fusion, FPN decoder.

Data flow for modalities (m0, m1, ...), m0 being the primary stream::

    x_i --norm*validity--> stage1_i --+--> fuse --> stage2_0 --+--> fuse --> ... --> stage4 fuse
                                      |     |                  |     |
    (every other stream runs its own stages; fused features feed the decoder skip at each stride)

    decoder (stride 4) --> logits, or with a detail head: + head(all normalised inputs, decoder features)

As in RTFNet, the fused feature continues in the primary stream, while the other
streams keep encoding their own modality. Normalisation and validity (``x > 0``
for 1-channel modalities) are computed in the graph, so preprocessing only
produces tensors in sensor units and an exported ONNX/TensorRT model needs no
extra glue. The forward path has no data-dependent Python branches; the only
Python decisions depend on the config and on tensor *ranks*, which makes it
traceable for `torch.onnx.export` (opset 17).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from road_seg_core.models.config import MODALITY_CHANNELS, MODALITY_RANGES, OUTPUT_STRIDE, ModalityNorm, ModelConfig
from road_seg_core.models.decoder import FPNDecoder
from road_seg_core.models.detail import DetailHead
from road_seg_core.models.encoders import STAGE_STRIDES, EncoderStream, build_encoder
from road_seg_core.models.fusion import build_fusion


class InputNorm(nn.Module):
    """``((x / scale) - mean) / std`` folded to one multiply-add; 1-channel inputs are exactly 0 where invalid.

    Returns the normalised tensor and the validity mask (float 0/1, or ``None``
    for rgb, which is always valid). Buffers are not persistent: the values come
    from the config, which is the single source of truth in a checkpoint.
    """

    def __init__(self, norm: ModalityNorm, channels: int, masked: bool) -> None:
        super().__init__()
        mean = torch.tensor(norm.mean, dtype=torch.float32).view(1, channels, 1, 1)
        std = torch.tensor(norm.std, dtype=torch.float32).view(1, channels, 1, 1)
        self.register_buffer("gain", 1.0 / (float(norm.scale) * std), persistent=False)
        self.register_buffer("offset", -mean / std, persistent=False)
        self.masked = masked

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        x = x.to(torch.float32)  # uint8 rgb is accepted as is
        normed = x * self.gain + self.offset
        if not self.masked:
            return normed, None
        valid = x > 0  # also False for NaN, so a stray NaN hole cannot poison the features
        return torch.where(valid, normed, 0.0), valid.to(torch.float32)


class FusionSegNet(nn.Module):
    """Segmentation network over any non-empty subset of rgb / depth|disparity / thermal.

    Inputs follow the project convention: NCHW float32 in sensor units at an
    input size that is a multiple of 32 (rgb 0..255, depth metres, disparity
    pixels, thermal (0, 1]; 0 = no data). Output: logits (B, num_classes, H, W).
    """

    def __init__(self, config: ModelConfig, *, load_encoder_weights: bool = True) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.modalities: tuple[str, ...] = tuple(config.modalities)
        masked = [MODALITY_CHANNELS[m] == 1 for m in self.modalities]
        weights = (config.encoder_weights or {}) if load_encoder_weights else {}
        self.inputs = nn.ModuleDict({
            m: InputNorm(config.norms[m], MODALITY_CHANNELS[m], is_masked)
            for m, is_masked in zip(self.modalities, masked)
        })
        self.encoders = nn.ModuleDict({
            m: build_encoder(config.encoder, MODALITY_CHANNELS[m], config.width_mult, weights.get(m))
            for m in self.modalities
        })
        channels = self.encoders[self.modalities[0]].channels
        # A single-modality model has nothing to fuse; an empty list keeps forward branch-free.
        self.fusions = nn.ModuleList(
            build_fusion(config.fusion, c, masked) for c in channels
        ) if len(self.modalities) > 1 else nn.ModuleList()
        self.decoder = FPNDecoder(channels, config.decoder_channels, config.num_classes)
        # Input-resolution logits for thin cracks (config.detail_channels > 0); absent in older checkpoints.
        self.detail = DetailHead(sum(MODALITY_CHANNELS[m] for m in self.modalities), config.decoder_channels,
                                 config.detail_channels, config.num_classes) if config.detail_channels else None

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return self.encoders[self.modalities[0]].channels

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Logits for a dict of modality tensors; a missing modality is fed as zeros (no data)."""
        return self.forward_ordered(*self.ordered_inputs(inputs))

    def ordered_inputs(self, inputs: Mapping[str, Tensor]) -> list[Tensor]:
        """Tensors in `modalities` order, zeros (B,C,H,W) for absent ones; unknown keys are an error."""
        unknown = sorted(set(inputs) - set(self.modalities))
        if unknown:
            raise ValueError(f"inputs {unknown} are not modalities of this model ({', '.join(self.modalities)})")
        present = [inputs[m] for m in self.modalities if m in inputs]
        if not present:
            raise ValueError(f"no input given; expected some of: {', '.join(self.modalities)}")
        reference = present[0]
        if reference.dim() != 4:
            raise ValueError(f"inputs must be (B, C, H, W), got shape {tuple(reference.shape)}")
        batch, _, height, width = reference.shape
        return [
            inputs[m] if m in inputs else
            torch.zeros((batch, MODALITY_CHANNELS[m], height, width), dtype=torch.float32, device=reference.device)
            for m in self.modalities
        ]

    def forward_ordered(self, *tensors: Tensor) -> Tensor:
        """Positional form of `forward` (inputs in `modalities` order), the signature ONNX export traces."""
        if not _is_tracing():
            self._check_inputs(tensors)
        height, width = tensors[0].shape[-2:]
        normed: list[Tensor] = []
        validity: list[list[Tensor] | None] = []
        for modality, x in zip(self.modalities, tensors):
            x_norm, valid = self.inputs[modality](x)
            normed.append(x_norm)
            validity.append(None if valid is None else _validity_pyramid(valid))

        features = normed
        skips: list[Tensor] = []
        for stage in range(len(STAGE_STRIDES)):
            features = [self._stream(m).stages[stage](f) for m, f in zip(self.modalities, features)]
            if len(self.fusions):
                fused = self.fusions[stage](features, [None if v is None else v[stage] for v in validity])
                features[0] = fused
            skips.append(features[0])
        if self.detail is None:
            return self.decoder(skips, (height, width))
        top = self.decoder.top_down(skips)
        return self.detail(torch.cat(normed, dim=1), top, self.decoder.classifier(top))

    def example_inputs(self, batch_size: int = 1, input_size: tuple[int, int] | None = None,
                       device: torch.device | str = "cpu") -> tuple[Tensor, ...]:
        """Plausible random inputs in `modalities` order (for export tracing, benchmarks and tests)."""
        height, width = input_size or self.config.input_size
        generator = torch.Generator().manual_seed(0)
        tensors = []
        for m in self.modalities:
            shape = (batch_size, MODALITY_CHANNELS[m], height, width)
            x = torch.rand(shape, generator=generator) * MODALITY_RANGES[m]
            if MODALITY_CHANNELS[m] == 1:  # some invalid pixels, as real sensors have
                x = x * (torch.rand(shape, generator=generator) > 0.1)
            tensors.append(x.to(device))
        return tuple(tensors)

    def _stream(self, modality: str) -> EncoderStream:
        return self.encoders[modality]  # type: ignore[return-value]

    def _check_inputs(self, tensors: Sequence[Tensor]) -> None:
        if len(tensors) != len(self.modalities):
            raise ValueError(f"expected {len(self.modalities)} inputs ({', '.join(self.modalities)}), "
                             f"got {len(tensors)}")
        reference = None
        for modality, x in zip(self.modalities, tensors):
            channels = MODALITY_CHANNELS[modality]
            if x.dim() != 4 or x.shape[1] != channels:
                raise ValueError(f"{modality} must be (B, {channels}, H, W), got {tuple(x.shape)}")
            if reference is None:
                reference = (modality, x.shape[0], x.shape[2], x.shape[3])
            elif (x.shape[0], x.shape[2], x.shape[3]) != reference[1:]:
                raise ValueError(f"{modality} has batch/size {x.shape[0]}x{x.shape[2]}x{x.shape[3]} but "
                                 f"{reference[0]} has {reference[1]}x{reference[2]}x{reference[3]}")
        _, _, height, width = tensors[0].shape
        if height % OUTPUT_STRIDE or width % OUTPUT_STRIDE:
            raise ValueError(f"input size {height}x{width} is not a multiple of {OUTPUT_STRIDE}; "
                             f"resize to e.g. {self.config.input_size[0]}x{self.config.input_size[1]}")


class OrderedInputs(nn.Module):
    """Wraps a `FusionSegNet` so `forward(*tensors)` takes inputs in `modalities` order (for ONNX export).

    Use `input_names` / `output_names` as the ONNX graph's names so runtimes can
    feed inputs by modality name.
    """

    def __init__(self, model: FusionSegNet) -> None:
        super().__init__()
        self.model = model

    @property
    def input_names(self) -> list[str]:
        return list(self.model.modalities)

    @property
    def output_names(self) -> list[str]:
        return ["logits"]

    def forward(self, *tensors: Tensor) -> Tensor:
        return self.model.forward_ordered(*tensors)


def build_model(config: ModelConfig, *, load_encoder_weights: bool = True) -> FusionSegNet:
    """Build a `FusionSegNet` from a config (validated).

    `load_encoder_weights=False` skips the config's local backbone weight files;
    checkpoint loading uses it because the trained weights replace them anyway
    (and those files need not exist on the deployment machine).
    """
    return FusionSegNet(config, load_encoder_weights=load_encoder_weights)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (all of them: buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


def _validity_pyramid(valid: Tensor) -> list[Tensor]:
    """Fraction of valid input pixels under each feature pixel at strides 4, 8, 16, 32."""
    levels = [F.avg_pool2d(valid, kernel_size=STAGE_STRIDES[0], stride=STAGE_STRIDES[0])]
    for previous, stride in zip(STAGE_STRIDES[:-1], STAGE_STRIDES[1:]):
        factor = stride // previous
        levels.append(F.avg_pool2d(levels[-1], kernel_size=factor, stride=factor))
    return levels


def _is_tracing() -> bool:
    """True while torch.jit/ONNX tracing or torch.export runs, where Python-side shape checks are skipped."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()
