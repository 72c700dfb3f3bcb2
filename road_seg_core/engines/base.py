"""Backend-independent inference interface: numpy in, numpy out.

The pipeline talks to every backend (torch, onnxruntime, TensorRT) through
`InferenceEngine`, so switching backends is a config change. Input checking
and filling of absent modalities live here once, so every backend rejects the
same mistakes with the same messages and treats a dead sensor the same way.
This module does not import torch.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from road_seg_core.models.config import MODALITY_CHANNELS, OUTPUT_STRIDE, ModelConfig


class EngineError(RuntimeError):
    """An engine cannot be created or run as asked (device absent, backend not installed, bad engine file)."""


@dataclass(frozen=True)
class ModelMeta:
    """What a caller needs to feed an engine and read its output."""

    modalities: tuple[str, ...]
    class_names: tuple[str, ...]
    input_size: tuple[int, int]  # (H, W) the model was trained and exported at
    config: ModelConfig

    @classmethod
    def from_config(cls, config: ModelConfig) -> "ModelMeta":
        return cls(modalities=tuple(config.modalities), class_names=tuple(config.class_names),
                   input_size=(int(config.input_size[0]), int(config.input_size[1])), config=config)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def channels(self, modality: str) -> int:
        return MODALITY_CHANNELS[modality]


class InferenceEngine(abc.ABC):
    """A loaded model on a device. Subclasses implement `_forward` on complete, checked inputs.

    Inputs are ``{modality: array (B, C, H, W)}`` following the project tensor
    conventions (rgb 0..255 float32 or uint8; depth m, disparity px, thermal
    (0, 1] as float32; 0 = no data). A modality of the model that is absent from
    the dict is fed as zeros, i.e. "sensor down". H and W must be multiples of
    32; engines with a static graph (`fixed_input_size`) need exactly
    `meta.input_size`.
    """

    #: Backend name as used by `create_engine`.
    backend: str = ""
    #: Whether `_forward` takes uint8 rgb as is (saves a host-side conversion and 3/4 of the upload).
    accepts_uint8: bool = False
    #: Whether the engine only runs at `meta.input_size` (static ONNX/TensorRT graphs).
    fixed_input_size: bool = False

    def __init__(self, meta: ModelMeta, device: str, precision: str) -> None:
        self.meta = meta
        self.device = device
        self.precision = precision

    @abc.abstractmethod
    def _forward(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Logits float32 (B, K, H, W) for inputs already checked and completed by `prepare_inputs`."""

    def infer(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Logits float32 (B, K, H, W)."""
        return self._forward(self.prepare_inputs(inputs))

    def infer_labels(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Class ids uint8 (B, H, W); backends override this to take the argmax on the device."""
        return np.argmax(self.infer(inputs), axis=1).astype(np.uint8)

    def infer_labels_and_logits(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Class ids uint8 (B, H, W) and logits float32 (B, K, H, W) of one run: for checks that read the
        network's confidence (the pothole filter's thermal corroboration)."""
        logits = self.infer(inputs)
        return np.argmax(logits, axis=1).astype(np.uint8), logits

    @property
    def sensor_device(self) -> str | None:
        """The torch device where sensor preprocessing should run to feed this engine without a host round trip
        (`road_seg_core.engines.sensor_preprocess`); None where the host (OpenCV) path is the one to use."""
        return None

    def infer_labels_on_device(self, inputs: Mapping[str, Any]) -> np.ndarray:
        """Class ids uint8 (B, H, W) for complete inputs given as torch tensors ({modality: (B, C, H, W) float32},
        as `SensorPreprocessor` makes them, on `sensor_device` or the CPU)."""
        raise NotImplementedError(f"the {self.backend} engine takes numpy inputs only")

    def infer_labels_and_logits_on_device(self, inputs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """`infer_labels_and_logits` for torch tensor inputs as `infer_labels_on_device` takes them; both come
        back to the host (the logits are K times the labels' bytes in float32)."""
        raise NotImplementedError(f"the {self.backend} engine takes numpy inputs only")

    def infer_frame_labels(self, frame: Any, preprocessor: Any) -> np.ndarray:
        """Class ids uint8 (1, H, W) for a `SensorFrame` at sensor resolution: `preprocessor`
        (a `SensorPreprocessor` on `sensor_device`) runs inside the engine call, then the network."""
        return self.infer_labels_on_device(preprocessor(frame))

    def infer_frame_labels_and_logits(self, frame: Any, preprocessor: Any) -> tuple[np.ndarray, np.ndarray, Any]:
        """`infer_frame_labels` with the logits, and the inputs the network was fed (`preprocessor`'s tensors,
        on `sensor_device`), for checks that read them."""
        inputs = preprocessor(frame)
        labels, logits = self.infer_labels_and_logits_on_device(inputs)
        return labels, logits, inputs

    def warmup(self, iterations: int = 2) -> None:
        """Run a few frames so allocation, autotuning and lazy initialisation happen before real data."""
        inputs = self.zero_inputs()
        for _ in range(max(0, int(iterations))):
            self.infer(inputs)

    def zero_inputs(self, batch_size: int = 1) -> dict[str, np.ndarray]:
        """All-zero inputs at the model's input size (every sensor "down")."""
        height, width = self.meta.input_size
        return {m: np.zeros((batch_size, MODALITY_CHANNELS[m], height, width), np.float32)
                for m in self.meta.modalities}

    def prepare_inputs(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check shapes and dtypes, fill absent modalities with zeros; returns arrays in `meta.modalities` order."""
        unknown = sorted(set(inputs) - set(self.meta.modalities))
        if unknown:
            raise ValueError(f"inputs {unknown} are not modalities of this model "
                             f"(expects {', '.join(self.meta.modalities)})")
        present = [m for m in self.meta.modalities if m in inputs]
        if not present:
            raise ValueError(f"no input given; expected some of: {', '.join(self.meta.modalities)}")
        arrays: dict[str, np.ndarray] = {}
        reference: tuple[str, tuple[int, ...]] | None = None
        for modality in present:
            array = np.asarray(inputs[modality])
            channels = MODALITY_CHANNELS[modality]
            if array.ndim != 4 or array.shape[1] != channels:
                raise ValueError(f"{modality} must be (B, {channels}, H, W), got shape {array.shape}")
            shape = (array.shape[0], array.shape[2], array.shape[3])
            if reference is None:
                reference = (modality, shape)
            elif shape != reference[1]:
                raise ValueError(f"{modality} has batch/size {'x'.join(map(str, shape))} but {reference[0]} has "
                                 f"{'x'.join(map(str, reference[1]))}")
            arrays[modality] = np.ascontiguousarray(self._convert_dtype(modality, array))
        assert reference is not None
        batch, height, width = reference[1]
        if batch < 1 or height % OUTPUT_STRIDE or width % OUTPUT_STRIDE or height == 0 or width == 0:
            raise ValueError(f"input batch/size {batch}x{height}x{width}: need batch >= 1 and H, W positive "
                             f"multiples of {OUTPUT_STRIDE} (model input size {self.meta.input_size})")
        if self.fixed_input_size and (height, width) != tuple(self.meta.input_size):
            raise ValueError(f"{self.backend} engine runs at {self.meta.input_size[0]}x{self.meta.input_size[1]} "
                             f"only, got {height}x{width}")
        return {m: arrays[m] if m in arrays else
                np.zeros((batch, MODALITY_CHANNELS[m], height, width), np.float32)
                for m in self.meta.modalities}

    def _convert_dtype(self, modality: str, array: np.ndarray) -> np.ndarray:
        if array.dtype == np.float32:
            return array
        if array.dtype == np.uint8 and modality == "rgb":
            return array if self.accepts_uint8 else array.astype(np.float32)
        if np.issubdtype(array.dtype, np.floating):
            return array.astype(np.float32)
        accepted = "float32 or uint8" if modality == "rgb" else "float32"
        raise ValueError(f"{modality} must be {accepted} in sensor units, got {array.dtype}")

    def close(self) -> None:
        """Release device resources (no-op unless a backend holds any)."""

    def __enter__(self) -> "InferenceEngine":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(backend={self.backend!r}, device={self.device!r}, "
                f"precision={self.precision!r}, modalities={self.meta.modalities}, input_size={self.meta.input_size})")
