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
    road-seg evaluate --dataset synthetic --drive --drives 3 --frames 45 --seed 7001   # 3 drives, pooled
    road-seg evaluate --checkpoint runs/npo/best.pt --dataset npo --root /data/NPO --split test
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from road_seg_core import labels as L
from road_seg_core.depth import resize_nearest
from road_seg_core.errors import UserError
from road_seg_core.metrics import ConfusionMatrix, to_json
from road_seg_core.obstacle_metrics import ObstacleCounter, obstacle_convention
from road_seg_core.pothole_filter import PotholeFilterConfig
from road_seg_training.split_eval import own_space, report, score_batches

CONVENTION = {
    "matrix": "rows ground truth, columns prediction; ground truth 255 (ignore or ambiguous partial label) skipped",
    "miou": "mean IoU over all classes incl. background (MFNet/RTFNet); classes absent from ground truth and "
            "prediction are excluded",
    "miou_without_background": "mean IoU over the non-background classes (InconSeg/NPO tables)",
    "recall": "tp / (tp + fn), the per-class 'Acc' of the RTFNet tables",
}


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
                       preprocess: Any = None, progress: bool = False, drop: Sequence[str] = (),
                       pothole_filter: PotholeFilterConfig | None = None, drives: int = 1) -> dict[str, Any]:
    """Metrics of `engine` on freshly rendered synthetic frames, overall and per condition (`drop`: sensors down;
    `pothole_filter`: which pothole blobs are published, default the node's; confirmation over frames needs a
    drive). With `drives` > 1 (needs `drive`), drives seed..seed+drives-1 of `frames` frames each, every one its
    own sequence: the metrics pooled over all of them, and each drive's under ``by_drive``."""
    if frames < 1:
        raise UserError(f"--frames must be >= 1, got {frames}")
    if drives < 1:
        raise UserError(f"--drives must be >= 1, got {drives}")
    if drives > 1 and not drive:
        raise UserError(f"--drives {drives} needs --drive (independent scenes are numbered by --frames already)")
    if pothole_filter is not None and pothole_filter.confirm_frames > 1 and not drive:
        raise UserError(f"pothole confirmation over {pothole_filter.confirm_frames} frames needs successive frames: "
                        f"give --drive (independent scenes are no sequence)")
    if drives == 1:
        scenes = _progress(synthetic_scenes(frames, seed, width, height, conditions, drive), frames, "evaluate",
                           progress)
        return evaluate_scenes(engine, scenes, preprocess, drop, pothole_filter)
    from road_seg_core.pipeline import SegmentationPipeline

    pipeline = SegmentationPipeline(engine, preprocess, obstacles=pothole_filter)
    pooled, by_drive = _Scores(), {}
    for drive_seed in range(seed, seed + drives):
        pipeline.reset()  # a new drive: no road plane or pothole history from the last one
        scenes = _progress(synthetic_scenes(frames, drive_seed, width, height, conditions, drive=True), frames,
                           f"evaluate drive {drive_seed}", progress)
        scores = _score(pipeline, scenes, drop)
        by_drive[str(drive_seed)] = scores.report(brief=True)
        pooled.merge(scores)
    out = pooled.report()
    out["by_drive"] = by_drive
    return out


def evaluate_scenes(engine: Any, scenes: Iterable[Any], preprocess: Any = None,
                    drop: Sequence[str] = (), pothole_filter: PotholeFilterConfig | None = None) -> dict[str, Any]:
    """Run `SyntheticScene`s through `SegmentationPipeline` and score them against their exact labels.

    `drop` names sensors that are down at test time: depth/disparity/thermal
    are absent from the frame (the node feeds zeros), a dead colour camera
    delivers black frames. The scenes are one sequence (the road plane and
    the pothole confirmation, when on, carry over between them).
    """
    from road_seg_core.pipeline import SegmentationPipeline

    pipeline = SegmentationPipeline(engine, preprocess, obstacles=pothole_filter)
    return _score(pipeline, scenes, drop).report()


def _score(pipeline: Any, scenes: Iterable[Any], drop: Sequence[str]) -> "_Scores":
    """`scenes` run through `pipeline` as one sequence, counted against their exact labels."""
    scores = _Scores()
    for scene in scenes:
        frame = without_sensors(scene.frame, drop) if drop else scene.frame
        result = pipeline.run(frame)
        depth_gt = scene.frame.extras.get("depth_gt")  # exact distances, for recall by distance
        measured = _measured_depth(frame, depth_gt)  # what the depth camera saw: recall with / without it
        # The simulator's pothole ids: recall counts potholes, not the dashes a far crack renders as.
        scores.update(scene.condition, result.masks.labels, scene.labels, depth_gt, measured,
                      scene.frame.extras.get("pothole_ids"))
        scores.latency.append(sum(result.timings_ms.values()))
    if not scores.latency:
        raise UserError("no frames to evaluate")
    return scores


