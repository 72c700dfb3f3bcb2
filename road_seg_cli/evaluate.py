"""`road-seg evaluate`: arguments of `road_seg_training.evaluate` (metrics of a checkpoint as one JSON object)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Sequence

from road_seg_core.arg_types import check_image_size, non_negative_int, positive_int
from road_seg_core.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from road_seg_training.datasets import DATASET_NAMES

    parser.add_argument("--checkpoint", help="model checkpoint (.pt); default: the bundled demo model")
    parser.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    parser.add_argument("--root", help="dataset root folder (not needed for synthetic)")
    parser.add_argument("--split", default="test", help="split name (default: test)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="dataset option, YAML value (e.g. class_order=[background,positive,negative])")
    parser.add_argument("--frames", type=positive_int, default=100, help="synthetic: number of frames (default 100)")
    parser.add_argument("--seed", type=int, default=12345,
                        help="synthetic: first scene seed (default 12345, outside the training seeds)")
    parser.add_argument("--width", type=int, default=1280, help="synthetic: camera width (default 1280, as sim)")
    parser.add_argument("--height", type=int, default=720, help="synthetic: camera height (default 720)")
    parser.add_argument("--conditions", default="day,night,fog",
                        help="synthetic: conditions cycled over the frames (default day,night,fog)")
    parser.add_argument("--drive", action="store_true",
                        help="synthetic: successive frames of one drive (SceneStream, as sim_sensors renders them) "
                             "instead of independent scenes; --conditions are cycled in equal blocks")
    parser.add_argument("--drives", type=positive_int, default=1, metavar="K",
                        help="synthetic --drive: K drives, seeds SEED..SEED+K-1 of --frames frames each, each its own "
                             "sequence; metrics pooled over them, each drive's under by_drive (default 1)")
    parser.add_argument("--drop", default="",
                        help="synthetic: comma-separated sensors that are down (e.g. thermal): fed as the node "
                             "feeds a missing sensor")
    parser.add_argument("--params", type=Path,
                        help="node parameter file (config/perception.yaml) whose preprocessing and pothole "
                             "checks (obstacles.*) to use")
    parser.add_argument("--confirm-frames", type=positive_int, default=None, metavar="N",
                        help="synthetic --drive: publish a pothole blob only once predicted in N frames in a row, "
                             "as the node's obstacles.confirm_frames (default: the --params file's, else 1 = off)")
    parser.add_argument("--min-depth-share", type=float, default=None, metavar="S",
                        help="synthetic: publish a pothole blob only if depth was measured on this share of its "
                             "pixels, as the node's obstacles.min_depth_share (default: the --params file's, else "
                             "the node's 0.5; 0 = the network's raw output)")
    parser.add_argument("--thermal-contrast", type=float, default=None, metavar="C",
                        help="synthetic: keep a pothole blob the depth check drops when its thermal input is this "
                             "much colder than its surroundings and the network is confident, as the node's "
                             "obstacles.thermal_contrast (default: the --params file's, else the node's 0.003; "
                             "0 = off)")
    parser.add_argument("--backend", default="torch", help="inference backend (default torch)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=non_negative_int, default=1, metavar="N",
                        help="CPU inference threads for torch/onnxruntime (default 1: on a busy CPU, more threads "
                             "spin against other processes and run several times slower; 0 = the library's choice)")
    parser.add_argument("--batch-size", type=positive_int, default=4, help="dataset splits: batch size (default 4)")
    parser.add_argument("--workers", type=non_negative_int, default=0,
                        help="dataset splits: loader workers (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from road_seg_core.bundled import resolve_model
    from road_seg_core.engines import EngineError, create_engine
    from road_seg_training.evaluate import evaluate_split, evaluate_synthetic, node_settings

    try:
        checkpoint = resolve_model(args.checkpoint)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    if args.dataset == "synthetic":
        try:
            check_image_size(f"--width {args.width} --height {args.height}", args.width, args.height)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    options = {"threads": args.threads} if args.threads and args.backend in ("torch", "onnxruntime") else {}
    try:
        engine = create_engine(checkpoint, backend=args.backend, device=args.device, **options)
    except (EngineError, ValueError) as exc:
        raise UserError(f"--backend {args.backend} --device {args.device}: {exc}") from None
    started = time.perf_counter()
    header: dict[str, Any] = {"checkpoint": str(checkpoint), "backend": args.backend, "device": args.device,
                              "dataset": args.dataset}
    if args.dataset == "synthetic":
        conditions = tuple(c.strip() for c in args.conditions.split(",") if c.strip())
        drop = tuple(m.strip() for m in args.drop.split(",") if m.strip())
        preprocess, obstacles = node_settings(args.params, confirm_frames=args.confirm_frames,
                                              min_depth_share=args.min_depth_share,
                                              thermal_contrast=args.thermal_contrast)
        result = evaluate_synthetic(engine, frames=args.frames, seed=args.seed, width=args.width, height=args.height,
                                    conditions=conditions, drive=args.drive,
                                    preprocess=preprocess, progress=not args.quiet,
                                    drop=drop, pothole_filter=obstacles, drives=args.drives)
        if not args.drive:
            split = f"seeds {args.seed}..{args.seed + args.frames - 1}"
        else:
            split = f"drive seed {args.seed}" if args.drives == 1 else \
                f"drive seeds {args.seed}..{args.seed + args.drives - 1}"
        header.update(split=split, frames=args.frames, conditions=list(conditions),
                      resolution=[args.height, args.width], sensors_down=list(drop),
                      potholes_published=dataclasses.asdict(obstacles))
    else:
        if not args.root:
            raise UserError(f"--root is required for --dataset {args.dataset}")
        result = evaluate_split(engine, args.dataset, args.root, args.split, _options(args.option),
                                batch_size=args.batch_size, workers=args.workers, progress=not args.quiet)
        header.update(root=args.root, split=args.split)
    header["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps({**header, **result}, allow_nan=False))
    return 0


def _options(items: Sequence[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--option {item!r} must look like key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out
