"""`road-seg eval-bag BAG`: replay a rosbag2 through the car's pipeline and report how well and how fast it did.

What runs is what runs on the car: topics, sync settings (queue size, slop,
per-input offsets), depth source and thermal settings come from the node's
parameters file (`--params`, default config/perception.yaml); messages go in
recording order through the node's reception checks, road_seg_core's
approximate-time synchroniser, the shared frame assembly and
`SegmentationPipeline` with the chosen engine. Both storages (sqlite3, MCAP)
are read, without a ROS install.

Ground truth (node label space: 0 background, 1 drivable, 2 positive obstacle,
3 negative obstacle, 255 ignore; the left image's size), matched to a frame by
the left image's header stamp:

* `--gt-topic TOPIC` -- sensor_msgs/Image `mono8` labels stamped like the left
  image; `/sim/labels` (what `road-seg sim` and sim_sensors record) is used by
  default when the bag has it;
* `--gt-dir DIR` -- one single-channel 8-bit PNG per annotated left image,
  named by its header stamp in nanoseconds: `DIR/<sec * 10^9 + nanosec>.png`,
  e.g. `1704067200100000000.png`. Left images without a file are run but not
  scored.

When the bag has `/sim/condition` (std_msgs/String recorded at each frame's
left stamp, as `road-seg sim` writes), metrics are also broken down per
condition: a frame's condition is the last one recorded at or before its stamp.
When it has `/sim/pothole_ids` (mono16 at the left stamp, as `road-seg sim`
writes), pothole recall by object counts those potholes, not the connected
components of pothole pixels.

Writes into `--report DIR` (default `<BAG>_eval`): `metrics.json` (messages
per topic, synchronised sets, evaluated frames, per-class
IoU/precision/recall/F1, mIoU, drivable IoU, obstacle IoU, per condition,
latency per stage, throughput) and `report.md` with PNG figures. With
`--write-bag OUT`, a bag of the left image and the node's outputs
(/road_seg/drivable_mask, obstacle_mask, labels, overlay) at the input stamps,
for RViz with config/perception.rviz.

Errors that stop the run (missing bag, unknown storage, a configured topic
absent from the bag, ground truth of another size...) are one line on stderr
and exit code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from tqdm import tqdm

from road_seg_core.arg_types import non_negative_int
from road_seg_core.errors import UserError
from road_seg_core.bundled import resolve_model
from road_seg_core.checkpoint import CheckpointError
from road_seg_core.engines import EngineError, InferenceEngine, available_backends, create_engine
from road_seg_core.metrics import to_json
from road_seg_core.pipeline import SegmentationPipeline
from road_seg_core.bag.bagio import BagError, open_reader, storage_of
from road_seg_core.bag.groundtruth import DirGroundTruth, GroundTruthError, check_labels, read_annotations
from road_seg_core.bag.outbag import MaskBagWriter
from road_seg_core.sensor_spec import CONDITION_TOPIC, GT_TOPIC, POTHOLE_IDS_TOPIC
from road_seg_core.bag.replay import BagReplay
from road_seg_core.reception import check_sync_policy
from road_seg_core.bag.report import write_report
from road_seg_core.bag.scoring import Scoreboard
from road_seg_core.node_config import PerceptionConfig
from road_seg_core.input_plan import StartupError, plan_inputs
from road_seg_core.launch_plan import config_dir


class EvalError(RuntimeError):
    """Stops the evaluation; the message is the one line the user sees."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="rosbag2 directory (sqlite3 or MCAP), or a .db3/.mcap file")
    parser.add_argument("--checkpoint", default=None,
                        help="model checkpoint (default: `model` in --params, else the bundled model)")
    parser.add_argument("--params", default=None, metavar="YAML",
                        help="the node's parameters file (default config/perception.yaml)")
    gt = parser.add_mutually_exclusive_group()
    gt.add_argument("--gt-topic", default=None,
                    help=f"ground-truth label topic (default {GT_TOPIC} when the bag has it)")
    gt.add_argument("--gt-dir", default=None, help="folder of <left stamp ns>.png label images")
    gt.add_argument("--no-gt", action="store_true", help="ignore ground truth: counts and latency only")
    parser.add_argument("--condition-topic", default=CONDITION_TOPIC,
                        help="std_msgs/String topic naming each frame's condition (default %(default)s)")
    parser.add_argument("--report", default=None, metavar="DIR", help="output directory (default <BAG>_eval)")
    parser.add_argument("--write-bag", default=None, metavar="OUT", help="also write a bag of masks for RViz")
    parser.add_argument("--write-storage", default=None, choices=("mcap", "sqlite3"),
                        help="storage of --write-bag (default: the input bag's)")
    parser.add_argument("--compress", action="store_true", help="zstd-compress the --write-bag bag")
    parser.add_argument("--backend", default=None,
                        help=f"inference backend ({', '.join(available_backends())}; default: `backend` in --params)")
    parser.add_argument("--device", default=None, help="cpu | cuda | auto (default: `device` in --params)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU inference threads (default: `threads` in --params if set, else 1; 0 = the "
                             "library's choice). On a loaded 2-core CPU 1 thread ran 4.5 frames/s, 2 threads 0.43")
    parser.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N synchronised sets")
    parser.add_argument("--montage", type=non_negative_int, default=3, metavar="K",
                        help="worst and best frames shown (default 3; 0: no montage)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_engine(args: argparse.Namespace, cfg: PerceptionConfig) -> tuple[InferenceEngine, Path]:
    """The node's engine for these parameters, with the command line's --backend/--device/--threads on top."""
    if args.threads is not None and args.threads < 0:
        raise EvalError(f"--threads must be >= 0, got {args.threads}")
    threads = args.threads if args.threads is not None else (cfg.threads or 1)  # 1: fast on a busy CPU
    cfg = dataclasses.replace(cfg, backend=args.backend or cfg.backend, device=args.device or cfg.device,
                              threads=threads)
    try:
        path = resolve_model(args.checkpoint or cfg.model)
        engine = create_engine(path, backend=cfg.backend, device=cfg.device, **cfg.engine_options())
    except (CheckpointError, EngineError, FileNotFoundError, ValueError) as exc:
        raise EvalError(f"cannot load model: {exc}") from None
    return engine, path


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation; returns metrics.json's content (also written, with the report)."""
    bag = Path(args.bag)
    storage = storage_of(bag)
    params = Path(args.params) if args.params else config_dir() / "perception.yaml"
    try:
        cfg = PerceptionConfig.from_yaml(params)
    except (FileNotFoundError, ValueError) as exc:
        raise EvalError(f"--params {params}: {exc}") from None
    try:
        check_sync_policy(cfg)
    except StartupError as exc:
        raise EvalError(f"--params {params}: {exc}") from None
    if args.gt_dir and not Path(args.gt_dir).is_dir():
        raise EvalError(f"ground truth directory not found: {args.gt_dir}")
    report_dir = Path(args.report) if args.report else bag.with_name(bag.name.rstrip("/") + "_eval")
    if args.compress and not args.write_bag:
        raise EvalError("--compress applies to --write-bag's bag; give --write-bag OUT")
    if args.write_bag and Path(args.write_bag).exists():
        raise EvalError(f"output bag {args.write_bag} exists already; choose another path or remove it")
    engine, model_path = load_engine(args, cfg)
    try:
        plan = plan_inputs(tuple(engine.meta.modalities), cfg)
    except StartupError as exc:
        raise EvalError(str(exc)) from None
    pipeline = SegmentationPipeline(engine, cfg.preprocess_config(), obstacles=cfg.obstacles)

    with closing(open_reader(bag)) as reader:
        replay = BagReplay(reader, cfg, plan, pipeline, with_overlay=bool(args.write_bag))
        gt_topic = None
        if not args.no_gt and not args.gt_dir:
            gt_topic = args.gt_topic or (GT_TOPIC if GT_TOPIC in reader.topics else None)
        topic_gt, conditions, pothole_ids = read_annotations(reader, gt_topic, args.condition_topic,
                                                             None if args.no_gt else POTHOLE_IDS_TOPIC)
        gt_source = DirGroundTruth(args.gt_dir) if args.gt_dir else topic_gt
        board = Scoreboard(tuple(engine.meta.class_names), keep=args.montage)
        writer = MaskBagWriter(args.write_bag, args.write_storage or storage, cfg.topics.left, args.compress) \
            if args.write_bag else None
        bar = tqdm(total=replay.total_messages, unit="msg", desc="eval-bag", file=sys.stderr,
                   disable=True if args.no_progress else None)
        t_start = time.perf_counter()
        frames = 0
        try:
            for replayed in replay.frames(on_message=bar.update):
                frames += 1
                frame = replayed.frame
                board.add_timings(replayed.timings_ms)
                gt = gt_source.get(frame.stamp_ns) if gt_source is not None else None
                if gt is not None:
                    gt = check_labels(gt, frame.size, f"for stamp {frame.stamp_ns} ({gt_source.description})")
                ids = pothole_ids.get(frame.stamp_ns) if gt is not None and pothole_ids is not None else None
                if ids is not None and ids.shape != gt.shape:
                    raise GroundTruthError(f"pothole ids for stamp {frame.stamp_ns} ({pothole_ids.description}) are "
                                           f"{ids.shape[1]}x{ids.shape[0]} but the left image is "
                                           f"{gt.shape[1]}x{gt.shape[0]}")
                board.add_frame(frame.stamp_ns, frame.rgb, replayed.result.masks.labels, gt,
                                conditions.at(frame.stamp_ns) if conditions else None, frame.depth, ids)
                if writer is not None:
                    writer.write(replayed)
                if args.max_frames and frames >= args.max_frames:
                    break
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        wall_s = time.perf_counter() - t_start
        metrics = {
            "bag": {"path": str(bag), "storage": storage, "duration_s": reader.duration / 1e9,
                    "message_count": reader.message_count,
                    "topics": {t: {"type": i.msgtype, "messages": i.msgcount} for t, i in sorted(reader.topics.items())}},
            "model": {"checkpoint": str(model_path), "backend": engine.backend, "device": engine.device,
                      "precision": engine.precision, "modalities": list(engine.meta.modalities),
                      "input_size": list(engine.meta.input_size)},
            "params": str(params),
            "potholes_published": dataclasses.asdict(cfg.obstacles),
            "sync": {"implementation": replay.reception.implementation, "policy": cfg.sync.policy,
                     "queue_size": cfg.sync.queue_size, "slop_s": cfg.sync.slop,
                     "topics": [i.topic for i in plan.sync_inputs],
                     "offsets_s": [float(getattr(cfg.sync.offsets, k)) for k in plan.keys],
                     "sensor_timeout_s": cfg.sync.sensor_timeout,
                     "sets_without": {k: n for k, n in zip(plan.keys, getattr(replay.sync, "substituted", ()))
                                      if n},
                     "stats": replay.sync.stats.as_dict()},
            "ground_truth": gt_source.description if gt_source is not None else None,
            "counts": {**replay.counters.as_dict(), "evaluated_frames": board.evaluated,
                       "frames_without_gt": board.without_gt},
            "metrics": board.accuracy(),
            "per_condition": board.per_condition(),
            "latency_ms": board.latency_summary(),
            "throughput": {"frames": frames, "wall_s": wall_s, "frames_per_s": frames / wall_s if wall_s > 0 else 0.0},
            "frames": [{"stamp_ns": s, "miou": m} for s, m in board.frame_scores],
        }
    metrics = to_json(metrics)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    write_report(report_dir, metrics, board)
    metrics["report_dir"] = str(report_dir)
    return metrics


def run(args: argparse.Namespace) -> int:
    try:
        metrics = evaluate(args)
    except (EvalError, BagError, GroundTruthError) as exc:
        raise UserError(str(exc)) from None
    acc = metrics["metrics"]
    thr = metrics["throughput"]
    summary = (f"{metrics['counts']['evaluated_frames']} frames scored of {thr['frames']} run, "
               f"{thr['frames_per_s']:.2f} frames/s")
    if acc:
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        summary += (f"; mIoU {fmt(acc['miou'])}, drivable IoU {fmt(acc['drivable_iou'])}, "
                    f"obstacle IoU {fmt(acc['obstacle_iou'])}")
    print(summary)
    print(f"report: {metrics['report_dir']}/report.md")
    return 0
