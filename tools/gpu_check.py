#!/usr/bin/env python3
"""The one prepared GPU check (`make gpu-check`): CUDA/TensorRT tests and speed figures, one JSON file.

On a machine with a CUDA GPU visible to torch, from a plain copy of the working
tree (nothing installed from the network; it uses the Python packages already
there), in this order and within `--budget-s` (default 7 minutes):

1. the CUDA/TensorRT tests: ``python -m pytest -q -m gpu`` (they skip what this machine lacks);
2. ``python -m road_seg_core.bench``'s timing at 384x640 and 720x1280 for torch fp32/fp16, ONNX Runtime on
   CUDA where its CUDA provider exists, and TensorRT fp16/fp32 where tensorrt imports;
3. the node's per-frame stages at the sensor resolution (1280x720), on the fastest GPU backend measured, with
   preprocessing on the GPU (the node's default there) and on the host for comparison: with rclpy, the live
   benchmark's `StageBench` (decode to publish); without it, the pipeline stages.

Without CUDA it says so in one line and exits 2. ``--allow-cpu`` runs the same steps on the CPU at the sizes
given (the project's tests use it with tiny sizes to exercise this script); its figures say nothing about a GPU.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # a copy of the working tree need not be installed
    sys.path.insert(0, str(ROOT))

DEFAULT_SIZES = ((384, 640), (720, 1280))
SENSOR_SIZE = (720, 1280)


class Budget:
    """Seconds left of the whole check; steps that would start after it ran out are recorded as skipped."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def cuda_status() -> tuple[bool, str]:
    """(usable, one-line description) of the CUDA device torch sees."""
    try:
        import torch
    except ImportError as exc:
        return False, f"torch is not importable ({exc})"
    if not torch.cuda.is_available():
        return False, (f"no CUDA device visible to torch {torch.__version__} (CUDA build "
                       f"{torch.version.cuda or 'none'}, CUDA_VISIBLE_DEVICES="
                       f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})")
    return True, f"{torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {torch.version.cuda})"


def run_gpu_tests(paths: list[str], timeout_s: float) -> dict[str, Any]:
    """pytest -m gpu in a child process; its last line is the summary (passed / skipped / failed counts)."""
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *paths]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    started = time.monotonic()
    try:
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=max(10.0, timeout_s))
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-2000:]
        return {"command": " ".join(command), "error": f"timed out after {timeout_s:.0f} s",
                "output_tail": tail.decode(errors="replace") if isinstance(tail, bytes) else tail}
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    # pytest's exit code 5 = nothing collected (every test deselected): not a failure of this check
    ok = proc.returncode in (0, 5)
    return {"command": " ".join(command), "returncode": proc.returncode, "ok": ok,
            "summary": lines[-1] if lines else "", "seconds": round(time.monotonic() - started, 1),
            "output_tail": "\n".join(lines[-40:]) + ("" if ok else "\n" + proc.stderr[-1500:])}


def bench_models(checkpoint: Path, sizes: list[tuple[int, int]], device: str, iterations: int, cache_dir: Path,
                 budget: Budget, threads: int = 0) -> list[dict[str, Any]]:
    """Every backend/precision at every size (road_seg_core.bench); unavailable ones carry their reason."""
    from road_seg_core import bench

    out = []
    for h, w in sizes:
        if budget.left() < 30:
            out.append({"input_size": [h, w], "skipped": "time budget used up"})
            continue
        print(f"gpu-check: model backends at {h}x{w} on {device}", flush=True)
        results = bench.bench_backends(checkpoint, bench.BACKENDS, device, (h, w), iterations=iterations,
                                       warmup=5, cache_dir=cache_dir, threads=threads, rounds=3,
                                       log=lambda line: print(line, flush=True))
        out.append({"input_size": [h, w], "results": [r.to_dict() for r in results]})
    return out


