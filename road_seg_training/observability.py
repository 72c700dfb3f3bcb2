"""What the sensors show of each near pothole: the recall any model could reach on these inputs.

A recall target is only meaningful below what the inputs carry. For every
ground-truth pothole nearer than `NEAR_M` (the objects of `pothole_recall_near`)
this measures, in the planes the node feeds the model but at the frame's own
resolution, how far the pothole stands out from a 2-pixel ring of its
surroundings: ``|mean inside - mean of ring| / std of ring`` in grey level
(colour), thermal and road-plane height, each over its valid pixels (0 = no
data; a plane without 3 valid pixels on both sides counts 0). A pothole below
`threshold` in all three is one no model on these inputs can be expected to
find: the recall ceiling is the share of the others.

    python -m road_seg_training.observability --drives 3 --seed 7001 --frames 45 --width 640 --height 360

prints one JSON object: per condition and pooled, near potholes, those below the
threshold in every modality, and the ceiling. Frames are the ones `road-seg
evaluate --dataset synthetic --drive` scores with the same flags.
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from road_seg_core import labels as L
from road_seg_core.metrics import to_json
from road_seg_core.obstacle_metrics import NEAR_M, ground_truth_objects, object_depths

#: Ring of surroundings a pothole is compared with, in pixels.
RING_PX = 2
#: Planes compared, from the preprocessed inputs: grey level of rgb, thermal, road-plane height.
PLANES = ("rgb", "thermal", "height")


def contrast(values: np.ndarray, valid: np.ndarray, inside: np.ndarray, ring: np.ndarray) -> float:
    """``|mean(inside) - mean(ring)| / std(ring)`` over valid pixels; 0 with fewer than 3 valid on either side."""
    a, b = values[inside & valid], values[ring & valid]
    if a.size < 3 or b.size < 3:
        return 0.0
    return float(abs(a.mean() - b.mean()) / max(float(b.std()), 1e-6))


def near_pothole_contrasts(planes: Mapping[str, np.ndarray], target: np.ndarray, depth: np.ndarray,
                           instances: np.ndarray | None = None, near_m: float = NEAR_M) -> list[dict[str, float]]:
    """Contrast of each near ground-truth pothole in each plane (2-D arrays of `target`'s shape; rgb as grey).

    `depth` is the exact depth (metres) that gives each object its distance; `instances` the simulator's pothole
    ids (else objects are connected components), as in `ObstacleCounter`."""
    truth = target == L.NEGATIVE_OBSTACLE
    if not truth.any():
        return []
    count, objects, boxes = ground_truth_objects(truth, instances)
    distance = object_depths(objects, boxes, np.asarray(depth, np.float64))
    kernel = np.ones((2 * RING_PX + 1, 2 * RING_PX + 1), np.uint8)
    rows = []
    for index in np.flatnonzero(np.isfinite(distance) & (distance < near_m)):
        inside = objects == index + 1
        ring = (cv2.dilate(inside.astype(np.uint8), kernel) > 0) & ~truth
        row = {"distance_m": float(distance[index])}
        for name, plane in planes.items():
            valid = np.ones(plane.shape, bool) if name == "rgb" else plane > 0
            row[name] = contrast(plane, valid, inside, ring)
        rows.append(row)
    return rows


def planes_of(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The compared planes from a Preprocessor's (1, C, H, W) outputs: rgb as its grey level."""
    out = {}
    for name in PLANES:
        if name in inputs:
            tensor = inputs[name][0]
            out[name] = tensor.mean(axis=0) if name == "rgb" else tensor[0]
    return out


def summarise(rows_by_condition: Mapping[str, list[dict[str, float]]], threshold: float) -> dict[str, Any]:
    """Near potholes, those below `threshold` in every plane, and the recall ceiling, per condition and pooled."""
    def block(rows: list[dict[str, float]]) -> dict[str, Any]:
        hidden = sum(max(v for k, v in r.items() if k != "distance_m") < threshold for r in rows)
        return {"near_potholes": len(rows), "below_threshold_everywhere": hidden,
                "recall_ceiling": (len(rows) - hidden) / len(rows) if rows else float("nan")}

    pooled = [r for rows in rows_by_condition.values() for r in rows]
    return {"threshold": threshold, "near_m": NEAR_M, **block(pooled),
            "by_condition": {c: block(rows) for c, rows in rows_by_condition.items()}}


def measure(drives: int, seed: int, frames: int, width: int, height: int, modalities: Sequence[str],
            threshold: float) -> dict[str, Any]:
    """Render the drives `road-seg evaluate --drive` scores and summarise their near potholes' contrasts."""
    from road_seg_core.preprocess import Preprocessor
    from road_seg_training.evaluate import synthetic_scenes

    preprocessor = Preprocessor(tuple(modalities), (height, width))
    by_condition: dict[str, list[dict[str, float]]] = {}
    for drive in range(seed, seed + drives):
        preprocessor.reset()  # each drive its own sequence, as evaluate runs it
        for scene in synthetic_scenes(frames, drive, width, height, ("day", "night", "fog"), drive=True):
            planes = planes_of(preprocessor(scene.frame))
            extras = scene.frame.extras
            rows = near_pothole_contrasts(planes, scene.labels, extras["depth_gt"], extras.get("pothole_ids"))
            by_condition.setdefault(scene.condition, []).extend(rows)
    return summarise(by_condition, threshold)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m road_seg_training.observability",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--drives", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7001)
    parser.add_argument("--frames", type=int, default=45, help="frames per drive")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="contrast (in ring standard deviations) below which a plane shows nothing")
    args = parser.parse_args(argv)
    if args.drives < 1 or args.frames < 1 or args.width < 32 or args.height < 32 or not args.threshold > 0:
        parser.error(f"need --drives >= 1, --frames >= 1, a size of at least 32x32 and --threshold > 0; got "
                     f"{args.drives}, {args.frames}, {args.width}x{args.height}, {args.threshold:g}")
    result = measure(args.drives, args.seed, args.frames, args.width, args.height,
                     ("rgb", "depth", "thermal", "height"), args.threshold)
    print(json.dumps(to_json(result), indent=2, allow_nan=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
