"""`road-seg bench`: how fast the model backends and the node are, against the sensors' frame budget (not a test).

Four measurements, printed as tables and written as JSON, with a one-line
summary last:

1. Model: every backend and precision this machine can run
   (`road_seg_core.bench`), latency p50/p99 and throughput.
2. Node stages at the sensor resolution (1280x720, road_seg_ros.bench_stages): the node's own code paths
   on sim_sensors' messages — decode (image_to_array + encoding check +
   synchroniser), convert (frame assembly: to_rgb8 / to_metres), preprocess,
   model, postprocess (make_masks, into the messages' buffers), publish (rclpy publish),
   in one process, frame after frame; before each frame, rclpy deserialises
   its input messages (timed: the in-process transport reference).
3. Transport reference: an empty rclpy subscriber process receiving the same
   input topics from sim_sensors with the node's QoS; its CPU time per set is
   the bare cost of receiving them, so the node's own overhead (all stages but
   the model) reads as a ratio of it.
4. Reception (road_seg_ros.bench_live): sim_sensors -> perception_node as
   real processes over loopback (isolated ROS_DOMAIN_ID) for every rate x
   size x thermal drop rate asked (3 ms stamp jitter): the share of left
   images that got a mask, every loss by cause (DDS/history, sync, superseded
   by a slow model, failed), latency stamp -> publish p50/p99, node CPU per
   frame. `--soak MIN` adds a memory soak: the node's RSS slope after warm-up.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

from road_seg_core.arg_types import check_image_size, non_negative_float, positive_float, positive_int
from road_seg_core.errors import UserError
from road_seg_core import bench as model_bench
from road_seg_ros import bench_live
from road_seg_ros.bench_stages import STAGES, StageBench, received_messages, transport_in_process



# -- command line ---------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    model_bench.add_model_arguments(parser)
    parser.add_argument("--sensor-width", type=positive_int, default=1280, help="sensor image width for the node runs")
    parser.add_argument("--sensor-height", type=positive_int, default=720, help="sensor image height for the node runs")
    parser.add_argument("--frames", type=positive_int, default=40, help="frames timed per node-stage measurement")
    parser.add_argument("--rates", default="5,10,30", help="sim_sensors rates (Hz) for the live runs")
    parser.add_argument("--sizes", default="640x360,1280x720", help="sim_sensors image sizes WxH for the live runs")
    parser.add_argument("--thermal-drop", default="0,0.3", help="sim_sensors thermal drop rates for the live runs")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME=VALUE",
                        help="node parameter for the live runs (repeatable), e.g. qos.thermal.reliability=reliable")
    parser.add_argument("--dds-profile", default="", metavar="XML",
                        help="Fast DDS profile of the live runs' processes: empty = the shipped one (as "
                             "perception.launch.py), none = Fast DDS defaults, or a file")
    parser.add_argument("--duration", type=positive_float, default=20.0, help="steady-state seconds per live run")
    parser.add_argument("--soak", type=non_negative_float, default=0.0, metavar="MIN",
                        help="also run a memory soak this long (10 Hz 640x360) and print the node's RSS slope")
    parser.add_argument("--soak-warmup", type=non_negative_float, default=1.0, metavar="MIN",
                        help="soak minutes not in the slope")
    parser.add_argument("--live-only", action="store_true", help="only the live runs (and the soak)")
    parser.add_argument("--node-backend", default="", help="backend of the node runs (default: the fastest "
                                                           "model backend measured here)")
    parser.add_argument("--no-live", action="store_true", help="skip the sim_sensors/perception_node runs")
    parser.add_argument("--preprocess-on", choices=("auto", "host", "engine"), default="auto",
                        help="node stages: preprocessing on the engine's device (GPU) or the host (default auto: "
                             "the engine's device where it is a GPU)")


def _sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        w, _, h = item.partition("x")
        try:
            size = (int(h), int(w))
        except ValueError:
            raise ValueError(f"--sizes: expected WxH, got {item!r}") from None
        check_image_size(f"--sizes {item}", size[1], size[0])
        out.append(size)
    return out


def _numbers(flag: str, text: str, low: float, high: float = math.inf, low_inclusive: bool = False) -> list[float]:
    """A comma-separated list of numbers, each within (low, high] ([low, high] with `low_inclusive`)."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"{flag}: expected numbers separated by commas, got {item!r}") from None
        if not (value >= low if low_inclusive else value > low) or not value <= high:
            bound = f"{'[' if low_inclusive else '('}{low:g}, {high:g}]"
            raise ValueError(f"{flag} {item}: must be in {bound}")
        out.append(value)
    return out


