"""Object-level obstacle metrics: phantom potholes on a clear road, and potholes found one by one.

IoU alone hides both things a planner cares about. A model that paints a small
orange blob on every clear road scores a fine IoU on a drive with large potholes
but brakes for nothing all day; a model that finds the big near pothole and
misses three small ones loses little IoU. Per frame this module counts

* phantom frames: the ground truth has no negative obstacle (no pothole pixel)
  but the prediction has a connected negative-obstacle blob of more than
  `min_area_fraction` of the image;
* false pothole blobs: predicted negative-obstacle blobs of more than
  `min_area_fraction` of the image that touch no ground-truth negative
  obstacle pixel, over all predicted blobs of that size, in every frame: a
  phantom in a frame that also holds a real pothole elsewhere is not a
  phantom frame, but it is a false blob (the planner brakes for it all the same);
* pothole recall by object: the ground-truth potholes, each found when at
  least one predicted negative obstacle pixel overlaps it. Objects are the
  potholes themselves where the ground truth names them (`instances`: the
  simulator's per-pixel pothole ids; a crack seen at a grazing angle renders
  as a row of separate one-pixel dashes, which are one pothole), else the
  connected components of the ground-truth negative obstacle (8-connected:
  label images, recorded bags). Also only for objects nearer than `near_m`
  (median ground-truth depth of the object's pixels) when depth is given, and
  of those only the ones the depth camera measured (at least
  `MIN_SENSOR_COVERAGE` of their pixels) when its depth is given too: a
  pothole in a stereo hole (dark asphalt at night, a shadowed interior) has
  to be found from colour and thermal alone, and users need to see which of
  the two kinds the misses are.

`ObstacleCounter` accumulates over frames (and merges, like ConfusionMatrix);
`compute()` returns plain JSON-able numbers, NaN where nothing was counted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from road_seg_core import labels as L

#: A predicted blob must cover more than this share of the image to make a phantom frame
#: (46 px at 1280x720, 12 px at 640x360): single stray pixels at a label edge are not an alarm.
MIN_AREA_FRACTION = 5e-5
#: Potholes nearer than this (metres) are the ones a car must not miss.
NEAR_M = 20.0
#: A ground-truth object counts as measured by the depth camera when at least this share of its pixels has depth.
MIN_SENSOR_COVERAGE = 0.5


def _components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, label image, stats rows x, y, w, h, area) of a bool mask's 8-connected components (no background)."""
    count, label_image, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return count - 1, label_image, stats[1:]


def ground_truth_objects(truth: np.ndarray, instances: np.ndarray | None) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, label image 1..count, boxes x, y, w, h) of the ground-truth objects: `instances`' ids on the `truth`
    pixels (a truth pixel without an id is an object of its own component), else 8-connected components."""
    count, label_image, stats = _components(truth)
    if instances is None:
        return count, label_image, stats[:, :4]
    # Only the truth pixels' ids are read (a few thousand of the image's). Pixels without an id keep their
    # component, numbered after every id so the two never collide.
    ys, xs = np.nonzero(truth)
    pixel_ids = np.asarray(instances)[ys, xs].astype(np.int64)
    key = np.where(pixel_ids > 0, pixel_ids, pixel_ids.max(initial=0) + label_image[ys, xs])
    values, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.ravel()
    objects = np.zeros(truth.shape, np.int32)
    objects[ys, xs] = inverse + 1
    count = len(values)
    x0, y0 = np.full(count, truth.shape[1]), np.full(count, truth.shape[0])
    x1, y1 = np.zeros(count, np.int64), np.zeros(count, np.int64)
    np.minimum.at(x0, inverse, xs), np.minimum.at(y0, inverse, ys)
    np.maximum.at(x1, inverse, xs), np.maximum.at(y1, inverse, ys)
    return count, objects, np.stack([x0, y0, x1 - x0 + 1, y1 - y0 + 1], axis=1)


def object_depths(label_image: np.ndarray, boxes: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Median valid depth of each object of `ground_truth_objects` (NaN without any valid depth), looked up
    inside its bounding box."""
    out = np.full(len(boxes), np.nan)
    for i, (x, y, w, h) in enumerate(boxes):
        window = depth[y:y + h, x:x + w]
        values = window[(label_image[y:y + h, x:x + w] == i + 1) & np.isfinite(window) & (window > 0)]
        if values.size:
            out[i] = float(np.median(values))
    return out


