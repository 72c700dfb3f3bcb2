"""Torch -> ONNX: a checkpoint exported as a self-describing road_seg ONNX file (`onnx_format`).

Every export is checked twice before it is trusted: ``onnx.checker`` on the
graph, and onnxruntime against PyTorch on the same inputs (`ParityReport`);
the file is written (atomically) only once both pass.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from road_seg_core.atomic import atomic_write_bytes
from road_seg_core.export.onnx_format import (DEFAULT_OPSET, METADATA_KEY, MIN_OPSET, OUTPUT_NAME, ExportError,
                                              onnx_metadata)
from road_seg_core.models.config import MODALITY_CHANNELS, MODALITY_RANGES, OUTPUT_STRIDE

#: Parity thresholds: |Δlogits| <= atol + rtol * max|logits|, and argmax labels agreeing on >= 99.9 % of pixels.
PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-4
PARITY_MIN_AGREEMENT = 0.999


@dataclass(frozen=True)
class ParityReport:
    """How closely a runtime reproduces PyTorch on one batch of inputs."""

    backend: str
    batch: int
    input_size: tuple[int, int]
    max_abs_diff: float
    max_abs_logit: float
    label_agreement: float  # fraction of pixels with the same argmax

    @property
    def tolerance(self) -> float:
        return PARITY_ATOL + PARITY_RTOL * self.max_abs_logit

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.label_agreement >= PARITY_MIN_AGREEMENT

    def __str__(self) -> str:
        h, w = self.input_size
        return (f"{self.backend} vs torch at {self.batch}x{h}x{w}: max |Δlogits| {self.max_abs_diff:.2e} "
                f"(tolerance {self.tolerance:.2e}, max |logit| {self.max_abs_logit:.2f}), "
                f"label agreement {100 * self.label_agreement:.3f} %")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (cache keys: a changed file never matches an old entry)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()



# -- export ---------------------------------------------------------------------------------------------------------
def _checked_size(size: tuple[int, int] | None, config: Any) -> tuple[int, int]:
    h, w = (int(v) for v in (size or config.input_size))
    if h <= 0 or w <= 0 or h % OUTPUT_STRIDE or w % OUTPUT_STRIDE:
        raise ExportError(f"export size {h}x{w} must be positive multiples of {OUTPUT_STRIDE}")
    return h, w


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """The TorchScript exporter warns about deprecation and tracer details that say nothing about this graph."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike, input_size: tuple[int, int] | None = None,
                dynamic: bool = False, opset: int = DEFAULT_OPSET, validate: bool = True) -> ParityReport | None:
    """Export a checkpoint to `out`; returns the onnxruntime-vs-torch parity report (None if `validate` is off).

    `input_size` (H, W) overrides the training size (fully convolutional, so any multiple of 32 works, at the
    accuracy the receptive field allows). `dynamic` makes batch, height and width symbolic. Raises
    `ExportError` if onnx.checker rejects the graph or onnxruntime disagrees with PyTorch; the file is only
    written (atomically) once both checks pass.
    """
    import onnx
    import torch

    from road_seg_core.checkpoint import load_model
    from road_seg_core.models.fusion_segnet import OrderedInputs

    checkpoint = Path(checkpoint)
    if int(opset) < MIN_OPSET:
        raise ExportError(f"opset {opset}: road_seg graphs need opset >= {MIN_OPSET} (default {DEFAULT_OPSET})")
    model, ckpt = load_model(checkpoint, device="cpu")
    size = _checked_size(input_size, ckpt.config)
    config = replace(ckpt.config, input_size=size)
    wrapper = OrderedInputs(model).eval()
    names = wrapper.input_names
    example = model.example_inputs(batch_size=1, input_size=size)
    axes = {name: {0: "batch", 2: "height", 3: "width"} for name in names + [OUTPUT_NAME]} if dynamic else None
    buffer = io.BytesIO()
    try:
        with _quiet_export(), torch.no_grad():
            torch.onnx.export(wrapper, example, buffer, input_names=names, output_names=[OUTPUT_NAME],
                              opset_version=int(opset), dynamic_axes=axes, do_constant_folding=True, dynamo=False)
    except RuntimeError as exc:
        if "Unsupported onnx_opset_version" not in str(exc):
            raise
        raise ExportError(f"opset {opset}: torch {torch.__version__} cannot export it "
                          f"(default {DEFAULT_OPSET})") from None
    proto = onnx.load_from_string(buffer.getvalue())
    provenance = {
        **ckpt.provenance,
        "exported_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "exported_from": str(checkpoint.resolve()),
        "export_torch_version": str(torch.__version__),
        "export_onnx_version": str(onnx.__version__),
        "trained_input_size": [int(v) for v in ckpt.config.input_size],
    }
    metadata = onnx_metadata(config, dynamic, provenance, sha256_file(checkpoint), opset)
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata, sort_keys=True)
    proto.producer_name = "road_seg"
    proto.doc_string = (f"road_seg FusionSegNet ({config.encoder}, {'+'.join(config.modalities)}) -> logits over "
                        f"{', '.join(config.class_names)}; inputs in sensor units, see metadata '{METADATA_KEY}'")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.checker rejected the export of {checkpoint}: {exc}") from exc
    data = proto.SerializeToString()
    report = None
    if validate:
        report = check_parity(data, model, size, batch=2 if dynamic else 1)
        if not report.ok:
            raise ExportError(f"export of {checkpoint} does not match PyTorch: {report}")
        if dynamic:  # a symbolic size must really work at another size, not only at the traced one
            other = (size[0] + OUTPUT_STRIDE, size[1] + 2 * OUTPUT_STRIDE)
            second = check_parity(data, model, other, batch=1)
            if not second.ok:
                raise ExportError(f"dynamic export of {checkpoint} fails at {other[0]}x{other[1]}: {second}")
    atomic_write_bytes(Path(out), data)
    return report


