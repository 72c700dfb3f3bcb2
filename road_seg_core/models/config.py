"""Architecture configuration of the fusion network, kept free of torch.

The config travels inside every checkpoint as a plain dict (`to_dict`), so a
checkpoint alone is enough to rebuild the exact network, its input
normalisation and its label space. It imports nothing heavier than the label
module so that non-torch backends (onnxruntime, TensorRT) can read it too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from road_seg_core import labels

#: Channel count of every modality tensor the network accepts, in canonical order.
#: "height" is derived from depth in preprocessing: metres above a datum 1 m below the fitted road plane
#: (road_seg_core.road_plane), so a pothole reads < 1, a kerb > 1 and 0 still means "no data".
MODALITY_CHANNELS: dict[str, int] = {"rgb": 3, "depth": 1, "disparity": 1, "thermal": 1, "height": 1}
MODALITIES: tuple[str, ...] = tuple(MODALITY_CHANNELS)
#: Upper end of each modality's values in sensor units (for plausible example and benchmark inputs).
MODALITY_RANGES: dict[str, float] = {"rgb": 255.0, "depth": 40.0, "disparity": 64.0, "thermal": 1.0, "height": 3.0}
#: Depth and disparity carry the same geometry; a model takes at most one of them.
DEPTH_LIKE: tuple[str, ...] = ("depth", "disparity")

RESNET_ENCODERS: tuple[str, ...] = ("resnet18", "resnet34", "resnet50")
MOBILENET_ENCODERS: tuple[str, ...] = ("mobilenet_v3_large", "mobilenet_v3_small")
ENCODERS: tuple[str, ...] = RESNET_ENCODERS + MOBILENET_ENCODERS
FUSIONS: tuple[str, ...] = ("add", "gated")

#: Every feature map size and the output size must divide exactly by the deepest stride.
OUTPUT_STRIDE = 32


@dataclass(frozen=True)
class ModalityNorm:
    """Input normalisation folded into the network: ``((x / scale) - mean) / std``.

    `scale` brings sensor units (0..255, metres, pixels) to roughly 0..1; mean and
    std then centre the values, with one entry per channel of the modality.
    """

    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def to_dict(self) -> dict[str, Any]:
        return {"scale": float(self.scale), "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | "ModalityNorm") -> "ModalityNorm":
        if isinstance(data, ModalityNorm):
            return data
        unknown = set(data) - {"scale", "mean", "std"}
        if unknown:
            raise ValueError(f"unknown normalisation keys {sorted(unknown)}; expected scale, mean, std")
        return cls(scale=float(data.get("scale", 1.0)),
                   mean=tuple(float(v) for v in data.get("mean", (0.0,))),
                   std=tuple(float(v) for v in data.get("std", (1.0,))))


#: Defaults: ImageNet statistics for rgb (so pretrained backbones see what they expect),
#: depth up to 40 m, disparity up to 64 px, thermal already in (0, 1], height centred on the road.
DEFAULT_NORMS: dict[str, ModalityNorm] = {
    "rgb": ModalityNorm(255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "depth": ModalityNorm(40.0, (0.5,), (0.5,)),
    "disparity": ModalityNorm(64.0, (0.5,), (0.5,)),
    "thermal": ModalityNorm(1.0, (0.5,), (0.5,)),
    "height": ModalityNorm(1.0, (1.0,), (0.3,)),  # (code - 1) / 0.3 = residual height / 0.3 m
}


@dataclass
class ModelConfig:
    """Everything needed to rebuild a `FusionSegNet` and feed it correctly.

    The defaults describe the small demo network (MobileNetV3-Small at half
    width, 48-channel decoder): a few MB, trainable and runnable on a CPU. For a
    GPU car computer use e.g. ``encoder="resnet18", width_mult=1.0,
    decoder_channels=64``.

    `modalities[0]` is the primary stream (RTFNet-style): the fused features
    continue in it. `width_mult` only affects MobileNet encoders and is ignored
    for ResNets. `norms` is filled from `DEFAULT_NORMS` for modalities it lacks;
    entries for modalities the model does not use are dropped. `encoder_weights`
    maps a modality to a local torchvision state-dict file that initialises that
    stream's backbone at build time; nothing is ever downloaded.
    """

    modalities: tuple[str, ...] = ("rgb", "depth", "thermal")
    encoder: str = "mobilenet_v3_small"
    width_mult: float = 0.5
    fusion: str = "gated"
    decoder_channels: int = 48
    #: Channels of the stride-2 detail head (`road_seg_core.models.detail`); 0 = none, the logits come from the
    #: stride-4 classifier alone (every checkpoint before the head existed).
    detail_channels: int = 0
    num_classes: int = labels.NUM_CLASSES
    class_names: tuple[str, ...] = labels.CLASS_NAMES
    input_size: tuple[int, int] = (192, 320)
    norms: dict[str, ModalityNorm] = field(default_factory=dict)
    encoder_weights: dict[str, str] | None = None

    def __post_init__(self) -> None:
        # Accept the list forms YAML and JSON produce, so from_dict and hand-written configs agree.
        if isinstance(self.modalities, str):
            self.modalities = (self.modalities,)
        self.modalities = tuple(self.modalities)
        self.class_names = tuple(self.class_names)
        self.input_size = tuple(self.input_size)  # type: ignore[assignment]
        given = {name: ModalityNorm.from_dict(norm) for name, norm in (self.norms or {}).items()}
        self.norms = {m: given.get(m, DEFAULT_NORMS[m]) for m in self.modalities if m in DEFAULT_NORMS}
        if self.encoder_weights is not None:
            self.encoder_weights = {str(k): str(v) for k, v in self.encoder_weights.items()}

    @property
    def primary_modality(self) -> str:
        return self.modalities[0]

    def channels(self, modality: str) -> int:
        """Channel count of a modality's input tensor."""
        return MODALITY_CHANNELS[modality]

    def validate(self) -> "ModelConfig":
        """Raise one ValueError listing every problem, so a bad YAML is fixed in one go."""
        problems: list[str] = []
        if not self.modalities:
            problems.append("modalities is empty; use a non-empty subset of " + ", ".join(MODALITIES))
        unknown = [m for m in self.modalities if m not in MODALITY_CHANNELS]
        if unknown:
            problems.append(f"unknown modalities {unknown}; known: {', '.join(MODALITIES)}")
        if len(set(self.modalities)) != len(self.modalities):
            problems.append(f"modalities {list(self.modalities)} contain duplicates")
        if sum(m in DEPTH_LIKE for m in self.modalities) > 1:
            problems.append("use at most one of depth/disparity: both carry the same geometry")
        if self.encoder not in ENCODERS:
            problems.append(f"unknown encoder {self.encoder!r}; known: {', '.join(ENCODERS)}")
        if not (isinstance(self.width_mult, (int, float)) and math.isfinite(self.width_mult)
                and 0.1 <= self.width_mult <= 2.0):
            problems.append(f"width_mult must be a number in [0.1, 2.0], got {self.width_mult!r}")
        if self.fusion not in FUSIONS:
            problems.append(f"unknown fusion {self.fusion!r}; known: {', '.join(FUSIONS)}")
        if not (isinstance(self.decoder_channels, int) and self.decoder_channels >= 8):
            problems.append(f"decoder_channels must be an integer >= 8, got {self.decoder_channels!r}")
        if not (isinstance(self.detail_channels, int) and not isinstance(self.detail_channels, bool)
                and (self.detail_channels == 0 or self.detail_channels >= 4)):
            problems.append(f"detail_channels must be 0 (no detail head) or an integer >= 4, "
                            f"got {self.detail_channels!r}")
        if not (isinstance(self.num_classes, int) and self.num_classes >= 2):
            problems.append(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        elif len(self.class_names) != self.num_classes:
            problems.append(f"class_names has {len(self.class_names)} entries but num_classes is {self.num_classes}")
        if len(set(self.class_names)) != len(self.class_names) or not all(
                isinstance(n, str) and n for n in self.class_names):
            problems.append(f"class_names must be unique non-empty strings, got {list(self.class_names)}")
        if not (len(self.input_size) == 2 and all(isinstance(v, int) and v > 0 for v in self.input_size)):
            problems.append(f"input_size must be (height, width) positive integers, got {self.input_size!r}")
        elif any(v % OUTPUT_STRIDE for v in self.input_size):
            h, w = self.input_size
            problems.append(f"input_size {h}x{w} is not a multiple of {OUTPUT_STRIDE} "
                            f"(nearest: {_round_to_stride(h)}x{_round_to_stride(w)})")
        for name, norm in self.norms.items():
            channels = MODALITY_CHANNELS[name]
            if len(norm.mean) != channels or len(norm.std) != channels:
                problems.append(f"norms[{name!r}] needs {channels} mean/std values, got mean={list(norm.mean)} "
                                f"std={list(norm.std)}")
            if not norm.scale > 0 or not all(s > 0 for s in norm.std):
                problems.append(f"norms[{name!r}] scale and std must be > 0, got scale={norm.scale} "
                                f"std={list(norm.std)}")
        if self.encoder_weights:
            stray = sorted(set(self.encoder_weights) - set(self.modalities))
            if stray:
                problems.append(f"encoder_weights names modalities {stray} that the model does not use "
                                f"(modalities: {list(self.modalities)})")
        if problems:
            raise ValueError("invalid model config: " + "; ".join(problems))
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-able dict (lists, not tuples) that `from_dict` turns back into an equal config."""
        return {
            "modalities": list(self.modalities),
            "encoder": self.encoder,
            "width_mult": float(self.width_mult),
            "fusion": self.fusion,
            "decoder_channels": int(self.decoder_channels),
            "detail_channels": int(self.detail_channels),
            "num_classes": int(self.num_classes),
            "class_names": list(self.class_names),
            "input_size": [int(v) for v in self.input_size],
            "norms": {name: norm.to_dict() for name, norm in self.norms.items()},
            "encoder_weights": dict(self.encoder_weights) if self.encoder_weights else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        """Build and validate a config; unknown keys are an error so typos in YAML do not pass silently."""
        if not isinstance(data, Mapping):
            raise ValueError(f"model config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known: {', '.join(sorted(known))}")
        kwargs = dict(data)
        if "width_mult" in kwargs:
            kwargs["width_mult"] = float(kwargs["width_mult"])
        return cls(**kwargs).validate()


def _round_to_stride(value: int) -> int:
    return max(OUTPUT_STRIDE, int(round(value / OUTPUT_STRIDE)) * OUTPUT_STRIDE)
