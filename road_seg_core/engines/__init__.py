"""Inference engines behind one factory: ``create_engine(path, backend=..., device=...)``.

Backends are registered by name as ``"module:function"`` strings and imported
only when requested, so a machine without TensorRT (or without torch, for the
onnxruntime backend) can still import this package. A backend factory has the
signature ``factory(checkpoint_path, device="...", **opts) -> InferenceEngine``.
"""
from __future__ import annotations

import importlib
import os
from typing import Any, Callable

from road_seg_core.engines.base import EngineError, InferenceEngine, ModelMeta

EngineFactory = Callable[..., InferenceEngine]

#: Built-in backends. Add new ones here (or at run time with `register_backend`) as "module:function".
_BACKENDS: dict[str, str | EngineFactory] = {
    "torch": "road_seg_core.engines.torch_engine:create_torch_engine",
    "onnxruntime": "road_seg_core.engines.onnxruntime_engine:create_onnxruntime_engine",
    "tensorrt": "road_seg_core.engines.tensorrt_engine:create_tensorrt_engine",
}


def register_backend(name: str, factory: str | EngineFactory, *, replace: bool = False) -> None:
    """Make `create_engine(..., backend=name)` use `factory` (a callable or a lazy "module:function" path)."""
    if not name or not isinstance(name, str):
        raise ValueError(f"backend name must be a non-empty string, got {name!r}")
    if name in _BACKENDS and not replace:
        raise ValueError(f"backend {name!r} is already registered; pass replace=True to override it")
    if isinstance(factory, str) and ":" not in factory:
        raise ValueError(f"lazy backend path must look like 'package.module:function', got {factory!r}")
    _BACKENDS[name] = factory


def available_backends() -> tuple[str, ...]:
    """Registered backend names (registered, not necessarily installed)."""
    return tuple(sorted(_BACKENDS))


def create_engine(checkpoint_path: str | os.PathLike, backend: str = "torch", device: str = "cpu",
                  **opts: Any) -> InferenceEngine:
    """Load a model file into the named backend; `opts` go to the backend (e.g. ``fp16=True`` for torch).

    ``device="auto"`` picks CUDA when a GPU is visible and the CPU otherwise, so one
    parameters file serves the car and a laptop replaying bags.
    """
    factory = _factory(backend)
    return factory(checkpoint_path, device=resolve_auto_device(device), **opts)


def resolve_auto_device(device: str) -> str:
    """"auto" -> "cuda" if torch sees a GPU, else "cpu"; any other value is returned unchanged."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def _factory(backend: str) -> EngineFactory:
    entry = _BACKENDS.get(backend)
    if entry is None:
        raise ValueError(f"unknown inference backend {backend!r}; known: {', '.join(available_backends())}")
    if callable(entry):
        return entry
    module_name, _, attribute = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineError(f"backend {backend!r} is not usable here: importing {module_name} failed ({exc})") from exc
    return getattr(module, attribute)


__all__ = ["EngineError", "EngineFactory", "InferenceEngine", "ModelMeta", "available_backends", "create_engine",
           "register_backend"]
