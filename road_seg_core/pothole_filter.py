"""What the node publishes as a pothole: depth verification and temporal confirmation of negative-obstacle blobs.

The network paints phantom potholes in two ways (measured on synthetic drives, README):
at night its false pothole blobs lie in stereo holes (at most a third of a blob's
pixels measured, none on nine in ten: dark asphalt gives the depth camera no match,
and the network took "no depth on the road" for a hole), and some are one frame's
mistake. Two optional checks on each predicted
negative-obstacle blob (8-connected). A rejected blob is published as background:
neither an obstacle to brake for nor free road (painted drivable, a real pothole the
check could not verify would be planned through; measured, that cost drivable IoU):

* depth verification (`min_depth_share` > 0): the blob is kept only when the depth
  camera measured at least that share of its pixels. Potholes inside stereo holes are
  then never reported; with the depth camera down (no depth in the frame) nothing can
  be verified and the blobs pass unchecked;
* temporal confirmation (`confirm_frames` > 1): the blob is kept only when it overlaps,
  within `confirm_radius` (a share of the image width, for the motion between frames),
  the blobs that passed verification in each of the previous `confirm_frames - 1`
  frames. The price is `confirm_frames - 1` frames of detection latency.

Both run on the model's label image (before upsampling), so their cost and radius do
not depend on the camera's resolution.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from road_seg_core import labels as L
from road_seg_core.depth import resize_nearest

__all__ = ["PotholeFilterConfig", "PotholeFilter", "depth_measured"]

#: Most frames a blob may be asked to persist: beyond a few frames at 10 Hz a near pothole is gone from view.
MAX_CONFIRM_FRAMES = 10


@dataclass
class PotholeFilterConfig:
    """Parameters `obstacles.min_depth_share`, `obstacles.confirm_frames` and `obstacles.confirm_radius`."""

    #: Share of a pothole blob's pixels the depth camera must have measured for it to be published; 0 = off.
    min_depth_share: float = 0.5
    #: Frames in a row a negative-obstacle blob must be predicted in to be published; 1 = every blob at once (off).
    confirm_frames: int = 1
    #: How far (share of the image width) a blob may have moved since the previous frame and still confirm it.
    confirm_radius: float = 0.0125

    def __post_init__(self) -> None:
        if not 0 <= self.min_depth_share <= 1:
            raise ValueError(f"min_depth_share must be 0 (off) to 1, got {self.min_depth_share:g}")
        if not 1 <= self.confirm_frames <= MAX_CONFIRM_FRAMES:
            raise ValueError(f"confirm_frames must be 1 (off) to {MAX_CONFIRM_FRAMES}, got {self.confirm_frames}")
        if not 0 <= self.confirm_radius <= 0.25:
            raise ValueError(f"confirm_radius must be 0 to 0.25 of the image width, got {self.confirm_radius:g}")

    @property
    def enabled(self) -> bool:
        return self.min_depth_share > 0 or self.confirm_frames > 1


def depth_measured(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 mask (1 = measured: finite and > 0) of a depth or disparity image at (height, width), resampled to
    nearest first (holes stay holes, and at 720p a sixth of the pixels is tested)."""
    small = resize_nearest(depth, size)
    with np.errstate(invalid="ignore"):
        return (np.isfinite(small) & (small > 0)).view(np.uint8)


class PotholeFilter:
    """Filters each new label image in place (rejected blobs become background); keeps the last frames' verified
    pothole masks for confirmation."""

    def __init__(self, config: PotholeFilterConfig | None = None) -> None:
        self.config = config or PotholeFilterConfig()
        #: The verified pothole masks of the last `confirm_frames - 1` frames; None for a frame without any.
        self._history: deque[np.ndarray | None] = deque(maxlen=max(1, self.config.confirm_frames - 1))
        self._kernel: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the history (a new sequence: the next blobs need `confirm_frames` frames again)."""
        self._history.clear()

    def _support_kernel(self, width: int) -> np.ndarray:
        radius = int(round(self.config.confirm_radius * width))
        if self._kernel is None or self._kernel.shape[0] != 2 * radius + 1:
            # A square (separable, 4x cheaper than a disc at 320x512): up to radius * sqrt(2) on a diagonal.
            self._kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))
        return self._kernel

    def __call__(self, labels: np.ndarray, depth: np.ndarray | None = None) -> np.ndarray:
        """Filter a (H, W) uint8 label image in place and return it.

        `depth`: the frame's depth or disparity image at any size (NaN, inf, 0 = not measured); None = nothing to
        verify against (no depth camera in this frame). Only read when the frame has a pothole blob."""
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
        if cfg.min_depth_share > 0 and depth is not None:
            measured = depth_measured(depth, labels.shape)
            inside = raw.view(bool)  # the blobs' pixels only: a few thousand of the image's
            ids = blobs[inside]
            pixels = np.bincount(ids, minlength=count)
            with_depth = np.bincount(ids, weights=measured[inside], minlength=count)
            keep &= with_depth >= cfg.min_depth_share * pixels
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
        keep[0] = True  # label 0: not a negative-obstacle pixel
        if not keep.all():
            np.putmask(labels, np.take((~keep).view(np.uint8), blobs), L.BACKGROUND)
        return labels