@dataclass
class _Scores:
    """Confusion matrices and obstacle counts of some frames, overall and per condition; they merge, so drives
    scored one by one pool into one report."""

    overall: ConfusionMatrix = field(default_factory=ConfusionMatrix)
    obstacles: ObstacleCounter = field(default_factory=ObstacleCounter)
    by_condition: dict[str, ConfusionMatrix] = field(default_factory=dict)
    obstacles_by_condition: dict[str, ObstacleCounter] = field(default_factory=dict)
    latency: list[float] = field(default_factory=list)

    def update(self, condition: str, pred: np.ndarray, target: np.ndarray, depth_gt: np.ndarray | None,
               measured: np.ndarray | None, instances: np.ndarray | None = None) -> None:
        self.overall.update(pred, target)
        self.by_condition.setdefault(condition, ConfusionMatrix()).update(pred, target)
        self.obstacles.update(pred, target, depth_gt, measured, instances)
        self.obstacles_by_condition.setdefault(condition, ObstacleCounter()).update(pred, target, depth_gt,
                                                                                     measured, instances)

    def merge(self, other: "_Scores") -> None:
        self.overall.merge(other.overall)
        self.obstacles.merge(other.obstacles)
        for condition, cm in other.by_condition.items():
            self.by_condition.setdefault(condition, ConfusionMatrix()).merge(cm)
            self.obstacles_by_condition.setdefault(condition, ObstacleCounter()).merge(
                other.obstacles_by_condition[condition])
        self.latency.extend(other.latency)

    def report(self, brief: bool = False) -> dict[str, Any]:
        """The JSON metrics; `brief`: mIoU, IoU and obstacle counts only (one drive of several)."""
        overall = report(self.overall)
        out = _brief(overall) if brief else overall
        out["obstacles"] = to_json(self.obstacles.compute())
        out["by_condition"] = {c: {**_brief(report(cm)), "obstacles": to_json(self.obstacles_by_condition[c].compute())}
                               for c, cm in sorted(self.by_condition.items())}
        out["pipeline_ms_median"] = round(float(np.median(self.latency)), 2)
        if not brief:
            out["convention"] = {**CONVENTION, **obstacle_convention(self.obstacles),
                                 "label_space": "node (" + ", ".join(L.CLASS_NAMES) + ")",
                                 "scored_at": "camera resolution, after the pipeline's label upsampling"}
        return out


def _measured_depth(frame: Any, depth_gt: np.ndarray | None) -> np.ndarray | None:
    """The frame's measured depth at label size, all holes when its depth sensor is down; None without ground
    truth depth (no near potholes to split)."""
    if depth_gt is None:
        return None
    if frame.depth is None:
        return np.zeros(np.shape(depth_gt), np.float32)
    return frame.depth if frame.depth.shape == np.shape(depth_gt) else resize_nearest(frame.depth, np.shape(depth_gt))


def without_sensors(frame: Any, drop: Sequence[str]) -> Any:
    """A copy of a SensorFrame as the node would receive it with the `drop`ped sensors down."""
    import dataclasses

    unknown = sorted(set(drop) - {"rgb", "depth", "disparity", "thermal"})
    if unknown:
        raise UserError(f"--drop: unknown sensors {unknown}; known: rgb, depth, disparity, thermal")
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

    from road_seg_training.datasets import build_dataset, make_collate

    meta = engine.meta
    ds = build_dataset(dataset, root, split, modalities=tuple(meta.modalities), input_size=tuple(meta.input_size),
                       augment=False, **options)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         collate_fn=make_collate(meta.config))
    batches = _progress(loader, len(loader), f"evaluate {dataset}/{split}", progress)
    predict = lambda batch: engine.infer_labels({m: x.numpy() for m, x in batch["inputs"].items()})  # noqa: E731
    out = score_batches(batches, predict, meta.class_names, own_space(ds, meta.class_names)).report()
    out["samples"] = len(ds)
    out["convention"] = {**CONVENTION, "label_space": "node (" + ", ".join(L.CLASS_NAMES) + "); pixels whose "
                         "partial label allows several node classes are ignored",
                         "scored_at": f"model input size {meta.input_size[0]}x{meta.input_size[1]}"}
    if "dataset_space" in out:  # keep the report's key order: node metrics, samples, convention, dataset space
        out["dataset_space"] = out.pop("dataset_space")
    return out


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------
def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"miou": metrics["miou"], "pixel_accuracy": metrics["pixel_accuracy"],
            "iou": {name: m["iou"] for name, m in metrics["per_class"].items()}}


def node_settings(params: Path | None, **obstacle_overrides: Any) -> tuple[Any, PotholeFilterConfig]:
    """(PreprocessConfig, PotholeFilterConfig) of the node parameter file, or the node's defaults;
    `obstacle_overrides` (e.g. confirm_frames=2; None = keep) replace the file's `obstacles.*`. A bad file or value
    is a UserError."""
    import dataclasses

    from road_seg_core.node_config import PerceptionConfig

    preprocess, obstacles = None, PotholeFilterConfig()
    if params is not None:
        try:
            cfg = PerceptionConfig.from_yaml(params)
        except (FileNotFoundError, ValueError) as exc:
            raise UserError(f"--params {params}: {exc}") from None
        preprocess, obstacles = cfg.preprocess_config(), cfg.obstacles
    for name, value in obstacle_overrides.items():
        if value is not None:
            try:
                obstacles = dataclasses.replace(obstacles, **{name: value})
            except ValueError as exc:
                raise UserError(f"--{name.replace('_', '-')}: {exc}") from None
    return preprocess, obstacles


def _progress(items: Iterable[Any], total: int, desc: str, enabled: bool) -> Iterable[Any]:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
