"""What the node publishes as a pothole: depth verification (with thermal corroboration where depth is missing) and
temporal confirmation of negative-obstacle blobs.

The network paints phantom potholes in two ways (measured on synthetic drives, README):
at night its false pothole blobs lie in stereo holes (at most a third of a blob's
pixels measured, none on nine in ten: dark asphalt gives the depth camera no match,
and the network took "no depth on the road" for a hole), and some are one frame's
mistake. Optional checks on each predicted
negative-obstacle blob (8-connected). A rejected blob is published as background:
neither an obstacle to brake for nor free road (painted drivable, a real pothole the
check could not verify would be planned through; measured, that cost drivable IoU):

* depth verification (`min_depth_share` > 0): the blob is kept only when the depth
  camera measured at least that share of its pixels. Potholes inside stereo holes are
  then reported only on thermal evidence (below); with the depth camera down (no depth
  in the frame) nothing can be verified and the blobs pass unchecked;
* thermal corroboration (`thermal_contrast` > 0, models with a thermal input): a blob
  the depth camera could not verify is kept all the same when a second sensor and the
  network agree on it: its thermal input is colder than a ring around it by at least
  `thermal_contrast` (of the model's (0, 1] thermal range: a pothole holds water and
  cold air, the asphalt around it the day's heat) and the network's mean pothole
  probability over it is at least `thermal_probability`. On the selection drives
  (README) either cue alone kept 63 or 14 of 255 false unverified blobs, both together
  2, and all 8 real ones: the potholes in night stereo holes;
* temporal confirmation (`confirm_frames` > 1): the blob is kept only when it overlaps,
  within `confirm_radius` (a share of the image width, for the motion between frames),
  the blobs that passed verification in each of the previous `confirm_frames - 1`
  frames. The price is `confirm_frames - 1` frames of detection latency.

All run on the model's label image (before upsampling), so their cost and radius do
not depend on the camera's resolution.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from road_seg_core import labels as L
from road_seg_core.depth import resize_nearest

__all__ = ["PotholeFilterConfig", "PotholeFilter", "depth_measured", "class_probability", "COUNTS"]

#: Most frames a blob may be asked to persist: beyond a few frames at 10 Hz a near pothole is gone from view.
MAX_CONFIRM_FRAMES = 10
#: Width in label pixels of the ring of surroundings a blob's thermal image is compared with.
THERMAL_RING = 3
#: What `PotholeFilter.counts` counts, in blobs since start: predicted; failed the depth check; of those, kept on
#: thermal evidence; dropped for want of confirmation; published.
COUNTS = ("blobs", "without_depth", "kept_on_thermal", "unconfirmed", "published")


@dataclass
class PotholeFilterConfig:
    """Parameters `obstacles.min_depth_share`, `obstacles.confirm_frames`, `obstacles.confirm_radius`,
    `obstacles.thermal_contrast` and `obstacles.thermal_probability`."""

    #: Share of a pothole blob's pixels the depth camera must have measured for it to be published; 0 = off.
    min_depth_share: float = 0.5
    #: Frames in a row a negative-obstacle blob must be predicted in to be published; 1 = every blob at once (off).
    confirm_frames: int = 1
    #: How far (share of the image width) a blob may have moved since the previous frame and still confirm it.
    confirm_radius: float = 0.0125
    #: How much colder (model thermal input, (0, 1]) than its surroundings an unverified blob must be for thermal
    #: to corroborate it; 0 = off (blobs without depth are dropped).
    thermal_contrast: float = 0.003
    #: The network's mean pothole probability over an unverified blob needed for thermal corroboration.
    thermal_probability: float = 0.7

    def __post_init__(self) -> None:
        if not 0 <= self.min_depth_share <= 1:
            raise ValueError(f"min_depth_share must be 0 (off) to 1, got {self.min_depth_share:g}")
        if not 1 <= self.confirm_frames <= MAX_CONFIRM_FRAMES:
            raise ValueError(f"confirm_frames must be 1 (off) to {MAX_CONFIRM_FRAMES}, got {self.confirm_frames}")
        if not 0 <= self.confirm_radius <= 0.25:
            raise ValueError(f"confirm_radius must be 0 to 0.25 of the image width, got {self.confirm_radius:g}")
        if not 0 <= self.thermal_contrast <= 0.5:
            raise ValueError(f"thermal_contrast must be 0 (off) to 0.5 of the thermal range, "
                             f"got {self.thermal_contrast:g}")
        if not 0 <= self.thermal_probability <= 1:
            raise ValueError(f"thermal_probability must be 0 to 1, got {self.thermal_probability:g}")

    @property
    def enabled(self) -> bool:
        return self.min_depth_share > 0 or self.confirm_frames > 1

    @property
    def corroborates(self) -> bool:
        """Whether blobs the depth check drops may be kept on thermal evidence (needs the logits and thermal)."""
        return self.min_depth_share > 0 and self.thermal_contrast > 0


def depth_measured(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 mask (1 = measured: finite and > 0) of a depth or disparity image at (height, width), resampled to
    nearest first (holes stay holes, and at 720p a sixth of the pixels is tested)."""
    small = resize_nearest(depth, size)
    with np.errstate(invalid="ignore"):
        return (np.isfinite(small) & (small > 0)).view(np.uint8)


