"""ZED-like measured depth: the true depth with noise, range limits and the holes a stereo camera leaves."""
from __future__ import annotations

import cv2
import numpy as np

from .noise import gauss
from .raycast import View
from .scene import CompiledScene

_f32 = np.float32

MIN_DEPTH_M = 0.3


def sense_depth(scene: CompiledScene, view: View, luminance: np.ndarray | None,
                rng: np.random.Generator) -> np.ndarray:
    """ZED-like depth: ~1-2.5 % noise, holes in the sky, beyond range, in the dark and at random."""
    look = scene.look
    z = view.depth
    h, w = z.shape
    valid = (z >= MIN_DEPTH_M) & (z <= look.depth_range)
    noisy = z * (1.0 + gauss(rng, (h, w)) * _f32(look.depth_noise))
    speckle = gauss(rng, (h, w)) > 2.3  # ~1 % isolated invalid pixels
    # Irregular hole blobs (a few % of the image): smooth random field, thresholded.
    cell = max(4, w // 40)
    field_ = rng.random((h // cell + 2, w // cell + 2)).astype(_f32)
    blobs = cv2.resize(field_, (w, h), interpolation=cv2.INTER_CUBIC) < look.depth_holes
    valid &= ~speckle & ~blobs
    if luminance is not None:
        valid &= luminance > look.dark_depth_level
    return np.where(valid, noisy, _f32(np.nan)).astype(_f32)
