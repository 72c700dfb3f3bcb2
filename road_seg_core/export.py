"""`road-seg export`: a checkpoint as a self-describing ONNX file, or a cached TensorRT engine.

The ONNX graph takes the raw sensor tensors named after the checkpoint's
modalities (``rgb`` (B,3,H,W) 0..255, ``depth`` metres, ``disparity`` pixels,
``thermal`` (0, 1]; 0 = no data) and returns ``logits`` (B,K,H,W): the
normalisation and validity masking are part of the network, so a runtime needs
no glue code. Everything the checkpoint knows (model config, classes,
normalisation, input size, provenance) is stored as JSON in the ONNX
``metadata_props`` under `METADATA_KEY`, so the file alone is enough to build
an engine and feed it (`read_onnx_info`).

Every export is checked twice before it is trusted: ``onnx.checker`` on the
graph, and onnxruntime against PyTorch on the same inputs (`ParityReport`).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import shutil
import sys
import uuid
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from road_seg_core.models.config import MODALITY_CHANNELS, MODALITY_RANGES, OUTPUT_STRIDE, ModelConfig

#: metadata_props key holding the JSON description of an exported model.
METADATA_KEY = "road_seg"
ONNX_FORMAT = "road_seg_onnx"
#: Bump when the exported graph or its metadata change meaning; it is part of the ONNX cache key.
ONNX_FORMAT_VERSION = 1
#: Opset 17 is what TensorRT 8.6+ and onnxruntime 1.14+ parse fully (LayerNorm-free graph, bilinear Resize).
DEFAULT_OPSET = 17
OUTPUT_NAME = "logits"
#: Parity thresholds: |Δlogits| <= atol + rtol * max|logits|, and argmax labels agreeing on >= 99.9 % of pixels.
PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-4
PARITY_MIN_AGREEMENT = 0.999

ENV_CACHE_DIR = "ROAD_SEG_CACHE_DIR"


class ExportError(RuntimeError):
    """An export failed, or its result does not match PyTorch."""


@dataclass(frozen=True)
class OnnxInfo:
    """What an exported ONNX file says about itself (from its metadata_props)."""

    config: ModelConfig  # input_size is the exported size
    dynamic: bool  # batch and spatial axes are symbolic
    provenance: dict[str, Any] = field(default_factory=dict)
    checkpoint_sha256: str = ""
    opset: int = DEFAULT_OPSET

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.config.modalities)

    @property
    def input_size(self) -> tuple[int, int]:
        return (int(self.config.input_size[0]), int(self.config.input_size[1]))

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.config.class_names)


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


# -- hashing and the cache ------------------------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (cache keys: a changed file never matches an old entry)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a unique sibling temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# -- metadata -------------------------------------------------------------------------------------------------------
def onnx_metadata(config: ModelConfig, dynamic: bool, provenance: Mapping[str, Any], checkpoint_sha256: str,
                  opset: int) -> dict[str, Any]:
    """The JSON stored under `METADATA_KEY`: enough to rebuild the model's contract without the checkpoint."""
    return {
        "format": ONNX_FORMAT,
        "format_version": ONNX_FORMAT_VERSION,
        "config": config.to_dict(),
        # Duplicated from the config so a viewer (Netron, onnx.load) shows what the file is at a glance.
        "modalities": list(config.modalities),
        "class_names": list(config.class_names),
        "input_size": [int(v) for v in config.input_size],
        "norms": {name: norm.to_dict() for name, norm in config.norms.items()},
        "inputs": {m: {"shape": ["B" if dynamic else 1, MODALITY_CHANNELS[m],
                                 "H" if dynamic else int(config.input_size[0]),
                                 "W" if dynamic else int(config.input_size[1])],
                       "units": _UNITS[m]} for m in config.modalities},
        "output": {"name": OUTPUT_NAME, "shape": ["B", config.num_classes, "H", "W"], "units": "logits"},
        "dynamic": bool(dynamic),
        "opset": int(opset),
        "checkpoint_sha256": checkpoint_sha256,
        "provenance": dict(provenance),
    }


_UNITS = {"rgb": "RGB 0..255", "depth": "metres, 0 = no data", "disparity": "pixels at input width, 0 = no data",
          "thermal": "(0, 1], 0 = no data",
          "height": "metres above a datum 1 m below the fitted road plane, 0 = no data"}


