"""Centre-aligned nearest-neighbour resampling: the one definition for labels, masks and depth-like maps.

cv2's ``INTER_NEAREST`` takes source pixel ``floor(d * src / dst)``, which
samples the top-left corner of each destination pixel's footprint instead of
its centre: an image resized with it is shifted by half a destination pixel
against one resized with ``INTER_AREA`` or ``INTER_LINEAR`` (both centre-
aligned). Labels upsampled 2.5x from the model's 512 columns to 1280 landed
0.5 px up and left of the objects they name, and depth fed to the model sat
half a model pixel off the colour image. ``INTER_NEAREST_EXACT`` takes
``floor((d + 0.5) * src / dst)`` (in cv2's own fixed-point rounding), so every
nearest resize in the project goes through here, and the device preprocessor
and the separable label upsampler ask cv2 for its indices rather than
recomputing them.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

#: The interpolation flag of every nearest-neighbour resize (labels, validity masks, depth with holes).
INTERPOLATION = cv2.INTER_NEAREST_EXACT


def resize(image: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """`image` (H, W[, C]) at (height, width), centre-aligned nearest; into `out` when given."""
    h, w = int(size[0]), int(size[1])
    return cv2.resize(image, (w, h), dst=out, interpolation=INTERPOLATION)


@functools.lru_cache(maxsize=32)
def source_index(src: int, dst: int) -> np.ndarray:
    """The source index `resize` takes for each of `dst` destination pixels along an axis of `src` pixels,
    asked of cv2 itself so its rounding is exactly the same (read-only)."""
    index = np.arange(src, dtype=np.float32)[:, None]  # exact integers in float32 up to 2**24
    rows = cv2.resize(index, (1, dst), interpolation=INTERPOLATION)[:, 0].astype(np.intp)
    rows.flags.writeable = False
    return rows