def fastest_backend(models: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """(backend, create_engine options) of the lowest p50 at the first size measured."""
    ran = [r for entry in models[:1] for r in entry.get("results", []) if not r["skipped"]]
    if not ran:
        return "torch", {}
    best = min(ran, key=lambda r: r["p50_ms"])
    options = {"fp16": best["precision"] == "fp16"} if best["backend"] == "torch" else {}
    if best["backend"] == "tensorrt":
        options = {"precision": best["precision"]}
    return best["backend"], options


def node_stages(checkpoint: Path, backend: str, options: dict[str, Any], device: str, sensor_size: tuple[int, int],
                frames: int, cache_dir: Path) -> dict[str, Any]:
    """Per-frame stage costs at the sensor resolution with the node's code: decode to publish where rclpy
    imports, the pipeline stages (preprocess, model, postprocess) where it does not."""
    from road_seg_core.engines import create_engine

    if backend != "torch":
        options = {**options, "cache_dir": cache_dir}
    engine = create_engine(checkpoint, backend=backend, device=device, **options)
    result: dict[str, Any] = {"backend": backend, "options": {k: v for k, v in options.items() if k != "cache_dir"},
                              "device": engine.device, "sensor_size": list(sensor_size)}
    try:
        import rclpy  # noqa: F401
    except ImportError as exc:
        result["scope"] = f"pipeline stages only (rclpy absent: {exc})"
        result["stages"] = pipeline_stages(engine, sensor_size, frames)
        return result
    result["scope"] = "node stages, decode to publish (road_seg_ros.bench_stages.StageBench)"
    result["stages"] = ros_stages(engine, sensor_size, frames)
    return result


def pipeline_stages(engine, sensor_size: tuple[int, int], frames: int) -> dict[str, Any]:
    """Pipeline stages with preprocessing on the engine's device and on the host (no rclpy needed)."""
    from road_seg_core.pipeline import SegmentationPipeline
    from road_seg_core.synthetic import render_scene

    h, w = sensor_size
    scenes = [render_scene(i, width=w, height=h, condition=("day", "night", "fog")[i % 3]).frame for i in range(3)]
    out: dict[str, Any] = {}
    for where in ("auto", "host"):
        pipeline = SegmentationPipeline(engine, preprocess_on=where)
        if ("engine" if pipeline.on_device else "host") in out:  # on a CPU "auto" is the host path already
            continue
        for i in range(3):
            pipeline.run(scenes[i % 3])
        samples: dict[str, list[float]] = {}
        for i in range(frames):
            for stage, ms in pipeline.run(scenes[i % 3]).timings_ms.items():
                samples.setdefault(stage, []).append(ms)
        out["engine" if pipeline.on_device else "host"] = {stage: summarise(v) for stage, v in samples.items()}
    return out


def ros_stages(engine, sensor_size: tuple[int, int], frames: int) -> dict[str, Any]:
    """StageBench with preprocessing on the engine's device (what the node does on a GPU) and on the host."""
    import random

    import rclpy

    from road_seg_core.node_config import PerceptionConfig
    from road_seg_ros import bench_stages

    messages = bench_stages.received_messages(sensor_size)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=random.randint(201, 230))
    try:
        ros_node = rclpy.create_node("road_seg_gpu_check", context=context)
        out: dict[str, Any] = {}
        for where in ("auto", "host"):
            stages = bench_stages.StageBench(engine, PerceptionConfig(), messages, ros_node, where)
            name = "engine" if stages.pipeline.on_device else "host"
            if name not in out:  # on a CPU "auto" is the host path already
                out[name] = stages.run(frames)
        # Each stage run holds "deserialise", timed before each frame; this is the back-to-back figure.
        out["back_to_back_deserialise_ms"] = bench_stages.transport_in_process(messages, stages.plan.keys)
        ros_node.destroy_node()
        return out
    finally:
        rclpy.try_shutdown(context=context)


def summarise(values: list[float]) -> dict[str, float]:
    import numpy as np

    array = np.asarray(values, dtype=np.float64)
    return {"n": int(array.size), "p50": float(np.percentile(array, 50)), "p99": float(np.percentile(array, 99)),
            "mean": float(array.mean())}


