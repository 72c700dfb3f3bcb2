"""Resizing and augmentation of multi-modal samples: one geometry for every map, colour changes for rgb only.

A sample is a dict of HxW(xC) numpy maps in model-input units (rgb uint8
0..255, depth / disparity float32 with 0 = none, thermal float32 in (0, 1] with
0 = none) plus an allowed-class bitmask target (`road_seg_training.label_sets`).

Geometry (flip, scale, crop/pad) is one affine warp per map with the same
matrix, so every modality and the labels stay pixel-aligned. Interpolation
follows the map's meaning: linear for colour and thermal, nearest for
depth-like maps and the target (a hole or a class id must never be blended into
a fake value), and thermal's "no data" zeros are carried through a nearest-
warped validity mask. Disparity in pixels is multiplied by the horizontal scale:
zooming an image by s multiplies the pixel distance between matching points by s.

Albumentations' geometric transforms do not fit that (one interpolation shared
by all masks, no way to rescale disparity values), so geometry is cv2 here and
albumentations only does the photometric part, applied to rgb alone.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

import cv2
import numpy as np

from road_seg_core import depth as depth_ops
from road_seg_core import nearest

#: Maps resampled with nearest neighbour (values that must not be blended).
NEAREST = ("depth", "disparity", "height", "target")


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation; the defaults suit road scenes (no vertical flips, no rotations).

    `scale_range` is the zoom factor range relative to the input size (< 1
    zooms out and pads with "no data"/ignore, > 1 zooms in and crops at a random
    place). `photometric` switches the colour changes on rgb (brightness,
    contrast, gamma, hue/saturation, noise, slight motion blur). `depth_holes` is
    the share of samples that get stereo drop-outs punched into the depth-like maps
    (`punch_depth_holes`); the labels stay, so a hole on the road is still road.
    """

    hflip: float = 0.5
    scale_range: tuple[float, float] = (0.75, 1.5)
    photometric: bool = True
    depth_holes: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale_range", tuple(float(s) for s in self.scale_range))
        lo, hi = self.scale_range if len(self.scale_range) == 2 else (0.0, -1.0)
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must be (lo, hi) with 0 < lo <= hi, got {self.scale_range}")
        if not 0.0 <= self.hflip <= 1.0:
            raise ValueError(f"hflip must be a probability in [0, 1], got {self.hflip}")
        if not 0.0 <= self.depth_holes <= 1.0:
            raise ValueError(f"depth_holes must be a probability in [0, 1], got {self.depth_holes}")

    @classmethod
    def from_value(cls, value: "AugmentConfig | Mapping[str, Any] | None") -> "AugmentConfig":
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        known = {f.name for f in fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown augmentation options {sorted(unknown)}; known: {sorted(known)}")
        return cls(**value)


@dataclass(frozen=True)
class Geometry:
    """One draw of the geometric augmentation for an output of `size` (h, w)."""

    scale: float
    flip: bool
    offset: tuple[float, float]  # (oy, ox): top-left of the output window in the scaled image, may be < 0 (padding)
    size: tuple[int, int]

    def matrix(self) -> np.ndarray:
        """2x3 affine matrix, source pixel -> output pixel (pixel centres map to pixel centres)."""
        s = self.scale
        oy, ox = self.offset
        w = self.size[1]
        tx = s * 0.5 - 0.5 - ox
        ty = s * 0.5 - 0.5 - oy
        if self.flip:
            return np.array([[-s, 0.0, w - 1 - tx], [0.0, s, ty]])
        return np.array([[s, 0.0, tx], [0.0, s, ty]])


def sample_geometry(rng: np.random.Generator, size: tuple[int, int], config: AugmentConfig) -> Geometry:
    h, w = size
    lo, hi = config.scale_range
    scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else lo
    flip = bool(rng.random() < config.hflip)

    def offset(extent: int) -> float:
        slack = scale * extent - extent
        return float(rng.uniform(min(0.0, slack), max(0.0, slack)))

    return Geometry(scale=scale, flip=flip, offset=(offset(h), offset(w)), size=(int(h), int(w)))


def _warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], interpolation: int,
          border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    h, w = size
    return cv2.warpAffine(image, matrix, (w, h), flags=interpolation, borderMode=border, borderValue=0)


