"""Inference engines behind one factory: ``create_engine(path, backend=..., device=...)``.

Each backend is a small importer function in `Backends.IMPORTERS` (a typed
class-level map, as rosbags keeps its storage plugins): the importer imports
the backend's module only when that backend is requested and returns its
factory, so a machine without TensorRT (or without torch, for the onnxruntime
backend) can still import this package, and a reader or a type checker can
follow every name. A factory has the signature
``factory(model_path, device="...", **opts) -> InferenceEngine``.
"""
from __future__ import annotations

import logging
import os
from typing import Any, ClassVar, Protocol

from road_seg_core.engines.base import EngineError, InferenceEngine, ModelMeta

log = logging.getLogger(__name__)


class EngineFactory(Protocol):
    """What a backend provides: a model file (checkpoint, .onnx, .engine) loaded onto a device."""

    def __call__(self, model_path: str | os.PathLike, device: str = ..., **opts: Any) -> InferenceEngine: ...


class BackendImporter(Protocol):
    """Imports a backend's module (which may fail on this machine) and returns its factory."""

    def __call__(self) -> EngineFactory: ...


def _torch() -> EngineFactory:
    from road_seg_core.engines.torch_engine import create_torch_engine

    return create_torch_engine


def _onnxruntime() -> EngineFactory:
    from road_seg_core.engines.onnxruntime_engine import create_onnxruntime_engine

    return create_onnxruntime_engine


def _tensorrt() -> EngineFactory:
    from road_seg_core.engines.tensorrt_engine import create_tensorrt_engine

    return create_tensorrt_engine


class Backends:
    """The backend registry: name -> importer. Add built-ins here, others with `register_backend`."""

    IMPORTERS: ClassVar[dict[str, BackendImporter]] = {
        "torch": _torch,
        "onnxruntime": _onnxruntime,
        "tensorrt": _tensorrt,
    }

    @classmethod
    def factory(cls, backend: str) -> EngineFactory:
        importer = cls.IMPORTERS.get(backend)
        if importer is None:
            raise ValueError(f"unknown inference backend {backend!r}; known: {', '.join(available_backends())}")
        try:
            return importer()
        except ImportError as exc:
            raise EngineError(f"backend {backend!r} is not usable here: its import failed ({exc})") from exc


def register_backend(name: str, importer: BackendImporter, *, replace: bool = False) -> None:
    """Make `create_engine(..., backend=name)` use the factory `importer()` returns (imported on first use)."""
    if not name or not isinstance(name, str):
        raise ValueError(f"backend name must be a non-empty string, got {name!r}")
    if not callable(importer):
        raise ValueError(f"a backend is registered with an importer function returning its factory, got "
                         f"{importer!r}")
    if name in Backends.IMPORTERS and not replace:
        raise ValueError(f"backend {name!r} is already registered; pass replace=True to override it")
    Backends.IMPORTERS[name] = importer


def available_backends() -> tuple[str, ...]:
    """Registered backend names (registered, not necessarily installed)."""
    return tuple(sorted(Backends.IMPORTERS))


def create_engine(checkpoint_path: str | os.PathLike, backend: str = "torch", device: str = "cpu",
                  **opts: Any) -> InferenceEngine:
    """Load a model file into the named backend; `opts` go to the backend (e.g. ``fp16=True`` for torch).

    ``device="auto"`` picks CUDA when the backend can use a GPU here and the CPU otherwise, so one
    parameters file serves the car and a laptop replaying bags.
    """
    factory = Backends.factory(backend)
    return factory(checkpoint_path, device=resolve_auto_device(device, backend), **opts)


def resolve_auto_device(device: str, backend: str = "torch") -> str:
    """"auto" -> "cuda" where `backend` can run on a GPU here, else "cpu"; other values are returned unchanged.

    A GPU visible to torch is not enough for onnxruntime: its CPU-only package has no CUDA provider, and
    asking it for cuda would fail at start. That case falls back to the CPU with one log line.
    """
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        torch = None
    gpu = torch is not None and torch.cuda.is_available()
    if backend != "onnxruntime":
        return "cuda" if gpu else "cpu"
    try:
        import onnxruntime
    except ImportError:
        return "cpu"  # the backend reports the missing package itself
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return "cuda"
    if gpu:
        log.warning("device auto: a CUDA GPU is visible but onnxruntime %s has no CUDA provider "
                    "(install onnxruntime-gpu to use it); running onnxruntime on the cpu", onnxruntime.__version__)
    return "cpu"


__all__ = ["BackendImporter", "Backends", "EngineError", "EngineFactory", "InferenceEngine", "ModelMeta",
           "available_backends", "create_engine", "register_backend", "resolve_auto_device"]