def step(report: dict[str, Any], name: str, budget: Budget, action: Callable[[], Any]) -> Any:
    """Run one step into report[name]; an exception is recorded (with its type) instead of ending the check."""
    if budget.left() <= 0:
        report[name] = {"skipped": "time budget used up"}
        return None
    started = time.monotonic()
    try:
        report[name] = action()
    except Exception as exc:  # a broken step must not cost the figures of the others
        report[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"gpu-check: {name} failed: {type(exc).__name__}: {exc}", flush=True)
    report.setdefault("step_seconds", {})[name] = round(time.monotonic() - started, 1)
    return report[name]


def write_report(path: Path, report: dict[str, Any]) -> None:
    """One JSON file, written atomically (a half-written report is never left behind by a timeout)."""
    import json

    from road_seg_core.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(report, indent=1, default=str) + "\n")


def parse_sizes(text: str) -> list[tuple[int, int]]:
    try:
        sizes = [tuple(int(v) for v in part.lower().split("x")) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(len(s) != 2 or min(s) <= 0 or s[0] % 32 or s[1] % 32 for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be HxW multiples of 32 separated by commas, got {text!r}")
    return sizes  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/gpu_check.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.json", help="the JSON report (default gpu_check.json)")
    parser.add_argument("--checkpoint", default="", help="road_seg .pt checkpoint (default: the bundled model)")
    parser.add_argument("--sizes", type=parse_sizes, default=list(DEFAULT_SIZES), help="model input sizes HxW,...")
    parser.add_argument("--sensor-size", type=parse_sizes, default=[SENSOR_SIZE], help="node stages' sensor HxW")
    parser.add_argument("--iterations", type=int, default=200, help="timed calls per backend and size")
    parser.add_argument("--frames", type=int, default=60, help="frames of the node-stage measurement")
    parser.add_argument("--tests", nargs="*", default=["test"], help="test paths for pytest -m gpu (none: skip)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of torch and onnxruntime (default: "
                                                               "their own)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="whole-check time budget in seconds")
    parser.add_argument("--allow-cpu", action="store_true", help="dry run on the CPU (exercises this script)")
    args = parser.parse_args(argv)

    usable, description = cuda_status()
    if not usable and not args.allow_cpu:
        print(f"gpu-check: {description}; this check needs a CUDA GPU (nothing was run)", file=sys.stderr)
        return 2
    budget = Budget(args.budget_s)
    device = "cuda" if usable else "cpu"
    out = Path(args.out)
    cache_dir = out.resolve().parent / "gpu_check_cache"  # exports and engines of this run, beside the report
    from road_seg_core.bench import machine
    from road_seg_core.bundled import resolve_model

    checkpoint = resolve_model(args.checkpoint or None)
    if not checkpoint.is_file():
        print(f"gpu-check: checkpoint not found: {checkpoint}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"cuda": usable, "device": description, "dry_run": not usable,
                              "checkpoint": str(checkpoint), "machine": machine(), "budget_s": args.budget_s}
    try:
        import onnxruntime

        report["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError as exc:
        report["onnxruntime_providers"] = f"onnxruntime not importable: {exc}"
    print(f"gpu-check: {description}", flush=True)
    started = time.monotonic()
    if args.tests:
        step(report, "gpu_tests", budget, lambda: run_gpu_tests(args.tests, min(180.0, budget.left() - 60)))
    models = step(report, "model", budget, lambda: bench_models(checkpoint, args.sizes, device, args.iterations,
                                                                 cache_dir, budget, args.threads)) or []
    backend, options = fastest_backend(models if isinstance(models, list) else [])
    step(report, "node_stages", budget, lambda: node_stages(checkpoint, backend, options, device,
                                                            args.sensor_size[0], args.frames, cache_dir))
    report["total_seconds"] = round(time.monotonic() - started, 1)
    write_report(out, report)
    failed = [name for name in ("gpu_tests", "model", "node_stages")
              if isinstance(report.get(name), dict) and ("error" in report[name] or report[name].get("ok") is False)]
    print(f"gpu-check: wrote {out} in {report['total_seconds']:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