@dataclass
class ObstacleCounter:
    """Phantom frames and per-object pothole recall over any number of frames."""

    negative_class: int = L.NEGATIVE_OBSTACLE
    ignore_index: int = L.IGNORE
    min_area_fraction: float = MIN_AREA_FRACTION
    near_m: float = NEAR_M
    frames: int = 0
    clear_frames: int = 0  # frames whose ground truth has no negative obstacle
    phantom_frames: int = 0
    objects: int = 0
    objects_found: int = 0
    near_objects: int = 0
    near_found: int = 0
    #: Near objects the depth camera measured (`MIN_SENSOR_COVERAGE`), when its depth was given, and those found.
    near_measured: int = 0
    near_measured_found: int = 0
    #: Ground-truth objects whose distance was unknown (no depth given, or no valid depth on them).
    objects_without_depth: int = 0
    #: Predicted negative-obstacle blobs larger than `min_area_fraction` of the image, and those touching no true one.
    blobs: int = 0
    false_blobs: int = 0
    #: Frames with potholes whose objects were the ground truth's instances (the rest: connected components).
    frames_with_instances: int = 0

    def update(self, pred: np.ndarray, target: np.ndarray, depth: np.ndarray | None = None,
               sensor_depth: np.ndarray | None = None, instances: np.ndarray | None = None) -> dict[str, int]:
        """Count one frame (label maps of equal shape; `depth` in metres, same shape, 0/NaN/inf = unknown).

        `depth` gives each object its distance (exact depth where there is one, else the measured depth);
        `sensor_depth` is what the depth camera measured (same shape, 0/NaN/inf = no measurement), which
        splits the near objects into measured and not; `instances` (same shape, integer ids, 0 = none) names
        the object each ground-truth pothole pixel belongs to (else objects are connected components).

        Returns this frame's counts ({"phantom": 0/1, "objects": n, "found": k}).
        Pixels whose ground truth is `ignore_index` neither make a frame clear
        nor belong to an object, and predictions there are not counted.
        """
        pred, target = np.asarray(pred), np.asarray(target)
        if pred.shape != target.shape or pred.ndim != 2:
            raise ValueError(f"need 2-D prediction and target of one shape, got {pred.shape} and {target.shape}")
        if depth is not None and np.shape(depth) != target.shape:
            raise ValueError(f"depth shape {np.shape(depth)} != target shape {target.shape}")
        if sensor_depth is not None and np.shape(sensor_depth) != target.shape:
            raise ValueError(f"sensor_depth shape {np.shape(sensor_depth)} != target shape {target.shape}")
        if instances is not None and np.shape(instances) != target.shape:
            raise ValueError(f"instances shape {np.shape(instances)} != target shape {target.shape}")
        scored = target != self.ignore_index
        truth = target == self.negative_class
        predicted = (pred == self.negative_class) & scored
        self.frames += 1
        frame = {"phantom": 0, "objects": 0, "found": 0, "blobs": 0, "false_blobs": 0}
        if predicted.any():
            count, blob_image, stats = _components(predicted)
            large = stats[:, cv2.CC_STAT_AREA] > self.min_area_fraction * target.size
            touches = np.zeros(count + 1, bool)
            touches[np.unique(blob_image[truth & predicted])] = True
            frame.update(blobs=int(large.sum()), false_blobs=int((large & ~touches[1:]).sum()))
            self.blobs += frame["blobs"]
            self.false_blobs += frame["false_blobs"]
        if not truth.any():
            self.clear_frames += 1
            if frame["blobs"]:
                self.phantom_frames += 1
                frame["phantom"] = 1
            return frame
        count, label_image, boxes = ground_truth_objects(truth, instances)
        self.frames_with_instances += instances is not None
        hit = np.zeros(count + 1, bool)
        hit[np.unique(label_image[predicted & truth])] = True
        found = hit[1:]
        self.objects += count
        self.objects_found += int(found.sum())
        frame.update(objects=count, found=int(found.sum()))
        if depth is None:
            self.objects_without_depth += count
            return frame
        distance = object_depths(label_image, boxes, np.asarray(depth, np.float64))
        known = np.isfinite(distance)
        self.objects_without_depth += int((~known).sum())
        near = known & (distance < self.near_m)
        self.near_objects += int(near.sum())
        self.near_found += int((near & found).sum())
        if sensor_depth is not None:
            measured = near & (self._object_coverage(label_image, count, sensor_depth) >= MIN_SENSOR_COVERAGE)
            self.near_measured += int(measured.sum())
            self.near_measured_found += int((measured & found).sum())
        return frame

    @staticmethod
    def _object_coverage(label_image: np.ndarray, count: int, depth: np.ndarray) -> np.ndarray:
        """Share of each object's pixels with a measurement (finite and > 0) in `depth`."""
        depth = np.asarray(depth)
        with np.errstate(invalid="ignore"):
            has = np.isfinite(depth) & (depth > 0)
        pixels = np.bincount(label_image.ravel(), minlength=count + 1)[1:]
        covered = np.bincount(label_image[has], minlength=count + 1)[1:]
        return covered / np.maximum(pixels, 1)

    def merge(self, other: "ObstacleCounter") -> None:
        for name in ("frames", "clear_frames", "phantom_frames", "objects", "objects_found", "near_objects",
                     "near_found", "near_measured", "near_measured_found", "objects_without_depth", "blobs",
                     "false_blobs", "frames_with_instances"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def compute(self) -> dict[str, Any]:
        """Shares (NaN when their denominator is 0) and the raw counts behind them."""
        def share(numerator: int, denominator: int) -> float:
            return numerator / denominator if denominator else math.nan

        return {
            "phantom_frame_rate": share(self.phantom_frames, self.clear_frames),
            "false_pothole_blob_rate": share(self.false_blobs, self.blobs),
            "pothole_blobs": self.blobs, "false_pothole_blobs": self.false_blobs,
            "pothole_recall": share(self.objects_found, self.objects),
            f"pothole_recall_near_{self.near_m:g}m": share(self.near_found, self.near_objects),
            "frames": self.frames, "clear_frames": self.clear_frames, "phantom_frames": self.phantom_frames,
            "potholes": self.objects, "potholes_found": self.objects_found,
            "near_potholes": self.near_objects, "near_potholes_found": self.near_found,
            f"pothole_recall_near_{self.near_m:g}m_with_sensor_depth": share(self.near_measured_found,
                                                                             self.near_measured),
            "near_potholes_with_sensor_depth": self.near_measured,
            "near_potholes_with_sensor_depth_found": self.near_measured_found,
            "potholes_without_depth": self.objects_without_depth,
            "frames_with_pothole_instances": self.frames_with_instances,
            "min_blob_fraction": self.min_area_fraction,
        }


def obstacle_convention(counter: ObstacleCounter | None = None) -> dict[str, str]:
    """What the obstacle numbers mean, for metrics files and reports."""
    counter = counter or ObstacleCounter()
    return {
        "phantom_frame_rate": "share of frames without ground-truth negative obstacle in which the prediction has an "
                              f"8-connected negative-obstacle blob larger than {counter.min_area_fraction:g} of the "
                              "image",
        "false_pothole_blob_rate": "share of the predicted negative-obstacle blobs larger than "
                                   f"{counter.min_area_fraction:g} of the image (8-connected, in every frame) that "
                                   "touch no ground-truth negative-obstacle pixel",
        "pothole_recall": "share of ground-truth potholes that at least one predicted negative-obstacle pixel "
                          "overlaps; a pothole is one instance of the ground truth where it names them (simulator "
                          "frames: a crack rendered as separate dashes is one pothole), else one 8-connected "
                          "component of the negative-obstacle labels (label images, bags)",
        f"pothole_recall_near_{counter.near_m:g}m": f"the same for objects whose median depth is < {counter.near_m:g} m",
        f"pothole_recall_near_{counter.near_m:g}m_with_sensor_depth":
            f"the same for the near objects the depth camera measured on at least {MIN_SENSOR_COVERAGE:g} of their "
            "pixels (the rest lie in stereo holes and must be found from colour and thermal)",
    }
