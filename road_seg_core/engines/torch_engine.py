"""PyTorch backend: the reference engine, and the one that runs wherever torch does.

On CUDA it uses fp16 autocast, channels_last (what tensor cores want) and
cuDNN autotuning; on CPU it runs fp32, also channels_last. Everything runs
under `torch.inference_mode`, and the argmax for label maps is taken on the
device so only H*W bytes come back per frame.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor, nn

from road_seg_core.engines.base import EngineError, InferenceEngine, ModelMeta


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse and check a device string ("cpu", "cuda", "cuda:1"), failing clearly when CUDA is not there."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise EngineError(f"invalid torch device {device!r}: {exc}") from exc
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise EngineError(f"torch engine supports cpu and cuda devices, got {device!r}")
    if not torch.cuda.is_available():
        built = torch.version.cuda or "no CUDA"
        raise EngineError(f"device {device!r} requested but CUDA is not available "
                          f"(torch {torch.__version__} built with {built}; check the driver and "
                          f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})")
    count = torch.cuda.device_count()
    if resolved.index is not None and resolved.index >= count:
        raise EngineError(f"device {device!r} requested but only {count} CUDA device(s) are visible")
    return resolved


class TorchEngine(InferenceEngine):
    """Runs a `FusionSegNet` (or any module taking ``{modality: tensor}``) with numpy I/O.

    `fp16=None` means fp16 autocast on CUDA and fp32 on CPU; asking for fp16 on
    CPU is an error rather than a silent fallback, so a config that says fp16
    really gets it.
    """

    backend = "torch"
    accepts_uint8 = True

    def __init__(self, model: nn.Module, meta: ModelMeta, device: str | torch.device = "cpu",
                 fp16: bool | None = None) -> None:
        torch_device = resolve_device(device)
        on_cuda = torch_device.type == "cuda"
        use_fp16 = on_cuda if fp16 is None else bool(fp16)
        if use_fp16 and not on_cuda:
            raise EngineError("fp16 inference needs a CUDA device; use fp16=False (or None) on cpu")
        super().__init__(meta, str(torch_device), "fp16" if use_fp16 else "fp32")
        self.torch_device = torch_device
        self.fp16 = use_fp16
        # channels_last is what tensor cores want on CUDA and oneDNN's fast layout on CPU too
        # (this model at 192x320 on one CPU thread: 61.6 -> 47.4 ms p50).
        self.memory_format = torch.channels_last
        if on_cuda:
            torch.backends.cudnn.benchmark = True  # fixed input size: convolutions are autotuned once, in warmup
        self.model = model.to(torch_device, memory_format=self.memory_format).eval()

    def _forward(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self._logits(inputs).cpu().numpy()

    def infer_labels(self, inputs) -> np.ndarray:
        logits = self._logits(self.prepare_inputs(inputs))
        return logits.argmax(dim=1).to(torch.uint8).cpu().numpy()

    def infer_labels_and_logits(self, inputs) -> tuple[np.ndarray, np.ndarray]:
        return _labels_and_logits(self._logits(self.prepare_inputs(inputs)))

    @property
    def sensor_device(self) -> str | None:
        return str(self.torch_device) if self.torch_device.type == "cuda" else None

    def infer_labels_on_device(self, inputs) -> np.ndarray:
        return self._device_logits(inputs).argmax(dim=1).to(torch.uint8).cpu().numpy()

    def infer_labels_and_logits_on_device(self, inputs) -> tuple[np.ndarray, np.ndarray]:
        return _labels_and_logits(self._device_logits(inputs))

    def _device_logits(self, inputs) -> Tensor:
        unknown = sorted(set(inputs) - set(self.meta.modalities))
        if unknown:
            raise ValueError(f"inputs {unknown} are not modalities of this model")
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
            tensors = {name: tensor.to(self.torch_device, non_blocking=True).contiguous(
                memory_format=self.memory_format) for name, tensor in inputs.items()}
            return self.model(tensors).float()

    def _logits(self, inputs: dict[str, np.ndarray]) -> Tensor:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16):
            tensors = {name: self._to_device(array) for name, array in inputs.items()}
            return self.model(tensors).float()

    def _to_device(self, array: np.ndarray) -> Tensor:
        if not array.flags.writeable:  # torch.from_numpy warns on read-only buffers (e.g. from ROS messages)
            array = array.copy()
        tensor = torch.from_numpy(array).to(self.torch_device, non_blocking=True)
        return tensor.contiguous(memory_format=self.memory_format)


def _labels_and_logits(logits: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The argmax taken where the logits are, then both on the host."""
    return logits.argmax(dim=1).to(torch.uint8).cpu().numpy(), logits.cpu().numpy()


def create_torch_engine(checkpoint_path: str | os.PathLike, device: str = "cpu",
                        fp16: bool | None = None, threads: int | None = None) -> TorchEngine:
    """Load a road_seg checkpoint into a `TorchEngine` (the "torch" entry of the backend registry).

    `threads` sets torch's intra-op CPU threads (process-wide). On a CPU shared with
    DDS and other nodes, fewer threads than cores is often much faster: OpenMP
    workers that spin-wait for a descheduled sibling stall every layer.
    """
    from road_seg_core.checkpoint import load_model

    if threads:
        torch.set_num_threads(int(threads))
    # Zero inputs (a dead sensor, warm-up) drive activations into denormals, 10x slower on x86 CPUs.
    torch.set_flush_denormal(True)

    torch_device = resolve_device(device)  # fail on a missing GPU before reading a large file
    model, checkpoint = load_model(checkpoint_path, device="cpu")
    return TorchEngine(model, ModelMeta.from_config(checkpoint.config), torch_device, fp16=fp16)