def read_onnx_info(path: str | os.PathLike) -> OnnxInfo:
    """Parse the road_seg metadata of an ONNX file (without loading its weights into a runtime)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ExportError(f"{path}: cannot be read as ONNX ({type(exc).__name__}: {exc})") from exc
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ExportError(f"{path}: no '{METADATA_KEY}' metadata; export it with `road-seg export` so the file "
                          "carries its modalities, classes and input size")
    try:
        meta = json.loads(props[METADATA_KEY])
        if meta.get("format") != ONNX_FORMAT:
            raise ValueError(f"format is {meta.get('format')!r}, expected {ONNX_FORMAT!r}")
        if int(meta.get("format_version", -1)) > ONNX_FORMAT_VERSION:
            raise ValueError(f"format_version {meta['format_version']} is newer than this road_seg "
                             f"({ONNX_FORMAT_VERSION})")
        config = ModelConfig.from_dict(meta["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{path}: invalid road_seg metadata: {exc}") from exc
    graph_inputs = [i.name for i in model.graph.input]
    if graph_inputs != list(config.modalities):
        raise ExportError(f"{path}: graph inputs {graph_inputs} do not match the metadata's modalities "
                          f"{list(config.modalities)}")
    return OnnxInfo(config=config, dynamic=bool(meta.get("dynamic", False)),
                    provenance=dict(meta.get("provenance") or {}),
                    checkpoint_sha256=str(meta.get("checkpoint_sha256", "")), opset=int(meta.get("opset", 0)))


# -- export ---------------------------------------------------------------------------------------------------------
def _checked_size(size: tuple[int, int] | None, config: ModelConfig) -> tuple[int, int]:
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
    model, ckpt = load_model(checkpoint, device="cpu")
    size = _checked_size(input_size, ckpt.config)
    config = replace(ckpt.config, input_size=size)
    wrapper = OrderedInputs(model).eval()
    names = wrapper.input_names
    example = model.example_inputs(batch_size=1, input_size=size)
    axes = {name: {0: "batch", 2: "height", 3: "width"} for name in names + [OUTPUT_NAME]} if dynamic else None
    buffer = io.BytesIO()
    with _quiet_export(), torch.no_grad():
        torch.onnx.export(wrapper, example, buffer, input_names=names, output_names=[OUTPUT_NAME],
                          opset_version=int(opset), dynamic_axes=axes, do_constant_folding=True, dynamo=False)
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
    out = {}
    for m in modalities:
        c = MODALITY_CHANNELS[m]
        noise = rng.random((batch, c, h, w), dtype=np.float32)
        x = (0.6 * ramp + 0.4 * noise) * MODALITY_RANGES[m]
        if c == 1:
            x = np.where(rng.random((batch, 1, h, w)) < 0.1, 0.0, np.maximum(x, 1e-3 * MODALITY_RANGES[m]))
        out[m] = np.ascontiguousarray(x, dtype=np.float32)
    return out


# -- cached exports (what the onnxruntime and TensorRT backends load from a .pt) ------------------------------------
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


# -- command line ---------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="", help="road_seg .pt checkpoint (default: the bundled model)")
    parser.add_argument("--format", choices=("onnx", "engine"), default="onnx",
                        help="onnx: a self-describing .onnx file; engine: build (and cache) a TensorRT engine")
    parser.add_argument("--out", default="", help="output file (onnx default: <checkpoint stem>.onnx; engine: "
                                                  "also copy the cached engine and its .json sidecar here)")
    parser.add_argument("--height", type=int, default=0, help="input height (multiple of 32; default: trained)")
    parser.add_argument("--width", type=int, default=0, help="input width (multiple of 32; default: trained)")
    parser.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width axes")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--no-validate", action="store_true", help="skip the onnxruntime-vs-torch parity check")
    parser.add_argument("--precision", choices=("fp16", "fp32", "int8"), default="fp16",
                        help="TensorRT precision (engine format)")
    parser.add_argument("--max-batch", type=int, default=1, help="largest batch of the TensorRT profile "
                                                                 "(needs --dynamic when > 1)")
    parser.add_argument("--calibration-frames", type=int, default=64,
                        help="int8: synthetic scenes run through the preprocessor for calibration")
    parser.add_argument("--cache-dir", default="", help=f"cache directory (default ${ENV_CACHE_DIR} or "
                                                        "~/.cache/road_seg)")
    parser.add_argument("--device", default="cuda", help="CUDA device for the TensorRT build")


def run(args: argparse.Namespace) -> int:
    from road_seg_core.bundled import resolve_model
    from road_seg_core.checkpoint import CheckpointError

    try:
        checkpoint = resolve_model(args.checkpoint or None)
    except FileNotFoundError as exc:
        print(f"road-seg export: {exc}", file=sys.stderr)
        return 2
    if (args.height > 0) != (args.width > 0):
        print("road-seg export: give both --height and --width, or neither", file=sys.stderr)
        return 2
    size = (args.height, args.width) if args.height > 0 else None
    try:
        if args.format == "onnx":
            out = Path(args.out or f"{checkpoint.stem}.onnx")
            report = export_onnx(checkpoint, out, input_size=size, dynamic=args.dynamic, opset=args.opset,
                                 validate=not args.no_validate)
            info = read_onnx_info(out)
            h, w = info.input_size
            print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): inputs "
                  f"{', '.join(info.modalities)} at {'Bx' if info.dynamic else ''}{h}x{w}"
                  f"{' (dynamic)' if info.dynamic else ''} -> {OUTPUT_NAME} over {', '.join(info.class_names)}")
            print("onnx.checker: ok; " + (str(report) if report else "parity check skipped (--no-validate)"))
            return 0
        return _run_engine(args, checkpoint, size)
    except (ExportError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"road-seg export: {exc}", file=sys.stderr)
        return 1


def _run_engine(args: argparse.Namespace, checkpoint: Path, size: tuple[int, int] | None) -> int:
    from road_seg_core.engines.base import EngineError
    from road_seg_core.engines import tensorrt_engine as trt_engine

    if args.max_batch > 1 and not args.dynamic:
        print("road-seg export: --max-batch > 1 needs --dynamic", file=sys.stderr)
        return 2
    try:
        trt_engine.require_tensorrt(args.device)
        onnx_path = cached_onnx(checkpoint, args.cache_dir or None, size, args.dynamic, args.opset)
        calibration = None
        if args.precision == "int8":
            calibration = trt_engine.synthetic_calibration_batches(read_onnx_info(onnx_path),
                                                                   args.calibration_frames)
        engine_path = trt_engine.build_engine(onnx_path, precision=args.precision, cache=args.cache_dir or None,
                                              device=args.device, max_batch=args.max_batch,
                                              calibration=calibration)
    except EngineError as exc:
        print(f"road-seg export: {exc}", file=sys.stderr)
        return 1
    print(f"TensorRT engine ready: {engine_path} (from {onnx_path})")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(engine_path, out)
        shutil.copyfile(trt_engine.sidecar_path(engine_path), trt_engine.sidecar_path(out))
        print(f"copied to {out} (+ {trt_engine.sidecar_path(out).name})")
    return 0