def _warp_linear(image: np.ndarray, valid: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Linear warp whose pixels are exactly 0 where nearest sampling of `valid` is 0.

    Replicating the border and masking afterwards keeps edge pixels at their
    value instead of fading them into the zero padding (a faded thermal value
    would read as a colder object).
    """
    warped = _warp(image, matrix, size, cv2.INTER_LINEAR, cv2.BORDER_REPLICATE)
    mask = _warp(valid.astype(np.uint8), matrix, size, cv2.INTER_NEAREST)
    return warped * (mask[..., None] if warped.ndim == 3 else mask)


def apply_geometry(maps: Mapping[str, np.ndarray], geometry: Geometry,
                   disparity_in_pixels: bool = True) -> dict[str, np.ndarray]:
    """Warp every map of a sample (modalities and "target") with the same geometry."""
    matrix = geometry.matrix()
    out: dict[str, np.ndarray] = {}
    for name, image in maps.items():
        if name in NEAREST:
            warped = _warp(image, matrix, geometry.size, cv2.INTER_NEAREST)
            if name == "disparity" and disparity_in_pixels:
                warped = depth_ops.rescale_disparity(warped, geometry.scale)
        elif name == "thermal":
            warped = _warp_linear(image, image > 0, matrix, geometry.size)
        else:
            warped = _warp_linear(image, np.ones(image.shape[:2], bool), matrix, geometry.size)
        out[name] = warped
    return out


def resize_maps(maps: Mapping[str, np.ndarray], size: tuple[int, int],
                disparity_in_pixels: bool = True) -> dict[str, np.ndarray]:
    """Resize every map to `size` (h, w) exactly as `road_seg_core.preprocess.Preprocessor` does on the car.

    Colour uses area interpolation, depth-like maps and
    the target nearest; thermal linear with its no-data zeros kept; disparity in
    pixels is rescaled to the new width.
    """
    h, w = size
    out: dict[str, np.ndarray] = {}
    for name, image in maps.items():
        if image.shape[:2] == (h, w):
            out[name] = image
            continue
        if name in NEAREST:
            resized = nearest.resize(image, (h, w))
            if name == "disparity" and disparity_in_pixels:
                resized = depth_ops.rescale_disparity(resized, w / image.shape[1])
        elif name == "thermal":
            resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
            resized *= nearest.resize((image > 0).astype(np.uint8), (h, w))
        else:
            resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        out[name] = resized
    return out


#: Maps that hold a stereo measurement and so lose it where stereo matching fails.
DEPTH_LIKE = ("depth", "disparity", "height")


def punch_depth_holes(maps: dict[str, np.ndarray], rng: np.random.Generator, count: tuple[int, int] = (2, 10),
                      radius: tuple[float, float] = (0.005, 0.04)) -> None:
    """Zero ("no data") the same random elliptical blobs in every depth-like map, in place.

    At night a stereo camera loses depth on dark, textureless road patches, and dark wet potholes are such
    patches too: trained only on that, a network reads any hole on the road as a pothole (on held-out drive
    7002, 380 of the bundled model's 394 phantom pothole pixels were depth holes). Holes punched into the
    lower image (where the road is) with the labels left as they are are meant to break that shortcut; one
    stage trained with them did not beat the bundled model (README). `radius` is relative to width.
    """
    keys = [k for k in DEPTH_LIKE if k in maps]
    if not keys:
        return
    h, w = maps[keys[0]].shape[:2]
    holes = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        centre = (int(rng.integers(0, w)), int(rng.integers(int(0.45 * h), h)))
        axes = tuple(max(1, int(round(w * rng.uniform(*radius) * f))) for f in (1.0, rng.uniform(0.3, 0.8)))
        cv2.ellipse(holes, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, thickness=-1)
    mask = holes.astype(bool)
    for key in keys:
        maps[key][mask] = 0


def _photometric_pipeline():
    import albumentations as A  # imported only when augmenting: it is slow to import

    return A.Compose([
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.8),
        A.HueSaturationValue(hue_shift_limit=6, sat_shift_limit=25, val_shift_limit=0, p=0.5),
        A.RandomGamma(gamma_limit=(70, 150), p=0.3),
        A.GaussNoise(std_range=(0.01, 0.04), p=0.2),
        A.MotionBlur(blur_limit=(3, 5), p=0.1),
    ])


class Augmenter:
    """Random geometry for all maps, then colour changes for rgb; `rng` makes each draw reproducible."""

    def __init__(self, size: tuple[int, int], config: AugmentConfig | None = None) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.config = config or AugmentConfig()
        self._photometric = _photometric_pipeline() if self.config.photometric else None

    def __call__(self, maps: Mapping[str, np.ndarray], rng: np.random.Generator,
                 disparity_in_pixels: bool = True) -> dict[str, np.ndarray]:
        out = apply_geometry(maps, sample_geometry(rng, self.size, self.config), disparity_in_pixels)
        if self._photometric is not None and "rgb" in out:
            self._photometric.set_random_seed(int(rng.integers(2**31)))
            out["rgb"] = self._photometric(image=out["rgb"])["image"]
        if self.config.depth_holes > 0 and rng.random() < self.config.depth_holes:  # no draw when off
            punch_depth_holes(out, rng)
        return out
