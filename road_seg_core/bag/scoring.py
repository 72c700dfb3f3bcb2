"""Accumulates what a bag evaluation reports: confusion matrices (overall, per condition), per-frame scores,
per-stage latencies, and the few frames worth looking at (worst and best) for the report's montage.

All accuracy numbers come from road_seg_core.metrics.ConfusionMatrix, so they
are computed exactly as training's evaluation computes them.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from road_seg_core import labels as L
from road_seg_core.depth import resize_nearest
from road_seg_core.metrics import ConfusionMatrix
from road_seg_core.obstacle_metrics import ObstacleCounter
from road_seg_core.visualize import compose_small

LATENCY_STAGES = ("decode", "convert", "preprocess", "model", "postprocess", "total")
THUMB_WIDTH = 320


def merged_iou(matrix: np.ndarray, classes: tuple[int, ...]) -> float:
    """IoU of the union of `classes` against everything else (e.g. the node's obstacle mask); NaN if absent."""
    inside = np.zeros(matrix.shape[0], bool)
    inside[list(classes)] = True
    tp = matrix[np.ix_(inside, inside)].sum()
    fp = matrix[np.ix_(~inside, inside)].sum()
    fn = matrix[np.ix_(inside, ~inside)].sum()
    denom = tp + fp + fn
    return float(tp / denom) if denom > 0 else math.nan


def summarize(cm: ConfusionMatrix) -> dict[str, Any]:
    """ConfusionMatrix.compute() plus the two numbers the node's outputs are judged by."""
    metrics = cm.compute()
    metrics["drivable_iou"] = metrics["per_class"][L.CLASS_NAMES[L.DRIVABLE]]["iou"]
    metrics["obstacle_iou"] = merged_iou(cm.matrix, L.OBSTACLE_CLASSES)
    return metrics


def latency_stats(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"count": 0}
    a = np.asarray(samples, np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"count": int(a.size), "mean": float(a.mean()), "p50": float(p50), "p90": float(p90),
            "p99": float(p99), "max": float(a.max())}


@dataclass(order=True)
class Tile:
    """A frame kept for the montage: camera | prediction | ground truth (road_seg_core.visualize), downscaled."""

    score: float
    stamp_ns: int
    condition: str | None = field(compare=False)
    image: np.ndarray = field(compare=False, repr=False)


def make_tile(rgb: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The report's row for a frame: road_seg_core.visualize's panels at thumbnail size, legend left to the montage."""
    return compose_small(rgb, pred, gt, THUMB_WIDTH, legend=False)


class Scoreboard:
    """Everything eval-bag accumulates while frames stream by; memory stays bounded by `keep` tiles."""

    def __init__(self, class_names: tuple[str, ...] = L.CLASS_NAMES, keep: int = 3) -> None:
        self.class_names = tuple(class_names)
        self.overall = ConfusionMatrix(len(class_names), class_names)
        self.by_condition: dict[str, ConfusionMatrix] = {}
        self.obstacles = ObstacleCounter()
        self.obstacles_by_condition: dict[str, ObstacleCounter] = {}
        self.frames_by_condition: dict[str, int] = {}
        self.latency: dict[str, list[float]] = {s: [] for s in LATENCY_STAGES}
        self.frame_scores: list[tuple[int, float]] = []  # (left stamp, frame mIoU)
        self.keep = keep
        self._worst: list[tuple[float, int, Tile]] = []  # max-heap on score via negation
        self._best: list[tuple[float, int, Tile]] = []  # min-heap on score
        self.evaluated = 0
        self.without_gt = 0

    def add_timings(self, timings_ms: dict[str, float]) -> None:
        for stage in LATENCY_STAGES:
            if stage in timings_ms:
                self.latency[stage].append(float(timings_ms[stage]))

    def add_frame(self, stamp_ns: int, rgb: np.ndarray, pred: np.ndarray, gt: np.ndarray | None,
                  condition: str | None, depth: np.ndarray | None = None,
                  pothole_ids: np.ndarray | None = None) -> None:
        """Score one frame's full-resolution labels against its ground truth (None: not scored).

        `depth` (metres, any resolution; the bag's measured depth) gives each
        ground-truth pothole its distance for the near-pothole recall;
        `pothole_ids` (the size of `gt`, 0 = none) which pothole each pothole pixel is.
        """
        if gt is None:
            self.without_gt += 1
            return
        self.overall.update(pred, gt)
        if depth is not None and depth.shape != gt.shape:
            depth = resize_nearest(depth, gt.shape)
        # the bag's depth: distances and what the camera measured
        self.obstacles.update(pred, gt, depth, depth, pothole_ids)
        if condition is not None:
            if condition not in self.by_condition:
                self.by_condition[condition] = ConfusionMatrix(len(self.class_names), self.class_names)
                self.obstacles_by_condition[condition] = ObstacleCounter()
                self.frames_by_condition[condition] = 0
            self.by_condition[condition].update(pred, gt)
            self.obstacles_by_condition[condition].update(pred, gt, depth, depth, pothole_ids)
            self.frames_by_condition[condition] += 1
        frame_cm = ConfusionMatrix(len(self.class_names), self.class_names)
        frame_cm.update(pred, gt)
        score = frame_cm.compute()["miou"]
        self.evaluated += 1
        if math.isnan(score):  # every pixel ignored: nothing to show
            return
        self.frame_scores.append((int(stamp_ns), score))
        self._offer(score, int(stamp_ns), condition, rgb, pred, gt)

    def _offer(self, score: float, stamp: int, condition: str | None, rgb, pred, gt) -> None:
        if self.keep <= 0:  # no montage asked for
            return
        tile: Tile | None = None

        def make() -> Tile:
            nonlocal tile
            if tile is None:
                tile = Tile(score, stamp, condition, make_tile(rgb, gt, pred))
            return tile

        if len(self._worst) < self.keep:
            heapq.heappush(self._worst, (-score, stamp, make()))
        elif -self._worst[0][0] > score:
            heapq.heapreplace(self._worst, (-score, stamp, make()))
        if len(self._best) < self.keep:
            heapq.heappush(self._best, (score, stamp, make()))
        elif self._best[0][0] < score:
            heapq.heapreplace(self._best, (score, stamp, make()))

    def worst(self) -> list[Tile]:
        return sorted(t for _, _, t in self._worst)

    def best(self) -> list[Tile]:
        """Best frames, best first, leaving out those already among the worst (short bags)."""
        shown = {t.stamp_ns for t in self.worst()}
        return sorted((t for _, _, t in self._best if t.stamp_ns not in shown), reverse=True)

    def accuracy(self) -> dict[str, Any] | None:
        if not self.evaluated:
            return None
        return {**summarize(self.overall), "obstacles": self.obstacles.compute()}

    def per_condition(self) -> dict[str, Any]:
        out = {}
        for name in sorted(self.by_condition):
            entry = {"frames": self.frames_by_condition[name]}
            entry.update(summarize(self.by_condition[name]))
            entry["obstacles"] = self.obstacles_by_condition[name].compute()
            out[name] = entry
        return out

    def latency_summary(self) -> dict[str, dict[str, float]]:
        return {stage: latency_stats(samples) for stage, samples in self.latency.items() if samples}
