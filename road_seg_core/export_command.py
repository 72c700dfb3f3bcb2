"""`road-seg export`: arguments and dispatch only; the work is in `road_seg_core.export` and the TensorRT backend."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from road_seg_core.arg_types import non_negative_int, positive_int
from road_seg_core.errors import UserError
from road_seg_core.export.engine_cache import ENV_CACHE_DIR, cached_onnx, sidecar_path
from road_seg_core.export.exporter import export_onnx
from road_seg_core.export.onnx_format import DEFAULT_OPSET, OUTPUT_NAME, ExportError, read_onnx_info


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="", help="road_seg .pt checkpoint (default: the bundled model)")
    parser.add_argument("--format", choices=("onnx", "engine"), default="onnx",
                        help="onnx: a self-describing .onnx file; engine: build (and cache) a TensorRT engine")
    parser.add_argument("--out", default="", help="output file (onnx default: <checkpoint stem>.onnx; engine: "
                                                  "also copy the cached engine and its .json sidecar here)")
    parser.add_argument("--height", type=non_negative_int, default=0,
                        help="input height (multiple of 32; default: trained)")
    parser.add_argument("--width", type=non_negative_int, default=0,
                        help="input width (multiple of 32; default: trained)")
    parser.add_argument("--dynamic", action="store_true", help="symbolic batch, height and width axes")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--no-validate", action="store_true", help="skip the onnxruntime-vs-torch parity check")
    parser.add_argument("--precision", choices=("fp16", "fp32", "int8"), default="fp16",
                        help="TensorRT precision (engine format)")
    parser.add_argument("--max-batch", type=positive_int, default=1, help="largest batch of the TensorRT profile "
                                                                 "(needs --dynamic when > 1)")
    parser.add_argument("--calibration-frames", type=positive_int, default=64,
                        help="int8: synthetic scenes run through the preprocessor for calibration")
    parser.add_argument("--cache-dir", default="", help=f"cache directory (default ${ENV_CACHE_DIR} or "
                                                        "~/.cache/road_seg)")
    parser.add_argument("--device", default="cuda", help="CUDA device for the TensorRT build")


def run(args: argparse.Namespace) -> int:
    from road_seg_core.bundled import resolve_model

    try:
        checkpoint = resolve_model(args.checkpoint or None)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    if (args.height > 0) != (args.width > 0):
        raise UserError(f"--height {args.height} --width {args.width}: give both, or neither")
    size = (args.height, args.width) if args.height > 0 else None
    try:
        if args.format == "onnx":
            out = Path(args.out or f"{checkpoint.stem}.onnx")
            report = export_onnx(checkpoint, out, input_size=size, dynamic=args.dynamic, opset=args.opset,
                                 validate=not args.no_validate)
            info = read_onnx_info(out)
            h, w = info.input_size
            shape = f"BxHxW (dynamic batch, height and width; exported at {h}x{w})" if info.dynamic else f"{h}x{w}"
            print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): inputs {', '.join(info.modalities)} at "
                  f"{shape} -> {OUTPUT_NAME} over {', '.join(info.class_names)}")
            print("onnx.checker: ok; " + (str(report) if report else "parity check skipped (--no-validate)"))
            return 0
        return _run_engine(args, checkpoint, size)
    except (ExportError, FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None


def _run_engine(args: argparse.Namespace, checkpoint: Path, size: tuple[int, int] | None) -> int:
    from road_seg_core.engines.base import EngineError
    from road_seg_core.engines import tensorrt_build

    if args.max_batch > 1 and not args.dynamic:
        raise UserError(f"--max-batch {args.max_batch} needs --dynamic")
    try:
        tensorrt_build.require_tensorrt(args.device)
        onnx_path = cached_onnx(checkpoint, args.cache_dir or None, size, args.dynamic, args.opset)
        calibration = None
        if args.precision == "int8":
            calibration = tensorrt_build.synthetic_calibration_batches(read_onnx_info(onnx_path),
                                                                       args.calibration_frames)
        engine_path = tensorrt_build.build_engine(onnx_path, precision=args.precision, cache=args.cache_dir or None,
                                                  device=args.device, max_batch=args.max_batch,
                                                  calibration=calibration)
    except EngineError as exc:
        raise UserError(str(exc)) from None
    print(f"TensorRT engine ready: {engine_path} (from {onnx_path})")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(engine_path, out)
        shutil.copyfile(sidecar_path(engine_path), sidecar_path(out))
        print(f"copied to {out} (+ {sidecar_path(out).name})")
    return 0