def check_parity(onnx_model: bytes | str | os.PathLike, model: Any, input_size: tuple[int, int],
                 batch: int = 1, seed: int = 0) -> ParityReport:
    """Run onnxruntime (CPU) and the PyTorch model on the same random sensor-like inputs and compare."""
    import onnxruntime as ort
    import torch

    source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a one-off check: no thread pool spinning against the caller's threads
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    inputs = sensor_like_inputs(tuple(model.modalities), input_size, batch, seed)
    with torch.inference_mode():
        reference = model({m: torch.from_numpy(x) for m, x in inputs.items()}).float().numpy()
    actual = session.run([OUTPUT_NAME], inputs)[0]
    return compare_logits(actual, reference, "onnxruntime", input_size)


def compare_logits(actual: np.ndarray, reference: np.ndarray, backend: str,
                   input_size: tuple[int, int]) -> ParityReport:
    """Parity figures of `actual` logits against `reference` (both (B,K,H,W))."""
    if actual.shape != reference.shape:
        raise ExportError(f"{backend} returned logits of shape {actual.shape}, torch {reference.shape}")
    actual = actual.astype(np.float32, copy=False)
    agreement = float(np.mean(actual.argmax(axis=1) == reference.argmax(axis=1)))
    return ParityReport(backend=backend, batch=int(actual.shape[0]), input_size=tuple(input_size),
                        max_abs_diff=float(np.max(np.abs(actual - reference))),
                        max_abs_logit=float(np.max(np.abs(reference))), label_agreement=agreement)


def sensor_like_inputs(modalities: tuple[str, ...], size: tuple[int, int], batch: int,
                   seed: int) -> dict[str, np.ndarray]:
    """Sensor-like inputs: smooth structure (so the network sees edges and regions), ~10 % invalid pixels."""
    rng = np.random.default_rng(seed)
    h, w = size
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
    ranges = MODALITY_RANGES
    out = {}
    for m in modalities:
        c = MODALITY_CHANNELS[m]
        noise = rng.random((batch, c, h, w), dtype=np.float32)
        x = (0.6 * ramp + 0.4 * noise) * ranges[m]
        if c == 1:
            x = np.where(rng.random((batch, 1, h, w)) < 0.1, 0.0, np.maximum(x, 1e-3 * ranges[m]))
        out[m] = np.ascontiguousarray(x, dtype=np.float32)
    return out
