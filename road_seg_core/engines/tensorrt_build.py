"""Building TensorRT engines from the exported ONNX, into the cache (`road_seg_core.export.engine_cache`).

Building takes seconds to minutes, so it happens once: the serialized engine is
cached under a key made of the ONNX file's hash, the TensorRT version, the GPU
model and compute capability, the precision and the batch profile, with a JSON
sidecar recording the key and the model metadata. `road-seg export --format
engine` and the node's `build_only` mode fill the cache ahead of time on the car.

Precision: TensorRT 8.6/10 builds fp16/int8 from the fp32 ONNX with builder
flags (int8 calibrated with an entropy calibrator on preprocessed frames, at
batch 1); fp32 clears TF32. TensorRT 11 removed the fp16/int8 flags in favour of
strongly typed networks; there the ONNX is first converted with NVIDIA ModelOpt
(fp16 AutoCast, or int8 Q/DQ quantization calibrated on the same frames).

`tensorrt` (always after torch) and CUDA are imported lazily: this module
imports on any machine and fails with one clear `EngineError` only when an
engine is actually requested.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from road_seg_core.atomic import atomic_write_bytes
from road_seg_core.engines.base import EngineError
from road_seg_core.export.engine_cache import (
    PRECISIONS,
    SIDECAR_FORMAT,
    engine_key,
    engine_path,
    sha256_file,
    sidecar_key,
    sidecar_path,
)
from road_seg_core.export.onnx_format import ExportError, OnnxInfo, read_onnx_info
from road_seg_core.models.config import MODALITY_CHANNELS

DEFAULT_WORKSPACE_BYTES = 2 << 30


# -- environment ----------------------------------------------------------------------------------------------------
def _import_tensorrt():
    """Import tensorrt, always after torch: loading TensorRT's libraries before torch's CUDA runtime is a known
    segfault order, and a library caller may well build an engine before it ever touched torch."""
    try:
        import torch  # noqa: F401 (import order only)
    except ImportError:
        pass  # require_tensorrt reports the missing torch
    try:
        import tensorrt
    except ImportError as exc:
        raise EngineError("the tensorrt backend needs NVIDIA TensorRT's Python package (pip install tensorrt, or "
                          "the JetPack/TensorRT install's python3-libnvinfer) on a machine with a CUDA GPU; "
                          f"import failed: {exc}") from exc
    return tensorrt


def require_tensorrt(device: str = "cuda") -> tuple[Any, Any, Any]:
    """(tensorrt, torch, torch.device) once both TensorRT and a CUDA device are usable; EngineError otherwise."""
    trt = _import_tensorrt()
    try:
        import torch
    except ImportError as exc:
        raise EngineError("the tensorrt backend uses torch CUDA tensors for its I/O; install torch with CUDA") from exc
    device = (device or "auto").strip().lower()
    if device == "auto":
        device = "cuda"
    if not device.startswith("cuda"):
        raise EngineError(f"TensorRT runs on CUDA devices only, got device {device!r}; use the onnxruntime or torch "
                          "backend on cpu")
    if not torch.cuda.is_available():
        raise EngineError(f"TensorRT {trt.__version__} is installed but no CUDA device is available to torch "
                          f"{torch.__version__} (CUDA {torch.version.cuda or 'not built'}); check the driver and "
                          f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}")
    torch_device = torch.device(device)
    index = torch_device.index if torch_device.index is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise EngineError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return trt, torch, torch.device("cuda", index)


def _trt_major(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


def _weakly_typed(trt) -> bool:
    """True where precision is chosen with builder flags (TensorRT <= 10); TensorRT 11 is strongly typed only."""
    return hasattr(trt.BuilderFlag, "FP16")


def gpu_identity(torch, device) -> dict[str, str]:
    """GPU model and compute capability: an engine is only valid on the GPU model it was tuned for."""
    major, minor = torch.cuda.get_device_capability(device)
    return {"gpu": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}


# -- cache keys (the key itself: road_seg_core.export.engine_cache) ----------------------------------------------
def _calibration_digest(batches: list[dict[str, np.ndarray]]) -> str:
    digest = hashlib.sha256()
    for batch in batches:
        for name in sorted(batch):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(batch[name]).tobytes())
    return digest.hexdigest()


# -- calibration data -----------------------------------------------------------------------------------------------
def synthetic_calibration_batches(info: OnnxInfo, frames: int = 64, seed: int = 0,
                                  conditions: tuple[str, ...] = ("day", "night", "fog"),
                                  ) -> list[dict[str, np.ndarray]]:
    """Calibration inputs: synthetic scenes of every lighting condition, through the node's own preprocessing.

    INT8 ranges must come from what the car feeds the network (sensor units, invalid pixels as 0), so the
    frames go through `Preprocessor` exactly as in the pipeline. Callers with recorded data can pass
    their own batches to `build_engine` instead.
    """
    from road_seg_core.preprocess import Preprocessor
    from road_seg_core.synthetic import render_scene

    h, w = info.input_size
    pre = Preprocessor(info.modalities, (h, w))
    batches = []
    for i in range(max(1, int(frames))):
        scene = render_scene(seed + i, width=2 * w, height=2 * h, condition=conditions[i % len(conditions)])
        inputs = pre(scene.frame)
        batches.append({m: np.ascontiguousarray(x, dtype=np.float32) for m, x in inputs.items()})
    return batches


# -- build settings (pure functions, so the choices are testable without TensorRT) ------------------------------------
Shape = tuple[int, int, int, int]


def profile_shapes(channels: int, input_size: tuple[int, int], max_batch: int = 1) -> tuple[Shape, Shape, Shape]:
    """(min, opt, max) of the optimisation profile: kernels are tuned for the opt shape, and the node runs
    batch 1, so opt is batch 1 whatever `max_batch` allows."""
    h, w = (int(v) for v in input_size)
    one = (1, int(channels), h, w)
    return one, one, (max(1, int(max_batch)), int(channels), h, w)


def calibration_shapes(channels: int, input_size: tuple[int, int]) -> tuple[Shape, Shape, Shape]:
    """(min, opt, max) of the INT8 calibration profile: TensorRT calibrates at the opt shape, and the
    calibrator hands one-frame buffers, so all three are batch 1."""
    h, w = (int(v) for v in input_size)
    one = (1, int(channels), h, w)
    return one, one, one


def precision_flags(precision: str, strongly_typed: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(BuilderFlag names to set, names to clear) for `precision`.

    fp32 clears TF32, which TensorRT enables by default: an "fp32" engine would otherwise round convolution
    and matmul inputs to 10-bit mantissas. Strongly typed networks (TensorRT 11) take reduced precision from
    the graph's own types, so fp16/int8 set no flag there.
    """
    if precision not in PRECISIONS:
        raise EngineError(f"unknown TensorRT precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return (), ("TF32",)
    if strongly_typed:
        return (), ()
    # int8 layers fall back to fp16, not fp32, where int8 loses
    return ("FP16", "INT8") if precision == "int8" else ("FP16",), ()


def apply_precision_flags(trt, config, precision: str, strongly_typed: bool) -> None:
    """Set and clear the builder flags `precision_flags` names (flags this TensorRT lacks are an error)."""
    to_set, to_clear = precision_flags(precision, strongly_typed)
    for name in to_set:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in to_clear:
        config.clear_flag(getattr(trt.BuilderFlag, name))


# -- building -------------------------------------------------------------------------------------------------------
def build_engine(onnx_path: str | os.PathLike, precision: str = "fp16", cache: str | os.PathLike | None = None,
                 device: str = "cuda", max_batch: int = 1,
                 calibration: Iterable[Mapping[str, np.ndarray]] | None = None,
                 workspace_bytes: int = DEFAULT_WORKSPACE_BYTES, rebuild: bool = False) -> Path:
    """Path of the cached engine for `onnx_path`, building it first if no valid one is cached.

    `max_batch` > 1 needs a dynamic ONNX export; spatial size is fixed at the export's input size (what the
    preprocessor produces). `calibration` (int8 only) yields ``{modality: (1, C, H, W) float32}`` batches.
    """
    trt, torch, torch_device = require_tensorrt(device)
    onnx_path = Path(onnx_path)
    try:
        info = read_onnx_info(onnx_path)
    except ExportError as exc:
        raise EngineError(str(exc)) from exc
    if precision not in PRECISIONS:
        raise EngineError(f"unknown TensorRT precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if max_batch < 1 or (max_batch > 1 and not info.dynamic):
        raise EngineError(f"max_batch {max_batch} needs a dynamic ONNX export (road-seg export --dynamic)")
    batches = None
    if precision == "int8":
        batches = list(calibration) if calibration is not None else synthetic_calibration_batches(info)
        if not batches:
            raise EngineError("int8 needs calibration batches; none were given")
    strongly_typed = not _weakly_typed(trt)
    extra = []
    if batches is not None:
        extra.append(f"calib:{_calibration_digest(batches)}")
    if strongly_typed and precision != "fp32":
        extra.append(f"modelopt:{_modelopt_version()}")
    key = engine_key(sha256_file(onnx_path), trt.__version__, **gpu_identity(torch, torch_device),
                     precision=precision, max_batch=max_batch, extra=";".join(extra))
    path = engine_path(onnx_path, key, cache)
    if not rebuild and path.is_file() and sidecar_key(path) == key:
        return path

    started = time.perf_counter()
    source = onnx_path
    if strongly_typed and precision != "fp32":
        source = _convert_for_strong_typing(onnx_path, precision, batches, path.with_suffix(f".{precision}.onnx"))
    with torch.cuda.device(torch_device):
        serialized = _build_serialized(trt, torch, torch_device, source, info, precision, max_batch, batches,
                                       workspace_bytes, strongly_typed, path.with_suffix(".calib"))
    atomic_write_bytes(path, serialized)
    sidecar = {
        "format": SIDECAR_FORMAT,
        "key": key,
        "onnx": str(onnx_path.resolve()),
        "config": info.config.to_dict(),
        "dynamic": info.dynamic,
        "checkpoint_sha256": info.checkpoint_sha256,
        "provenance": info.provenance,
        "built_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_bytes(sidecar_path(path), json.dumps(sidecar, indent=1, sort_keys=True).encode())
    return path


def _modelopt_version() -> str:
    try:
        import modelopt
    except ImportError:
        return "absent"
    return str(getattr(modelopt, "__version__", "unknown"))


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _convert_for_strong_typing(onnx_path: Path, precision: str, batches: list | None, out: Path) -> Path:
    """TensorRT 11+: reduced precision must be in the ONNX graph itself (ModelOpt AutoCast / Q/DQ).

    fp16 needs only ModelOpt's AutoCast; the quantizer (and what it imports) is loaded for int8 alone.
    """
    import onnx

    try:
        if precision == "fp16":
            from modelopt.onnx.autocast import convert_to_mixed_precision
        else:
            from modelopt.onnx.quantization import quantize
    except ImportError as exc:
        raise EngineError(
            f"TensorRT 11 builds strongly typed networks only: {precision} needs NVIDIA ModelOpt to convert the "
            f"ONNX first ({exc}). Install the nvidia-modelopt package without its [onnx] extra, whose pins "
            f"(onnx~=1.21, onnxruntime-gpu~=1.24) conflict with this project's onnx {_version('onnx')} and "
            f"onnxruntime {_version('onnxruntime')}, and add what its import reports missing; or use precision "
            "fp32") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    if precision == "fp16":
        model = convert_to_mixed_precision(onnx_path=str(onnx_path), low_precision_type="fp16", keep_io_types=True)
        onnx.save(model, str(out))
    else:
        data = {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}
        quantize(str(onnx_path), quantize_mode="int8", calibration_data=data, calibration_method="entropy",
                 output_path=str(out), high_precision_dtype="fp16")
    return out


def _build_serialized(trt, torch, torch_device, onnx_path: Path, info: OnnxInfo, precision: str, max_batch: int,
                      batches: list | None, workspace_bytes: int, strongly_typed: bool, calib_cache: Path) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if _trt_major(trt) < 10:  # explicit batch is the only mode from TensorRT 10 on
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") and _trt_major(trt) < 11:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        profile.set_shape(tensor.name, *profile_shapes(MODALITY_CHANNELS[tensor.name], info.input_size, max_batch))
    config.add_optimization_profile(profile)
    apply_precision_flags(trt, config, precision, strongly_typed)
    if not strongly_typed and precision == "int8":
        config.int8_calibrator = _entropy_calibrator(trt, torch, torch_device, batches, calib_cache)
        calibration = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            calibration.set_shape(tensor.name, *calibration_shapes(MODALITY_CHANNELS[tensor.name], info.input_size))
        if not config.set_calibration_profile(calibration):
            raise EngineError(f"TensorRT {trt.__version__} refused the batch-1 calibration profile")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path} "
                          f"({precision}); see the TensorRT log above")
    return bytes(memoryview(serialized))


def _entropy_calibrator(trt, torch, torch_device, batches: list, cache_file: Path):
    """An IInt8EntropyCalibrator2 feeding `batches` (one frame each) from GPU memory (TensorRT <= 10)."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches: Iterator = iter(batches)
            self._alive: list = []  # device tensors must outlive the get_batch call that returned their pointers

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None
            self._alive = [torch.from_numpy(np.ascontiguousarray(batch[n], np.float32)).to(torch_device)
                           for n in names]
            return [int(t.data_ptr()) for t in self._alive]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            atomic_write_bytes(cache_file, bytes(memoryview(cache)))

    return EntropyCalibrator()