def _node_params(items: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--node-param: expected NAME=VALUE, got {item!r}")
        out[name.strip()] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    from road_seg_core.bundled import resolve_model
    from road_seg_core.checkpoint import CheckpointError, load_checkpoint
    from road_seg_core.engines import resolve_auto_device

    try:
        checkpoint = str(resolve_model(args.checkpoint or None))
        load_checkpoint(checkpoint)
        rates = _numbers("--rates", args.rates, 0.0, 1000.0)
        sizes = _sizes(args.sizes)
        drops = _numbers("--thermal-drop", args.thermal_drop, 0.0, 1.0, low_inclusive=True)
        check_image_size(f"--sensor-width {args.sensor_width} --sensor-height {args.sensor_height}",
                         args.sensor_width, args.sensor_height)
        model_bench.model_input_size(args)  # both or neither, multiples of 32: before minutes of runs
        if args.soak > 0 and args.soak_warmup >= args.soak:
            raise ValueError(f"--soak-warmup {args.soak_warmup:g} must be shorter than --soak {args.soak:g} "
                             "(the RSS slope is read after the warm-up)")
        node_params = _node_params(args.node_param)
        if args.threads > 0:  # the live node runs its model as the node stages do (unless --node-param says)
            node_params.setdefault("threads", args.threads)
    except (FileNotFoundError, CheckpointError) as exc:
        raise UserError(f"{exc}; pass --checkpoint") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    device = resolve_auto_device(args.device)
    if args.threads > 0:  # also the torch ops of engine-side preprocessing (--preprocess-on engine)
        import torch

        torch.set_num_threads(args.threads)
    cache_dir = args.cache_dir or None
    report: dict[str, Any] = {"machine": model_bench.machine(), "checkpoint": checkpoint}
    node_backend = args.node_backend or "onnxruntime"
    if not args.live_only:
        node_backend = _offline(args, checkpoint, device, cache_dir, report)
    node_device = "cpu" if device == "cpu" else device
    with tempfile.TemporaryDirectory(prefix="road_seg_bench_") as tmp:
        log_dir = Path(tmp)
        if not args.no_live:
            report["reception"] = []
            for rate in rates:
                for size in sizes:
                    for drop in drops:
                        print(f"[4/4] sim_sensors -> perception_node at {rate:g} Hz, {size[1]}x{size[0]}, thermal "
                              f"drop {drop:g} ({node_backend}{', ' if node_params else ''}"
                              f"{', '.join(f'{k}={v}' for k, v in node_params.items())})", flush=True)
                        report["reception"].append(bench_live.reception_run(
                            checkpoint, node_backend, node_device, rate, args.duration, size, cache_dir, log_dir,
                            drop, node_params, args.dds_profile or None))
        if args.soak > 0:
            print(f"[soak] {args.soak:g} min at 10 Hz 640x360 ({node_backend})", flush=True)
            report["soak"] = bench_live.soak_run(checkpoint, node_backend, node_device, args.soak, args.soak_warmup,
                                                 log_dir, cache_dir=cache_dir)
    report["machine"]["load_average_1m_end"] = model_bench.machine().get("load_average_1m")
    print()
    print(render(report))
    summary = summary_line(report)
    report["summary"] = summary
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
        print(f"wrote {args.json}")
    print(summary)
    return 0


def _offline(args: argparse.Namespace, checkpoint: str, device: str, cache_dir: str | None,
             report: dict[str, Any]) -> str:
    """Model backends, node stages and the transport reference; returns the backend for the live runs."""
    import rclpy

    from road_seg_core.engines import create_engine
    from road_seg_core.node_config import PerceptionConfig

    sensor_size = (args.sensor_height, args.sensor_width)
    print(f"[1/4] model backends ({checkpoint})")
    results = model_bench.bench_backends(checkpoint, args.backends, device, model_bench.model_input_size(args),
                                         args.batch, args.iterations, cache_dir=cache_dir, int8=args.int8,
                                         threads=args.threads)
    report["model"] = [r.to_dict() for r in results]
    ran = [r for r in results if not r.skipped]
    node_backend = args.node_backend or (min(ran, key=lambda r: r.p50_ms).backend if ran else "torch")
    node_device = "cpu" if device == "cpu" else device
    h, w = sensor_size
    print(f"[2/4] node stages at {w}x{h} ({node_backend} on {node_device}, {args.frames} frames)")
    # The node's configuration for this backend, with --threads as the node's `threads` parameter.
    cfg = PerceptionConfig(backend=node_backend, threads=args.threads)
    engine = create_engine(checkpoint, backend=node_backend, device=node_device, **cfg.engine_options(),
                           **({"cache_dir": cache_dir} if node_backend != "torch" else {}))
    messages = received_messages(sensor_size)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=random.randint(201, 230))
    try:
        ros_node = rclpy.create_node("road_seg", context=context)
        stages = StageBench(engine, cfg, messages, ros_node, args.preprocess_on)
        report["node_stages"] = {"sensor_size": [h, w], "backend": node_backend, "device": engine.device,
                                 "threads": _engine_threads(engine),
                                 "preprocess_on": "engine" if stages.pipeline.on_device else "host",
                                 "inputs": list(stages.plan.keys), "without_overlay": stages.run(args.frames),
                                 "with_overlay": stages.run(max(10, args.frames // 2), with_overlay=True)}
        ros_node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    report["transport"] = {"in_process_deserialise_ms": report["node_stages"]["without_overlay"]["deserialise"],
                           "back_to_back_deserialise_ms": transport_in_process(messages, stages.plan.keys)}
    if not args.no_live:
        rate = float(args.rates.split(",")[0])
        print(f"[3/4] bare receive: empty rclpy subscriber on {', '.join(stages.plan.keys)} at {rate:g} Hz")
        with tempfile.TemporaryDirectory(prefix="road_seg_bench_") as tmp:
            report["transport"]["empty_subscriber"] = bench_live.bare_receive_run(
                stages.plan.keys, cfg, rate, int(rate * args.duration), sensor_size, Path(tmp))
    return node_backend


def _engine_threads(engine: Any) -> int:
    """The CPU threads the engine's runtime was given (0: its default), as the runtime itself reports them."""
    session = getattr(engine, "session", None)
    if session is not None and hasattr(session, "get_session_options"):
        return int(session.get_session_options().intra_op_num_threads)
    import torch

    return int(torch.get_num_threads())


def render(report: dict[str, Any]) -> str:
    """The human-readable tables."""
    lines: list[str] = []
    if "model" in report:
        lines += _render_offline(report)
    if report.get("reception"):
        lines += ["", "== reception: sim_sensors -> perception_node (live processes, loopback) =="]
        lines += bench_live.format_reception(report["reception"])
    soak = report.get("soak")
    if soak:
        lines += ["", "== memory soak (node RSS) =="]
        lines.append(f"soak: {soak.get('error', '')[:300]}" if "slope_mib_per_10min" not in soak else
                     f"{soak['minutes']:g} min at {soak['rate_hz']:g} Hz {soak['sensor_size'][1]}x"
                     f"{soak['sensor_size'][0]}: RSS {soak['rss_start_mib']:.1f} -> {soak['rss_end_mib']:.1f} MiB "
                     f"after {soak['warmup_minutes']:g} min warm-up; slope {soak['slope_mib_per_10min']:+.2f} MiB "
                     f"per 10 min")
    m = report["machine"]
    lines += ["", f"machine: {m.get('processor')} x{m.get('cpus')}, load average {m.get('load_average_1m')} -> "
                  f"{m.get('load_average_1m_end')}, torch {m.get('torch')} ({m.get('torch_threads')} threads), "
                  f"onnxruntime {m.get('onnxruntime')}, tensorrt {m.get('tensorrt', 'absent')}"]
    return "\n".join(lines)


def _render_offline(report: dict[str, Any]) -> list[str]:
    lines = ["== model backends ==", model_bench.format_table(
        [model_bench.BackendResult(**r) for r in report["model"]])]
    ns = report["node_stages"]
    h, w = ns["sensor_size"]
    threads = ns.get("threads")
    threads = "" if threads is None else f", {threads or 'default'} thread{'s' if threads != 1 else ''}"
    lines += ["", f"== node per-frame cost at {w}x{h} ({ns['backend']} on {ns['device']}{threads}, preprocessing "
                  f"on the {ns.get('preprocess_on', 'host')}; inputs {', '.join(ns['inputs'])}) ==",
              f"{'stage':<14}{'p50 ms':>7}{'p99 ms':>9}{'+overlay p50':>14}"]
    for stage in STAGES + ("overhead", "overhead_cpu"):
        a, b = ns["without_overlay"][stage], ns["with_overlay"][stage]
        label = {"overhead": "all but model", "overhead_cpu": "  (CPU time)"}.get(stage, stage)
        lines.append(f"{label:<14}{a['p50']:>7.2f}{a['p99']:>9.2f}{b['p50']:>14.2f}")
    tr = report["transport"]
    reference = tr["in_process_deserialise_ms"]["p50"]
    overhead = ns["without_overlay"]["overhead_cpu"]["p50"]
    lines += ["", "== transport reference (same input messages) ==",
              f"rclpy deserialisation in process: {reference:.2f} ms per set, timed before each frame above "
              f"(as a node alternates them)"]
    back_to_back = tr.get("back_to_back_deserialise_ms")
    if back_to_back:
        lines.append(f"  the same, sets back to back with nothing in between: {back_to_back['p50']:.2f} ms")
    lines.append(f"node's CPU besides the model / deserialisation: {overhead:.2f} / {reference:.2f} = "
                 f"{overhead / reference:.2f}x" + (f" (back to back: {overhead / back_to_back['p50']:.2f}x)"
                                                    if back_to_back else ""))
    paired = ns["without_overlay"].get("overhead_cpu_per_deserialise")
    if paired:
        lines.append(f"  the same ratio frame by frame: p50 {paired['p50']:.2f}x, p99 {paired['p99']:.2f}x")
    bare = tr.get("empty_subscriber")
    if bare and "cpu_ms_per_set" in bare:
        lines.append(f"empty rclpy subscriber process: {bare['cpu_ms_per_set']:.2f} ms CPU per set at "
                     f"{bare['rate_hz']:.1f} Hz ({bare['sets']} sets)")
        cpu, wall = ns["without_overlay"]["overhead_cpu"]["p50"], ns["without_overlay"]["overhead"]["p50"]
        lines.append(f"node's own overhead / bare receive (CPU time): {cpu:.2f} / {bare['cpu_ms_per_set']:.2f} = "
                     f"{cpu / bare['cpu_ms_per_set']:.2f}x (wall time {wall:.2f} ms: "
                     f"{wall / bare['cpu_ms_per_set']:.2f}x)")
    elif bare:
        lines.append(f"empty subscriber: {bare.get('error', 'no result')[:300]}")
    return lines


def summary_line(report: dict[str, Any]) -> str:
    parts = []
    ran = [r for r in report.get("model", []) if not r["skipped"]]
    if ran:
        best = min(ran, key=lambda r: r["p50_ms"])
        torch_cpu = next((r for r in ran if r["backend"] == "torch" and r["precision"] == "fp32"), None)
        speedup = f" ({torch_cpu['p50_ms'] / best['p50_ms']:.1f}x torch fp32)" if torch_cpu and best is not \
            torch_cpu else ""
        h, w = best["input_size"]
        parts.append(f"model {best['backend']}/{best['precision']} {w}x{h} {best['p50_ms']:.1f} ms p50"
                     f"{speedup}")
    ns = report.get("node_stages")
    if ns:
        overhead = ns["without_overlay"]["overhead_cpu"]["p50"]
        bare = report["transport"].get("empty_subscriber", {})
        ratio = f" = {overhead / bare['cpu_ms_per_set']:.2f}x bare receive ({bare['cpu_ms_per_set']:.1f} ms)" \
            if "cpu_ms_per_set" in bare else ""
        reference = ns["without_overlay"].get("deserialise", {}).get("p50")
        back_to_back = report["transport"].get("back_to_back_deserialise_ms", {}).get("p50")
        versus = (f" ({overhead / reference:.1f}x rclpy deserialisation between frames, "
                  f"{overhead / back_to_back:.1f}x back to back)") if reference and back_to_back else ""
        parts.append(f"node overhead {overhead:.1f} ms CPU/frame at {ns['sensor_size'][1]}x{ns['sensor_size'][0]}"
                     f"{versus}{ratio}")
    ok = [r for r in report.get("reception", []) if "error" not in r]
    for size in sorted({tuple(r["sensor_size"]) for r in ok}):
        runs = [r for r in ok if tuple(r["sensor_size"]) == size]
        held = [rate for rate in {r["rate_hz"] for r in runs}
                if all(r["mask_share"] >= 0.95 for r in runs if r["rate_hz"] == rate)]
        parts.append(f"{size[1]}x{size[0]}: masks for >= 0.95 of left images at up to "
                     + (f"{max(held):g} Hz" if held else "none of the rates run"))
    failed = [r for r in report.get("reception", []) if "error" in r]
    if failed:
        parts.append(f"{len(failed)} live runs failed")
    if "slope_mib_per_10min" in report.get("soak", {}):
        parts.append(f"soak RSS slope {report['soak']['slope_mib_per_10min']:+.2f} MiB/10 min")
    return "bench: " + "; ".join(parts)
