"""Model-only speed of the inference backends (no ROS): ``python -m road_seg_core.bench``.

Times `InferenceEngine.infer_labels` — what the pipeline calls per frame: inputs
as the preprocessor produces them (uint8 rgb, float32 depth/thermal) in, a
uint8 label map out — for every backend and precision this machine can run.
A backend that cannot run here is listed with the reason instead of failing
the whole benchmark. `road-seg bench` (road_seg_ros.bench) reuses this and adds
the node's per-stage costs and sensor-rate runs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from road_seg_core.arg_types import non_negative_int, positive_int
from road_seg_core.export.exporter import sensor_like_inputs

BACKENDS = ("torch", "onnxruntime", "tensorrt")


@dataclass
class BackendResult:
    """Latency of one backend/precision; `skipped` holds the reason when it could not run here."""

    backend: str
    precision: str
    device: str = ""
    input_size: tuple[int, int] = (0, 0)
    batch: int = 1
    iterations: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    fps: float | None = None  # frames per second at this batch size, sequential calls
    load_s: float | None = None  # engine creation (export / engine build on a cold cache)
    skipped: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Variant:
    backend: str
    precision: str
    options: tuple[tuple[str, Any], ...] = ()


def variants(backends: Sequence[str], device: str, int8: bool = False) -> list[Variant]:
    """Backend/precision combinations worth timing on `device` ("cpu" or "cuda[:N]")."""
    on_cuda = device.startswith("cuda")
    out: list[Variant] = []
    for backend in backends:
        if backend == "torch":
            out.append(Variant("torch", "fp32", (("fp16", False),)))
            if on_cuda:
                out.append(Variant("torch", "fp16", (("fp16", True),)))
        elif backend == "onnxruntime":
            out.append(Variant("onnxruntime", "fp32"))
        elif backend == "tensorrt":
            for precision in ("fp16", "fp32") + (("int8",) if int8 else ()):
                out.append(Variant("tensorrt", precision, (("precision", precision),)))
        else:
            raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    return out


def resolve_device(device: str) -> str:
    from road_seg_core.engines import resolve_auto_device

    return resolve_auto_device(device)


def load_engine(checkpoint: str | os.PathLike, variant: Variant, device: str,
                input_size: tuple[int, int] | None = None, cache_dir: str | os.PathLike | None = None,
                threads: int = 0):
    """An engine for `variant` at `input_size` (default: the checkpoint's own); `threads` > 0 sets the CPU
    threads of torch (process-wide) and onnxruntime."""
    from road_seg_core.engines import create_engine

    opts = dict(variant.options)
    if threads > 0 and variant.backend == "torch":
        import torch

        torch.set_num_threads(threads)
    if threads > 0 and variant.backend == "onnxruntime":
        opts["threads"] = threads
    if variant.backend == "torch":
        if input_size is None:
            return create_engine(checkpoint, backend="torch", device=device, **opts)
        # The torch engine runs any size; give it the size in its meta so callers feed that size.
        from road_seg_core.checkpoint import load_model
        from road_seg_core.engines.base import ModelMeta
        from road_seg_core.engines.torch_engine import TorchEngine

        model, ckpt = load_model(checkpoint)
        meta = ModelMeta.from_config(replace(ckpt.config, input_size=tuple(input_size)))
        return TorchEngine(model, meta, device, **opts)
    extra = {"cache_dir": cache_dir}
    if input_size is not None:
        extra["input_size"] = tuple(input_size)
    return create_engine(checkpoint, backend=variant.backend, device=device, **opts, **extra)


def time_engine(engine, iterations: int = 100, warmup: int = 10, batch: int = 1,
                max_seconds: float = 30.0) -> np.ndarray:
    """Milliseconds per `infer_labels` call over `iterations` calls (fewer if `max_seconds` runs out)."""
    inputs = sensor_like_inputs(tuple(engine.meta.modalities), tuple(engine.meta.input_size), batch, seed=1)
    inputs["rgb"] = np.clip(inputs["rgb"].round(), 0, 255).astype(np.uint8)
    for _ in range(max(1, warmup)):
        engine.infer_labels(inputs)
    samples = []
    deadline = time.perf_counter() + max_seconds
    for _ in range(max(1, iterations)):
        start = time.perf_counter()
        engine.infer_labels(inputs)
        samples.append((time.perf_counter() - start) * 1e3)
        if time.perf_counter() > deadline and len(samples) >= 10:
            break
    return np.asarray(samples)


def bench_backends(checkpoint: str | os.PathLike, backends: Sequence[str] = BACKENDS, device: str = "auto",
                   input_size: tuple[int, int] | None = None, batch: int = 1, iterations: int = 100,
                   warmup: int = 10, cache_dir: str | os.PathLike | None = None, int8: bool = False,
                   threads: int = 0, rounds: int = 5, log=print) -> list[BackendResult]:
    """Time every variant of `backends`; unavailable ones come back with `skipped` set.

    The engines are timed in interleaved rounds, so a change of machine load (other processes, thermal
    throttling) during the run affects every backend alike instead of whichever ran at that moment.
    """
    from road_seg_core.engines.base import EngineError

    device = resolve_device(device)
    results: list[BackendResult] = []
    engines = []
    for variant in variants(backends, device, int8):
        result = BackendResult(variant.backend, variant.precision, device=device, batch=batch)
        results.append(result)
        start = time.perf_counter()
        try:
            engine = load_engine(checkpoint, variant, device, input_size, cache_dir, threads)
        except (EngineError, ImportError, ValueError, RuntimeError) as exc:
            result.skipped = f"{type(exc).__name__}: {exc}"  # said once, under format_table's table
            result.device = "-"  # it ran nowhere
            continue
        result.load_s = round(time.perf_counter() - start, 2)
        result.device = engine.device
        result.input_size = tuple(int(v) for v in engine.meta.input_size)
        engines.append((result, engine, []))
    rounds = max(1, min(rounds, iterations))
    for index in range(rounds):
        for result, engine, samples in engines:
            chunk = iterations // rounds + (1 if index < iterations % rounds else 0)
            samples.extend(time_engine(engine, chunk, warmup if index == 0 else 1, batch).tolist())
    for result, engine, samples in engines:
        values = np.asarray(samples)
        result.iterations = int(values.size)
        result.p50_ms = float(np.percentile(values, 50))
        result.p99_ms = float(np.percentile(values, 99))
        result.mean_ms = float(values.mean())
        result.fps = 1e3 * batch / result.mean_ms
        log(f"  {result.backend}/{result.precision} on {result.device}: p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms, {result.fps:.1f} FPS")
        engine.close()
    return results


def format_table(results: Sequence[BackendResult]) -> str:
    rows = [("backend", "precision", "device", "input", "batch", "p50 ms", "p99 ms", "FPS", "load s")]
    for r in results:
        if r.skipped:
            rows.append((r.backend, r.precision, r.device, "-", "-", "skipped", "", "", ""))
            continue
        rows.append((r.backend, r.precision, r.device, f"{r.input_size[1]}x{r.input_size[0]}", str(r.batch),
                     f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}", f"{r.fps:.1f}", f"{r.load_s:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    reasons: dict[str, list[str]] = {}
    for r in results:
        if r.skipped:
            reasons.setdefault(r.skipped, []).append(f"{r.backend}/{r.precision}")
    skipped = [f"  {', '.join(names)} skipped: {reason}" for reason, names in reasons.items()]
    return "\n".join(lines[:1] + ["-" * len(lines[0])] + lines[1:] + skipped)


def machine() -> dict[str, Any]:
    """What the figures were measured on (they mean little without it)."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    try:
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    try:
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        pass
    return info


def parse_backends(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    unknown = [b for b in names if b not in BACKENDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"backends must be a comma-separated subset of {', '.join(BACKENDS)}")
    return names


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with `road-seg bench`."""
    parser.add_argument("--checkpoint", default="", help="road_seg .pt checkpoint (default: the bundled model)")
    parser.add_argument("--backends", type=parse_backends, default=list(BACKENDS),
                        help="comma-separated subset of torch,onnxruntime,tensorrt (default: all)")
    parser.add_argument("--height", type=non_negative_int, default=0,
                        help="model input height (multiple of 32; default: the checkpoint's)")
    parser.add_argument("--width", type=non_negative_int, default=0,
                        help="model input width (multiple of 32; default: the checkpoint's)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--batch", type=positive_int, default=1, help="batch size of the model timing")
    parser.add_argument("--iterations", type=positive_int, default=100, help="timed calls per backend")
    parser.add_argument("--int8", action="store_true", help="also time TensorRT int8 (synthetic calibration)")
    parser.add_argument("--threads", type=non_negative_int, default=0,
                        help="CPU threads for torch and onnxruntime (default 0: their own defaults, as the node runs "
                             "them)")
    parser.add_argument("--cache-dir", default="", help="export/engine cache (default $ROAD_SEG_CACHE_DIR or "
                                                        "~/.cache/road_seg)")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")


def model_input_size(args: argparse.Namespace) -> tuple[int, int] | None:
    """--height/--width as (H, W), or None for the checkpoint's; ValueError naming them when unusable."""
    if (args.height > 0) != (args.width > 0):
        raise ValueError(f"--height {args.height} --width {args.width}: give both, or neither")
    if args.height % 32 or args.width % 32:
        raise ValueError(f"--height {args.height} --width {args.width}: the model needs multiples of 32")
    return (args.height, args.width) if args.height > 0 else None


def main(argv: list[str] | None = None) -> int:
    from road_seg_core.bundled import resolve_model

    parser = argparse.ArgumentParser(prog="python -m road_seg_core.bench", description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    try:
        checkpoint = resolve_model(args.checkpoint or None)
    except FileNotFoundError as exc:
        print(f"{parser.prog}: {exc}; pass --checkpoint", file=sys.stderr)
        return 2
    try:
        size = model_input_size(args)
    except ValueError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    print(f"model backends: {checkpoint}")
    results = bench_backends(checkpoint, args.backends, args.device, size, args.batch,
                             args.iterations, cache_dir=args.cache_dir or None, int8=args.int8,
                             threads=args.threads)
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "checkpoint": str(checkpoint),
                                               "model": [r.to_dict() for r in results]}, indent=1))
    ran = [r for r in results if not r.skipped]
    if ran:
        best = min(ran, key=lambda r: r.p50_ms)
        print(f"fastest: {best.backend}/{best.precision} on {best.device}: {best.p50_ms:.2f} ms p50, "
              f"{best.fps:.1f} FPS")
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main())
