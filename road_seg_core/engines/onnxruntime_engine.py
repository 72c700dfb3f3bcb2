"""ONNX Runtime backend: the exported graph on the CUDA provider where present, the CPU provider otherwise.

On a CPU it is the fastest backend (graph-level fusion of conv+BN+activation,
no Python in the loop), and it needs no torch when given a ``.onnx`` file: the
file's road_seg metadata describes the model (`road_seg_core.export.onnx_format`). Given a
``.pt`` checkpoint it exports it once into the cache, keyed by the checkpoint's
hash, and loads that.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from road_seg_core.engines.base import EngineError, InferenceEngine, ModelMeta
from road_seg_core.export.engine_cache import cached_onnx
from road_seg_core.export.onnx_format import (
    LABELS_NAME,
    OUTPUT_NAME,
    ExportError,
    OnnxInfo,
    read_onnx_info,
    with_labels_output,
)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineError("the onnxruntime backend needs the onnxruntime package "
                          "(pip install onnxruntime, or onnxruntime-gpu for CUDA)") from exc
    return onnxruntime


def select_providers(device: str) -> tuple[list, str]:
    """(providers for InferenceSession, resolved device) for "auto", "cpu", "cuda" or "cuda:N"."""
    ort = _import_ort()
    available = ort.get_available_providers()
    device = (device or "auto").strip().lower()
    if device == "cpu":
        return [CPU], "cpu"
    if device == "auto":
        return ([CUDA, CPU], "cuda:0") if CUDA in available else ([CPU], "cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if CUDA not in available:
            raise EngineError(f"device {device!r} requested but onnxruntime {ort.__version__} has no CUDA provider "
                              f"(available: {', '.join(available)}); install onnxruntime-gpu or use device cpu")
        index = int(device.partition(":")[2] or 0)
        return [(CUDA, {"device_id": index}), CPU], f"cuda:{index}"
    raise EngineError(f"onnxruntime engine supports devices auto, cpu, cuda[:N]; got {device!r}")


class OnnxRuntimeEngine(InferenceEngine):
    """Runs an exported road_seg ONNX file. Static exports take batch 1 at `meta.input_size`;
    larger batches are run one sample at a time. Dynamic exports take any batch and size.

    Label maps come from an argmax inside the graph (`with_labels_output`). With the CUDA provider, runs go
    through I/O binding (`io_binding=None` means: where CUDA runs), so the session neither allocates
    its outputs per call nor brings the logits back to the host: only the uint8 labels are copied out.
    """

    backend = "onnxruntime"

    def __init__(self, onnx_path: str | os.PathLike, device: str = "auto", threads: int | None = None,
                 spin: bool = False, info: OnnxInfo | None = None, io_binding: bool | None = None) -> None:
        import onnx

        ort = _import_ort()
        self.onnx_path = Path(onnx_path)
        try:
            self.info = info or read_onnx_info(self.onnx_path)
        except ExportError as exc:
            raise EngineError(str(exc)) from exc
        providers, resolved = select_providers(device)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
        # Spinning worker threads keep a core busy after each run; in a node that shares the CPU with DDS
        # and other nodes that costs more than it saves (measured: 29 -> 22 ms p50 and 20 -> 11 ms CPU per
        # frame on a loaded 2-core machine without it).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            graph = with_labels_output(onnx.load(str(self.onnx_path))).SerializeToString()
            self.session = ort.InferenceSession(graph, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files and providers
            raise EngineError(f"onnxruntime cannot load {self.onnx_path}: {exc}") from exc
        if resolved.startswith("cuda") and CUDA not in self.session.get_providers():
            raise EngineError(f"onnxruntime could not start its CUDA provider for {self.onnx_path} "
                              "(check the CUDA/cuDNN libraries onnxruntime-gpu needs)")
        self.fixed_input_size = not self.info.dynamic
        super().__init__(ModelMeta.from_config(self.info.config), resolved, "fp32")
        self._names = list(self.meta.modalities)
        self.io_binding = resolved.startswith("cuda") if io_binding is None else bool(io_binding)

    def _forward(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self._output(OUTPUT_NAME, inputs)

    def infer_labels(self, inputs) -> np.ndarray:
        return self._output(LABELS_NAME, self.prepare_inputs(inputs))

    @property
    def sensor_device(self) -> str | None:
        """The CUDA device of the session where torch can preprocess on it too; None on the CPU."""
        if not self.device.startswith("cuda"):
            return None
        try:
            import torch
        except ImportError:
            return None
        return self.device if torch.cuda.is_available() else None

    def infer_labels_and_logits(self, inputs) -> tuple[np.ndarray, np.ndarray]:
        labels, logits = self._outputs((LABELS_NAME, OUTPUT_NAME), self.prepare_inputs(inputs))  # one run
        return labels, logits

    def infer_labels_on_device(self, inputs) -> np.ndarray:
        """Labels for torch tensors (CPU or CUDA), bound by address: no copy through numpy, no host round trip."""
        return self._outputs_on_device((LABELS_NAME,), inputs)[0]

    def infer_labels_and_logits_on_device(self, inputs) -> tuple[np.ndarray, np.ndarray]:
        labels, logits = self._outputs_on_device((LABELS_NAME, OUTPUT_NAME), inputs)
        return labels, logits

    def _outputs_on_device(self, names: tuple[str, ...], inputs) -> list[np.ndarray]:
        import torch

        missing = sorted(set(self.meta.modalities) - set(inputs))
        if missing:
            raise ValueError(f"inputs lack {missing}")
        tensors = {m: inputs[m].to(torch.float32).contiguous() for m in self.meta.modalities}
        batch = next(iter(tensors.values())).shape[0]
        if batch != 1 and not self.info.dynamic:
            runs = [self._outputs_on_device(names, {k: v[i:i + 1] for k, v in tensors.items()}) for i in range(batch)]
            return [np.concatenate(parts) for parts in zip(*runs)]
        if any(t.is_cuda for t in tensors.values()):
            torch.cuda.current_stream().synchronize()  # onnxruntime runs on its own stream
        binding = self.session.io_binding()
        for name, tensor in tensors.items():
            kind = "cuda" if tensor.is_cuda else "cpu"
            binding.bind_input(name, kind, tensor.device.index or 0, np.float32, tuple(tensor.shape),
                               tensor.data_ptr())
        for name in names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def _output(self, name: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self._outputs((name,), inputs)[0]

    def _outputs(self, names: tuple[str, ...], inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        batch = next(iter(inputs.values())).shape[0]
        if self.info.dynamic or batch == 1:
            return self._run(names, inputs)
        # A static graph was traced at batch 1: run the samples one by one rather than refuse the batch.
        runs = [self._run(names, {k: v[i:i + 1] for k, v in inputs.items()}) for i in range(batch)]
        return [np.concatenate(parts) for parts in zip(*runs)]

    def _run(self, names: tuple[str, ...], inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        if not self.io_binding:
            return self.session.run(list(names), inputs)
        binding = self.session.io_binding()
        for input_name, array in inputs.items():
            binding.bind_cpu_input(input_name, array)
        for name in names:
            binding.bind_output(name, "cpu")  # computed on the device; only these outputs are copied back
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", providers={self.session.get_providers()}, file={str(self.onnx_path)!r})"


def create_onnxruntime_engine(model_path: str | os.PathLike, device: str = "auto", threads: int | None = None,
                              cache_dir: str | os.PathLike | None = None, input_size: tuple[int, int] | None = None,
                              dynamic: bool = False, spin: bool = False,
                              io_binding: bool | None = None) -> OnnxRuntimeEngine:
    """Registry entry "onnxruntime": a ``.onnx`` file is loaded as is; a ``.pt`` checkpoint is exported to
    the cache first (validated against PyTorch, reused while the checkpoint's hash is unchanged)."""
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    select_providers(device)  # fail on a missing provider before a possibly slow export
    if path.suffix.lower() != ".onnx":
        try:
            path = cached_onnx(path, cache_dir, input_size=input_size, dynamic=dynamic)
        except ExportError as exc:
            raise EngineError(f"cannot export {model_path} for onnxruntime: {exc}") from exc
    return OnnxRuntimeEngine(path, device=device, threads=threads, spin=spin, io_binding=io_binding)
