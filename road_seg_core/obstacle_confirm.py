"""Temporal confirmation of negative obstacles: a pothole blob is published only once it has been seen before.

A phantom pothole (a stereo hole on dark asphalt, a noise speckle in depth) is
mostly one frame's mistake, while a real pothole stays in view for many frames
and moves only a little between two of them. So, optionally, a predicted
negative-obstacle blob (8-connected) is kept only when it overlaps, within
`radius` (a share of the image width, for the motion between frames), the raw
negative-obstacle prediction of each of the previous `frames - 1` frames; the
blobs that are not are painted drivable (a negative obstacle lies on the road
surface). The price is latency of detection: a pothole appears in the output
`frames - 1` frames after the network first sees it. On synthetic drives at
10 Hz (README) two frames removed most phantom frames and a few first sightings.

It runs on the model's label image (before upsampling), so its cost and its
radius do not depend on the camera's resolution. `frames = 1` is off.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from road_seg_core import labels as L

__all__ = ["ObstacleConfirmConfig", "NegativeObstacleConfirmation"]

#: Most frames a blob may be asked to persist: beyond a few frames at 10 Hz a near pothole is gone from view.
MAX_CONFIRM_FRAMES = 10


@dataclass
class ObstacleConfirmConfig:
    """Parameters `obstacles.confirm_frames` and `obstacles.confirm_radius`."""

    #: Frames in a row a negative-obstacle blob must be predicted in to be published; 1 = every blob at once (off).
    confirm_frames: int = 1
    #: How far (share of the image width) a blob may have moved since the previous frame and still confirm it.
    confirm_radius: float = 0.0125

    def __post_init__(self) -> None:
        if not 1 <= self.confirm_frames <= MAX_CONFIRM_FRAMES:
            raise ValueError(f"confirm_frames must be 1 (off) to {MAX_CONFIRM_FRAMES}, got {self.confirm_frames}")
        if not 0 <= self.confirm_radius <= 0.25:
            raise ValueError(f"confirm_radius must be 0 to 0.25 of the image width, got {self.confirm_radius:g}")

    @property
    def enabled(self) -> bool:
        return self.confirm_frames > 1


class NegativeObstacleConfirmation:
    """Keeps the last frames' raw negative-obstacle masks and filters each new label image in place."""

    def __init__(self, config: ObstacleConfirmConfig | None = None) -> None:
        self.config = config or ObstacleConfirmConfig()
        self._history: deque[np.ndarray] = deque(maxlen=max(1, self.config.confirm_frames - 1))
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

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        """Filter a (H, W) uint8 label image in place and return it; a no-op when confirmation is off."""
        if not self.config.enabled:
            return labels
        raw = (labels == L.NEGATIVE_OBSTACLE).view(np.uint8)
        if self._history and self._history[-1].shape != raw.shape:
            self.reset()  # the model's output size changed: the old masks say nothing about this frame
        full = len(self._history) == self._history.maxlen
        history = list(self._history)
        self._history.append(raw.copy())
        if not raw.any():
            return labels
        if not full:
            labels[raw.astype(bool)] = L.DRIVABLE
            return labels
        kernel = self._support_kernel(raw.shape[1])
        count, blobs = cv2.connectedComponents(raw, connectivity=8, ltype=cv2.CV_16U)
        keep = np.ones(count, bool)
        for previous in history:
            support = cv2.dilate(previous, kernel) if kernel.shape[0] > 1 else previous
            keep &= np.bincount(blobs[support.view(bool)], minlength=count) > 0
        keep[0] = True  # label 0: not a negative-obstacle pixel
        if not keep.all():
            np.putmask(labels, np.take((~keep).view(np.uint8), blobs), L.DRIVABLE)
        return labels
