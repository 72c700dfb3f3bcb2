"""`road-seg evaluate`: confusion-matrix metrics of a checkpoint on a dataset split, as one JSON object on stdout.

Synthetic frames go through `SegmentationPipeline` on `SensorFrame`s, exactly
as the node runs them (preprocessing from raw sensor data, inference, label
upsampling to the camera resolution), and are scored at full resolution
against the generator's exact labels. Dataset splits are scored at the model's
input size in the node's label space; pixels whose partial label is ambiguous
(e.g. NPO "background", which may be road) are ignored there, and the
dataset's own classes (the papers' convention) are reported under
``dataset_space``.

Conventions: rows ground truth, columns prediction; ``miou`` counts the
background class (MFNet/RTFNet convention), ``miou_without_background`` does
not (InconSeg/NPO tables); a class absent from both ground truth and
prediction is null and left out of the means. Progress goes to stderr, so
``road-seg evaluate ... > metrics.json`` captures exactly one JSON object.

Examples::

    road-seg evaluate --dataset synthetic --frames 200 --seed 12345            # bundled model
    road-seg evaluate --checkpoint runs/npo/best.pt --dataset npo --root /data/NPO --split test
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from road_seg_core import labels as L
from road_seg_core.metrics import ConfusionMatrix, to_json
from road_seg_core.obstacle_metrics import ObstacleCounter, obstacle_convention

CONVENTION = {
    "matrix": "rows ground truth, columns prediction; ground truth 255 (ignore or ambiguous partial label) skipped",
    "miou": "mean IoU over all classes incl. background (MFNet/RTFNet); classes absent from ground truth and "
            "prediction are excluded",
    "miou_without_background": "mean IoU over the non-background classes (InconSeg/NPO tables)",
    "recall": "tp / (tp + fn), the per-class 'Acc' of the RTFNet tables",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="model checkpoint (.pt); default: the bundled demo model")
    parser.add_argument("--dataset", required=True, choices=("npo", "drno", "mfnet", "synthetic", "folder"))
    parser.add_argument("--root", help="dataset root folder (not needed for synthetic)")
    parser.add_argument("--split", default="test", help="split name (default: test)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="dataset option, YAML value (e.g. class_order=[background,positive,negative])")
    parser.add_argument("--frames", type=int, default=100, help="synthetic: number of frames (default 100)")
    parser.add_argument("--seed", type=int, default=12345,
                        help="synthetic: first scene seed (default 12345, outside the training seeds)")
    parser.add_argument("--width", type=int, default=1280, help="synthetic: camera width (default 1280, as sim)")
    parser.add_argument("--height", type=int, default=720, help="synthetic: camera height (default 720)")
    parser.add_argument("--conditions", default="day,night,fog",
                        help="synthetic: conditions cycled over the frames (default day,night,fog)")
    parser.add_argument("--drive", action="store_true",
                        help="synthetic: successive frames of one drive (SceneStream, as sim_sensors renders them) "
                             "instead of independent scenes; --conditions are cycled in equal blocks")
    parser.add_argument("--drop", default="",
                        help="synthetic: comma-separated sensors that are down (e.g. thermal): fed as the node "
                             "feeds a missing sensor")
    parser.add_argument("--params", type=Path,
                        help="node parameter file (config/perception.yaml) whose preprocessing to use")
    parser.add_argument("--backend", default="torch", help="inference backend (default torch)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--batch-size", type=int, default=4, help="dataset splits: batch size (default 4)")
    parser.add_argument("--workers", type=int, default=0, help="dataset splits: loader workers (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from road_seg_core.bundled import resolve_model
    from road_seg_core.engines import create_engine

    try:
        checkpoint = resolve_model(args.checkpoint)
        engine = create_engine(checkpoint, backend=args.backend, device=args.device)
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        print(f"road-seg evaluate: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    header: dict[str, Any] = {"checkpoint": str(checkpoint), "backend": args.backend, "device": args.device,
                              "dataset": args.dataset}
    try:
        if args.dataset == "synthetic":
            conditions = tuple(c.strip() for c in args.conditions.split(",") if c.strip())
            drop = tuple(m.strip() for m in args.drop.split(",") if m.strip())
            result = evaluate_synthetic(engine, frames=args.frames, seed=args.seed, width=args.width,
                                        height=args.height, conditions=conditions, drive=args.drive,
                                        preprocess=_preprocess_config(args.params), progress=not args.quiet,
                                        drop=drop)
            header.update(split=f"seeds {args.seed}..{args.seed + args.frames - 1}" if not args.drive
                          else f"drive seed {args.seed}", frames=args.frames, conditions=list(conditions),
                          resolution=[args.height, args.width], sensors_down=list(drop))
        else:
            if not args.root:
                print(f"road-seg evaluate: --root is required for --dataset {args.dataset}", file=sys.stderr)
                return 2
            result = evaluate_split(engine, args.dataset, args.root, args.split, _options(args.option),
                                    batch_size=args.batch_size, workers=args.workers, progress=not args.quiet)
            header.update(root=args.root, split=args.split)
    except (FileNotFoundError, ValueError) as exc:
        print(f"road-seg evaluate: {exc}", file=sys.stderr)
        return 2
    header["seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps({**header, **result}, allow_nan=False))
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------------
def report(confusion: ConfusionMatrix, include_background: bool = True) -> dict[str, Any]:
    """JSON-ready metrics of one confusion matrix (NaN -> null), per-class support included."""
    return to_json(confusion.compute(include_background=include_background))


def matrix_report(matrix: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """`report` for a bare (K, K) count matrix (e.g. summed across DDP ranks)."""
    cm = ConfusionMatrix(len(class_names), class_names)
    cm.matrix[:] = np.asarray(matrix, dtype=np.int64)
    return report(cm)


# ---------------------------------------------------------------------------------------------------------------
# Synthetic frames through the node's pipeline
# ---------------------------------------------------------------------------------------------------------------
def synthetic_scenes(frames: int, seed: int, width: int, height: int, conditions: Sequence[str],
                     drive: bool = False) -> Iterator[Any]:
    """Independent scenes with seeds seed..seed+frames-1 (conditions cycled), or one drive's successive frames."""
    from road_seg_core.synthetic import SceneStream, render_scene

    if drive:
        per = max(1, frames // max(len(conditions), 1))
        stream = SceneStream(seed, width, height, conditions=tuple(conditions), frames_per_condition=per,
                             num_frames=frames)
        yield from stream
        return
    for i in range(frames):
        yield render_scene(seed + i, width, height, condition=conditions[i % len(conditions)])


def evaluate_synthetic(engine: Any, frames: int, seed: int, width: int = 1280, height: int = 720,
                       conditions: Sequence[str] = ("day", "night", "fog"), drive: bool = False,
                       preprocess: Any = None, progress: bool = False, drop: Sequence[str] = ()) -> dict[str, Any]:
    """Metrics of `engine` on freshly rendered synthetic frames, overall and per condition (`drop`: sensors down)."""
    if frames < 1:
        raise ValueError(f"--frames must be >= 1, got {frames}")
    scenes = _progress(synthetic_scenes(frames, seed, width, height, conditions, drive), frames, "evaluate",
                       progress)
    return evaluate_scenes(engine, scenes, preprocess, drop)


def evaluate_scenes(engine: Any, scenes: Iterable[Any], preprocess: Any = None,
                    drop: Sequence[str] = ()) -> dict[str, Any]:
    """Run `SyntheticScene`s through `SegmentationPipeline` and score them against their exact labels.

    `drop` names sensors that are down at test time: depth/disparity/thermal
    are absent from the frame (the node feeds zeros), a dead colour camera
    delivers black frames.
    """
    from road_seg_core.pipeline import SegmentationPipeline

    pipeline = SegmentationPipeline(engine, preprocess)
    overall = ConfusionMatrix()
    obstacles = ObstacleCounter()
    by_condition: dict[str, ConfusionMatrix] = {}
    obstacles_by_condition: dict[str, ObstacleCounter] = {}
    latency = []
    for scene in scenes:
        frame = without_sensors(scene.frame, drop) if drop else scene.frame
        result = pipeline.run(frame)
        overall.update(result.masks.labels, scene.labels)
        by_condition.setdefault(scene.condition, ConfusionMatrix()).update(result.masks.labels, scene.labels)
        depth_gt = scene.frame.extras.get("depth_gt")  # exact distances, for recall by distance
        obstacles.update(result.masks.labels, scene.labels, depth_gt)
        obstacles_by_condition.setdefault(scene.condition, ObstacleCounter()).update(
            result.masks.labels, scene.labels, depth_gt)
        latency.append(sum(result.timings_ms.values()))
    if not latency:
        raise ValueError("no frames to evaluate")
    out = report(overall)
    out["obstacles"] = to_json(obstacles.compute())
    out["by_condition"] = {c: {**_brief(report(cm)), "obstacles": to_json(obstacles_by_condition[c].compute())}
                           for c, cm in sorted(by_condition.items())}
    out["pipeline_ms_median"] = round(float(np.median(latency)), 2)
    out["convention"] = {**CONVENTION, **obstacle_convention(obstacles),
                         "label_space": "node (" + ", ".join(L.CLASS_NAMES) + ")",
                         "scored_at": "camera resolution, after the pipeline's label upsampling"}
    return out


def without_sensors(frame: Any, drop: Sequence[str]) -> Any:
    """A copy of a SensorFrame as the node would receive it with the `drop`ped sensors down."""
    import dataclasses

    unknown = sorted(set(drop) - {"rgb", "depth", "disparity", "thermal"})
    if unknown:
        raise ValueError(f"cannot drop unknown modalities {unknown}")
    changes: dict[str, Any] = {m: None for m in drop if m in ("depth", "disparity", "thermal")}
    if "depth" in drop or "disparity" in drop:  # no depth-like input from any source (incl. stereo)
        changes.update(depth=None, disparity=None, right_rgb=None)
    if "rgb" in drop:
        changes["rgb"] = np.zeros_like(frame.rgb)
    return dataclasses.replace(frame, **changes)


# ---------------------------------------------------------------------------------------------------------------
# Dataset splits
# ---------------------------------------------------------------------------------------------------------------
def evaluate_split(engine: Any, dataset: str, root: str, split: str, options: dict[str, Any],
                   batch_size: int = 4, workers: int = 0, progress: bool = False) -> dict[str, Any]:
    """Metrics on a dataset split at the model's input size, in node space and in the dataset's own classes."""
    import torch

    from training.datasets import build_dataset

    meta = engine.meta
    ds = build_dataset(dataset, root, split, modalities=tuple(meta.modalities), input_size=tuple(meta.input_size),
                       augment=False, **options)
    space = getattr(ds, "eval_space", None)
    if space is not None and tuple(space.class_names) == tuple(meta.class_names):
        space = None  # the node's own classes (synthetic, folder): no separate dataset space
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         collate_fn=_collate_for(meta))
    node = ConfusionMatrix(len(meta.class_names), meta.class_names)
    obstacles = ObstacleCounter() if tuple(meta.class_names) == tuple(L.CLASS_NAMES) else None
    native = ConfusionMatrix(space.num_classes, space.class_names, background_index=space.background_index) \
        if space is not None else None
    for batch in _progress(loader, len(loader), f"evaluate {dataset}/{split}", progress):
        inputs = {m: x.numpy() for m, x in batch["inputs"].items()}
        pred = engine.infer_labels(inputs)
        node.update(pred, batch["labels"].numpy())
        if obstacles is not None:  # no depth here: recall by distance needs the synthetic path or a bag
            for frame_pred, frame_labels in zip(pred, batch["labels"].numpy()):
                obstacles.update(frame_pred, frame_labels)
        if native is not None:
            native.update(space.pred(pred), space.target(batch["target"].numpy()))
    out = report(node)
    if obstacles is not None:
        out["obstacles"] = to_json(obstacles.compute())
    out["samples"] = len(ds)
    out["convention"] = {**CONVENTION, "label_space": "node (" + ", ".join(L.CLASS_NAMES) + "); pixels whose "
                         "partial label allows several node classes are ignored",
                         "scored_at": f"model input size {meta.input_size[0]}x{meta.input_size[1]}"}
    if native is not None:
        out["dataset_space"] = {"classes": list(space.class_names), **report(native)}
    return out


def _collate_for(meta: Any):
    from training.train import make_collate

    return make_collate(meta.config)


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------
def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"miou": metrics["miou"], "pixel_accuracy": metrics["pixel_accuracy"],
            "iou": {name: m["iou"] for name, m in metrics["per_class"].items()}}


def _options(items: Sequence[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {item!r} must look like key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _preprocess_config(params: Path | None):
    """Preprocessing of the node parameter file, or the node's defaults."""
    if params is None:
        return None
    from road_seg_ros.config import PerceptionConfig

    return PerceptionConfig.from_yaml(params).preprocess_config()


def _progress(items: Iterable[Any], total: int, desc: str, enabled: bool) -> Iterable[Any]:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
