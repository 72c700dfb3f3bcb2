"""Where exported ONNX files and built TensorRT engines are cached, and the keys that keep stale ones out.

An entry's file name is its key: the ONNX export of a checkpoint is keyed by the
checkpoint's SHA-256, export size, axes, opset and format version; an engine by
the ONNX file's hash, the TensorRT version, the GPU model and compute
capability, the precision and the batch profile. Changing any of them gives a
different name, so a stale entry (other weights, other TensorRT, other GPU) is
never picked up. Entries are written atomically (`road_seg_core.atomic`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Mapping

from road_seg_core.export.exporter import export_onnx, sha256_file
from road_seg_core.export.onnx_format import DEFAULT_OPSET, ONNX_FORMAT_VERSION, ExportError, read_onnx_info

ENV_CACHE_DIR = "ROAD_SEG_CACHE_DIR"
PRECISIONS = ("fp32", "fp16", "int8")
SIDECAR_FORMAT = "road_seg_tensorrt_engine"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Where exported ONNX files and TensorRT engines are cached.

    `override`, else $ROAD_SEG_CACHE_DIR, else $XDG_CACHE_HOME/road_seg (~/.cache/road_seg). On a car,
    point it at persistent storage so an engine built once survives reboots.
    """
    if override:
        return Path(override)
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "road_seg"


# -- ONNX exports (what the onnxruntime and TensorRT backends load from a .pt) --------------------------------------
def cached_onnx(checkpoint: str | os.PathLike, cache: str | os.PathLike | None = None,
                input_size: tuple[int, int] | None = None, dynamic: bool = False,
                opset: int = DEFAULT_OPSET) -> Path:
    """The ONNX export of `checkpoint`, exported (and validated) on first use and reused after.

    Keyed by the checkpoint's SHA-256, the export size, dynamic axes, opset and `ONNX_FORMAT_VERSION`:
    retraining into the same path gives a new key, so a stale export is never picked up.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    digest = sha256_file(checkpoint)
    size = "native" if input_size is None else f"{int(input_size[0])}x{int(input_size[1])}"
    name = f"{checkpoint.stem}-{digest[:16]}-{size}{'-dyn' if dynamic else ''}-op{opset}-v{ONNX_FORMAT_VERSION}.onnx"
    path = cache_dir(cache) / "onnx" / name
    if path.is_file():
        try:
            info = read_onnx_info(path)
            if info.checkpoint_sha256 == digest:
                return path
        except ExportError:
            pass  # unreadable leftover: export again over it
    export_onnx(checkpoint, path, input_size=input_size, dynamic=dynamic, opset=opset, validate=True)
    return path


# -- TensorRT engines -----------------------------------------------------------------------------------------------
def engine_key(onnx_sha256: str, trt_version: str, gpu: str, compute_capability: str, precision: str,
               max_batch: int = 1, extra: str = "") -> dict[str, str]:
    """Everything an engine's validity depends on; all of it goes into the cached file's name."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown TensorRT precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return {"onnx_sha256": onnx_sha256, "tensorrt": str(trt_version), "gpu": gpu,
            "compute_capability": compute_capability, "precision": precision, "max_batch": str(int(max_batch)),
            "extra": extra}


def engine_filename(stem: str, key: Mapping[str, str]) -> str:
    """``<stem>-<onnx hash>-trt<ver>-<gpu>-sm<cc>-<precision>[-b<N>][-<extra hash>].engine``."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", key["gpu"]).strip("-").lower() or "gpu"
    cc = key["compute_capability"].replace(".", "")
    parts = [stem, key["onnx_sha256"][:16], f"trt{key['tensorrt']}", gpu, f"sm{cc}", key["precision"]]
    if key.get("max_batch", "1") != "1":
        parts.append(f"b{key['max_batch']}")
    if key.get("extra"):
        parts.append(hashlib.sha256(key["extra"].encode()).hexdigest()[:8])
    return "-".join(parts) + ".engine"


def engine_path(onnx_path: str | os.PathLike, key: Mapping[str, str], cache: str | os.PathLike | None = None) -> Path:
    """Where the engine built from `onnx_path` under `key` lives in the cache."""
    return cache_dir(cache) / "tensorrt" / engine_filename(Path(onnx_path).stem, key)


def sidecar_path(engine_file: str | os.PathLike) -> Path:
    """The JSON written next to every engine: its cache key and the model metadata."""
    return Path(str(engine_file) + ".json")


def sidecar_key(engine_file: str | os.PathLike) -> dict[str, str] | None:
    """The key an engine file was built under, from its sidecar; None if the sidecar is absent or foreign."""
    try:
        data = json.loads(sidecar_path(engine_file).read_text())
    except (OSError, ValueError):
        return None
    return data.get("key") if data.get("format") == SIDECAR_FORMAT else None
