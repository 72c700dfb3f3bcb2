"""TensorRT backend: a cached engine (built by `tensorrt_build`) run with torch CUDA tensors for I/O.

A ``.engine`` is loaded only with the sidecar key it was built under and only on
the TensorRT version and GPU model of that key; a ``.onnx`` or ``.pt`` is built
into the cache first. Inputs are uploaded into device buffers reused frame to
frame (uint8 colour stays uint8 over the bus), every shape and address handed
to the execution context is checked, and label maps are the argmax on the GPU.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from road_seg_core.engines.base import EngineError, InferenceEngine, ModelMeta
from road_seg_core.engines.tensorrt_build import build_engine, gpu_identity, require_tensorrt
from road_seg_core.export.engine_cache import SIDECAR_FORMAT, cached_onnx, sidecar_path
from road_seg_core.export.onnx_format import OUTPUT_NAME, ExportError
from road_seg_core.models.config import ModelConfig


def set_input_shape(context, name: str, shape: tuple[int, ...], engine_path: Path) -> None:
    """`IExecutionContext.set_input_shape`, whose False (shape outside the profile) would otherwise leave the
    previous shape in place and run on it."""
    if not context.set_input_shape(name, tuple(int(v) for v in shape)):
        raise EngineError(f"{engine_path}: TensorRT refused input shape {tuple(shape)} for {name!r} (outside the "
                          "engine's optimisation profile; rebuild with a larger max_batch or at this input size)")


# -- running --------------------------------------------------------------------------------------------------------
class TensorRTEngine(InferenceEngine):
    """Runs a serialized TensorRT engine. Inputs are uploaded as they come (uint8 rgb stays uint8 over the
    bus) into device buffers reused frame to frame, cast on the GPU, and the argmax for label maps is taken
    on the GPU so only H*W bytes come back."""

    backend = "tensorrt"
    accepts_uint8 = True

    def __init__(self, engine_path: str | os.PathLike, device: str = "cuda") -> None:
        trt, torch, torch_device = require_tensorrt(device)
        self._torch = torch
        self.engine_path = Path(engine_path)
        sidecar = self._read_sidecar(trt, torch, torch_device)
        config = ModelConfig.from_dict(sidecar["config"])
        self.dynamic = bool(sidecar.get("dynamic", False))
        self.key = sidecar["key"]
        self.fixed_input_size = True  # profiles are built at the export's input size
        super().__init__(ModelMeta.from_config(config), str(torch_device), self.key["precision"])
        self.torch_device = torch_device
        self._logger = trt.Logger(trt.Logger.WARNING)
        with torch.cuda.device(torch_device):
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if self._engine is None:
                raise EngineError(f"TensorRT {trt.__version__} cannot deserialize {self.engine_path}; rebuild it "
                                  "(road-seg export --format engine)")
            self._context = self._engine.create_execution_context()
            self._stream = torch.cuda.Stream(torch_device)
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if sorted(inputs) != sorted(self.meta.modalities) or OUTPUT_NAME not in names:
            raise EngineError(f"{self.engine_path}: engine tensors {names} do not match the model's modalities "
                              f"{list(self.meta.modalities)} + {OUTPUT_NAME}")
        self._dtypes = {n: _torch_dtype(trt, torch, self._engine.get_tensor_dtype(n)) for n in names}
        self._max_batch = int(self.key.get("max_batch", "1"))
        self._buffers: dict[str, Any] = {}

    def _read_sidecar(self, trt, torch, torch_device) -> dict[str, Any]:
        path = sidecar_path(self.engine_path)
        if not self.engine_path.is_file():
            raise EngineError(f"TensorRT engine not found: {self.engine_path}")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise EngineError(f"{self.engine_path}: missing or unreadable sidecar {path.name}; an engine is only "
                              "loaded with the key it was built under (build it with road-seg export --format "
                              "engine)") from exc
        key = data.get("key") or {}
        here = {"tensorrt": str(trt.__version__), **gpu_identity(torch, torch_device)}
        stale = {k: (key.get(k), v) for k, v in here.items() if key.get(k) != v}
        if data.get("format") != SIDECAR_FORMAT or stale:
            detail = ", ".join(f"{k} {old!r} != {new!r} here" for k, (old, new) in stale.items())
            raise EngineError(f"{self.engine_path} is stale for this machine ({detail or 'not a road_seg engine'}); "
                              "rebuild it from the ONNX or checkpoint")
        return data

    def _logits(self, inputs: dict[str, np.ndarray]):
        """Logits (B, K, H, W) on the GPU, in the engine's output dtype, after the stream finished."""
        torch = self._torch
        batch = next(iter(inputs.values())).shape[0]
        if batch > self._max_batch:  # a batch-1 engine runs larger batches sample by sample
            # clone: every run writes the same reused output buffer
            return torch.cat([self._logits({k: v[i:i + 1] for k, v in inputs.items()}).clone() for i in range(batch)])
        with torch.cuda.device(self.torch_device), torch.cuda.stream(self._stream):
            for name, array in inputs.items():
                buffer = self._buffer(name, tuple(array.shape), self._dtypes[name])
                if isinstance(array, torch.Tensor):  # already on the device (SensorPreprocessor): copy there
                    buffer.copy_(array)
                    array = array.detach()
                else:
                    if not array.flags.writeable:
                        array = array.copy()
                    host = torch.from_numpy(array)
                    if host.dtype == buffer.dtype:
                        buffer.copy_(host, non_blocking=True)
                    else:  # upload in the sender's dtype (uint8 rgb: a quarter of the bytes), cast on the GPU
                        buffer.copy_(host.to(self.torch_device, non_blocking=True))
                set_input_shape(self._context, name, array.shape, self.engine_path)
                if not self._context.set_tensor_address(name, int(buffer.data_ptr())):
                    raise EngineError(f"{self.engine_path}: TensorRT refused the buffer address of {name!r}")
            out_shape = tuple(self._context.get_tensor_shape(OUTPUT_NAME))
            output = self._buffer(OUTPUT_NAME, out_shape, self._dtypes[OUTPUT_NAME])
            if not self._context.set_tensor_address(OUTPUT_NAME, int(output.data_ptr())):
                raise EngineError(f"{self.engine_path}: TensorRT refused the buffer address of {OUTPUT_NAME!r}")
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise EngineError(f"TensorRT execution failed for {self.engine_path}")
            return output

    def _buffer(self, name: str, shape: tuple[int, ...], dtype):
        buffer = self._buffers.get(name)
        if buffer is None or tuple(buffer.shape) != tuple(shape):
            buffer = self._torch.empty(shape, dtype=dtype, device=self.torch_device)
            self._buffers[name] = buffer
        return buffer

    def _forward(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with self._torch.cuda.stream(self._stream):
            logits = self._logits(inputs).float().cpu()
        return logits.numpy()

    def infer_labels(self, inputs) -> np.ndarray:
        with self._torch.cuda.stream(self._stream):
            labels = self._logits(self.prepare_inputs(inputs)).argmax(dim=1).to(self._torch.uint8).cpu()
        return labels.numpy()

    def infer_labels_and_logits(self, inputs) -> tuple[np.ndarray, np.ndarray]:
        with self._torch.cuda.stream(self._stream):
            return self._labels_and_logits(self._logits(self.prepare_inputs(inputs)))

    @property
    def sensor_device(self) -> str | None:
        return str(self.torch_device)

    def infer_labels_on_device(self, inputs) -> np.ndarray:
        with self._torch.cuda.stream(self._stream):
            labels = self._device_logits(inputs).argmax(dim=1).to(self._torch.uint8).cpu()
        return labels.numpy()

    def infer_labels_and_logits_on_device(self, inputs) -> tuple[np.ndarray, np.ndarray]:
        with self._torch.cuda.stream(self._stream):
            return self._labels_and_logits(self._device_logits(inputs))

    def _labels_and_logits(self, logits) -> tuple[np.ndarray, np.ndarray]:
        """The argmax taken on the GPU, then labels and float32 logits on the host (call on the engine's stream)."""
        return logits.argmax(dim=1).to(self._torch.uint8).cpu().numpy(), logits.float().cpu().numpy()

    def _device_logits(self, inputs):
        """`_logits` for torch tensors from `SensorPreprocessor`, ordered after the stream that made them."""
        missing = sorted(set(self.meta.modalities) - set(inputs))
        if missing:
            raise ValueError(f"inputs lack {missing}")
        # the preprocessing ran on torch's current stream; the engine's stream must see its results
        self._stream.wait_stream(self._torch.cuda.current_stream(self.torch_device))
        return self._logits({m: inputs[m] for m in self.meta.modalities})

    def close(self) -> None:
        self._buffers.clear()
        self._context = None
        self._engine = None


def _torch_dtype(trt, torch, trt_dtype):
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int8: torch.int8,
             trt.bool: torch.bool}
    for trt_name, torch_dtype in (("uint8", torch.uint8), ("int64", torch.int64), ("bfloat16", torch.bfloat16)):
        if hasattr(trt, trt_name):
            table[getattr(trt, trt_name)] = torch_dtype
    if trt_dtype not in table:
        raise EngineError(f"unsupported TensorRT tensor dtype {trt_dtype}")
    return table[trt_dtype]


def create_tensorrt_engine(model_path: str | os.PathLike, device: str = "cuda", precision: str = "fp16",
                           cache_dir: str | os.PathLike | None = None, max_batch: int = 1,
                           input_size: tuple[int, int] | None = None, dynamic: bool = False,
                           rebuild: bool = False) -> TensorRTEngine:
    """Registry entry "tensorrt": a ``.engine`` (with its sidecar) is loaded after checking its key; a ``.onnx``
    or ``.pt`` is built into the cache first (the ``.pt`` via its cached ONNX export) unless a valid engine is
    already there."""
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    require_tensorrt(device)  # a clear error before any export work on a machine without TensorRT/CUDA
    suffix = path.suffix.lower()
    if suffix == ".engine":
        return TensorRTEngine(path, device=device)
    if suffix != ".onnx":
        try:
            path = cached_onnx(path, cache_dir, input_size=input_size, dynamic=dynamic or max_batch > 1)
        except ExportError as exc:
            raise EngineError(f"cannot export {model_path} for TensorRT: {exc}") from exc
    engine_path = build_engine(path, precision=precision, cache=cache_dir, device=device, max_batch=max_batch,
                               rebuild=rebuild)
    return TensorRTEngine(engine_path, device=device)