def class_probability(logits: np.ndarray, class_id: int) -> np.ndarray:
    """Softmax probability of `class_id` from logits (K, N): 1 / sum_k exp(l_k - l_class), stable for any
    logit scale (the exponent of the class itself is 1)."""
    shifted = logits - logits[class_id]
    np.exp(np.minimum(shifted, 80.0, out=shifted), out=shifted)  # exp(80) is finite in float32
    return 1.0 / shifted.sum(axis=0)


class PotholeFilter:
    """Filters each new label image in place (rejected blobs become background); keeps the last frames' verified
    pothole masks for confirmation."""

    def __init__(self, config: PotholeFilterConfig | None = None) -> None:
        self.config = config or PotholeFilterConfig()
        #: The verified pothole masks of the last `confirm_frames - 1` frames; None for a frame without any.
        self._history: deque[np.ndarray | None] = deque(maxlen=max(1, self.config.confirm_frames - 1))
        self._kernel: np.ndarray | None = None
        #: Blobs since start by fate (`COUNTS`), for the node's /diagnostics: how often each check acts on the car.
        self.counts: dict[str, int] = dict.fromkeys(COUNTS, 0)

    def reset(self) -> None:
        """Forget the history (a new sequence: the next blobs need `confirm_frames` frames again)."""
        self._history.clear()

    def _support_kernel(self, width: int) -> np.ndarray:
        radius = int(round(self.config.confirm_radius * width))
        if self._kernel is None or self._kernel.shape[0] != 2 * radius + 1:
            # A square (separable, 4x cheaper than a disc at 320x512): up to radius * sqrt(2) on a diagonal.
            self._kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))
        return self._kernel

    def __call__(self, labels: np.ndarray, depth: np.ndarray | None = None, thermal: np.ndarray | None = None,
                 logits: np.ndarray | None = None) -> np.ndarray:
        """Filter a (H, W) uint8 label image in place and return it.

        `depth`: the frame's depth or disparity image at any size (NaN, inf, 0 = not measured); None = nothing to
        verify against (no depth camera in this frame). Only read when the frame has a pothole blob.
        `thermal` ((H, W) model thermal input, 0 = no data) and `logits` ((K, H, W) of the network that made
        `labels`): the evidence for thermal corroboration; without either, none."""
        cfg = self.config
        if not cfg.enabled:
            return labels
        confirming = cfg.confirm_frames > 1
        if confirming and any(m is not None and m.shape != labels.shape for m in self._history):
            self.reset()  # the model's output size changed: the old masks say nothing about this frame
        raw = (labels == L.NEGATIVE_OBSTACLE).view(np.uint8)
        if not raw.any():
            if confirming:
                self._history.append(None)  # no blob: nothing the next frames can be confirmed by
            return labels
        count, blobs = cv2.connectedComponents(raw, connectivity=8, ltype=cv2.CV_16U)
        keep = np.ones(count, bool)
        tally = self.counts
        tally["blobs"] += count - 1
        if cfg.min_depth_share > 0 and depth is not None:
            measured = depth_measured(depth, labels.shape)
            inside = raw.view(bool)  # the blobs' pixels only: a few thousand of the image's
            ids = blobs[inside]
            pixels = np.bincount(ids, minlength=count)
            with_depth = np.bincount(ids, weights=measured[inside], minlength=count)
            keep &= with_depth >= cfg.min_depth_share * pixels
            tally["without_depth"] += int(count - 1 - keep[1:].sum())
            if cfg.corroborates and thermal is not None and logits is not None and not keep[1:].all():
                corroborated = self._corroborated(blobs, ~keep, raw, thermal, logits)
                tally["kept_on_thermal"] += int(corroborated.sum())
                keep |= corroborated
        if confirming:
            verified = keep.copy()
            verified[0] = False
            full = len(self._history) == self._history.maxlen
            if not full or any(previous is None for previous in self._history):
                keep[:] = False  # a frame of the run had no blob (or there is no run yet): nothing confirmed
            else:
                for previous in self._history:
                    support = cv2.dilate(previous, self._support_kernel(raw.shape[1]))
                    keep &= np.bincount(blobs[support.view(bool)], minlength=count) > 0
            self._history.append(np.take(verified.view(np.uint8), blobs) if verified.any() else None)
            tally["unconfirmed"] += int(verified[1:].sum() - keep[1:].sum())
        tally["published"] += int(keep[1:].sum())
        keep[0] = True  # label 0: not a negative-obstacle pixel
        if not keep.all():
            np.putmask(labels, np.take((~keep).view(np.uint8), blobs), L.BACKGROUND)
        return labels

    def _corroborated(self, blobs: np.ndarray, candidates: np.ndarray, raw: np.ndarray, thermal: np.ndarray,
                      logits: np.ndarray) -> np.ndarray:
        """Which `candidates` (blob ids, bool per id) thermal and the network's confidence corroborate."""
        cfg = self.config
        if thermal.shape != blobs.shape or logits.shape[1:] != blobs.shape:
            raise ValueError(f"thermal {thermal.shape} and logits {logits.shape} must be at the label size "
                             f"{blobs.shape}")
        found = np.zeros(len(candidates), bool)
        ring = THERMAL_RING
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * ring + 1, 2 * ring + 1))
        height, width = blobs.shape
        rows, cols = np.nonzero(raw)  # every blob's pixels, grouped by blob id below
        ids = blobs[rows, cols]
        order = np.argsort(ids, kind="stable")
        ends = np.cumsum(np.bincount(ids, minlength=len(candidates)))
        for blob in np.flatnonzero(candidates[1:]) + 1:
            mine = order[ends[blob - 1]:ends[blob]]
            ys, xs = rows[mine], cols[mine]
            top, bottom = max(0, ys.min() - ring), min(height, ys.max() + ring + 1)
            left, right = max(0, xs.min() - ring), min(width, xs.max() + ring + 1)
            inside = (blobs[top:bottom, left:right] == blob).view(np.uint8)
            heat = thermal[top:bottom, left:right]
            around = cv2.dilate(inside, kernel).view(bool) & ~raw[top:bottom, left:right].view(bool) & (heat > 0)
            measured = inside.view(bool) & (heat > 0)
            if not around.any() or not measured.any():
                continue  # outside the thermal camera's view: no evidence
            if heat[around].mean() - heat[measured].mean() < cfg.thermal_contrast:
                continue
            probability = class_probability(logits[:, ys, xs].astype(np.float32, copy=False), L.NEGATIVE_OBSTACLE)
            found[blob] = probability.mean() >= cfg.thermal_probability
        return found
