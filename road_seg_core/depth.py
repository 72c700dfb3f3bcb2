"""Depth and disparity maps: sanitising, converting between them, and stereo matching.

Conventions (shared with the model inputs): depth is float32 metres, disparity
float32 pixels at the image's own width, and 0 means "no measurement". Sensors
deliver invalid pixels as NaN, ±inf, 0 or negative values; `sanitize` maps all
of them to 0 once so downstream code only has to test `x > 0`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np

from road_seg_core import nearest

_SGBM_MODES = {
    "sgbm": cv2.STEREO_SGBM_MODE_SGBM,
    "sgbm_3way": cv2.STEREO_SGBM_MODE_SGBM_3WAY,
    "hh": cv2.STEREO_SGBM_MODE_HH,
    "hh4": cv2.STEREO_SGBM_MODE_HH4,
}

# Smallest normal float32: a strictly positive lower bound that survives flush-to-zero SIMD modes.
_TINY = float(np.finfo(np.float32).tiny)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _in_range_mask(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """uint8 mask (255 = lo <= v <= hi) in one multithreaded cv2 pass; NaN is outside every range."""
    return cv2.inRange(v.reshape(1, -1) if v.ndim != 2 else v, lo, hi).reshape(v.shape)


def _select(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """values where mask, 0 elsewhere (cv2.copyTo: no NaN propagation, no float64 temporaries)."""
    out = np.zeros(values.shape, dtype=np.float32)
    flat = (lambda a: a.reshape(1, -1)) if values.ndim != 2 else (lambda a: a)
    cv2.copyTo(flat(values), flat(mask), flat(out))
    return out


def _bounds(min_value: float, max_value: float) -> tuple[float, float]:
    """The valid range as float32 values: strictly positive, finite."""
    if not min_value <= max_value:
        raise ValueError(f"min_value {min_value} > max_value {max_value}")
    return max(float(min_value), _TINY), min(float(max_value), _FLOAT32_MAX)


def zero_invalid(values: np.ndarray, min_value: float = 0.0, max_value: float = math.inf) -> np.ndarray:
    """`sanitize(values)[0]` computed in place: `values` (float32, C-contiguous, the caller's own copy) with
    every invalid pixel set to 0, returned.

    Three in-place cv2 passes (NaN -> 0, below the range -> 0, above -> 0) instead of a mask, a zeroed
    array and a masked copy; the per-frame path on the car, where the array was just made by a resize.
    """
    lo, hi = _bounds(min_value, max_value)
    if values.dtype != np.float32 or not values.flags.c_contiguous or not values.flags.writeable:
        raise ValueError(f"zero_invalid needs a writeable C-contiguous float32 array, got {values.dtype} "
                         f"(C-contiguous: {values.flags.c_contiguous}, writeable: {values.flags.writeable})")
    if values.size == 0:
        return values
    flat = values.reshape(1, -1) if values.ndim != 2 else values
    cv2.patchNaNs(flat, 0.0)
    # TOZERO keeps v > t: the float32 just below lo makes that v >= lo; TOZERO_INV zeroes v > hi (and +inf).
    cv2.threshold(flat, float(np.nextafter(np.float32(lo), np.float32(-np.inf))), 0.0, cv2.THRESH_TOZERO, dst=flat)
    cv2.threshold(flat, float(np.float32(hi)), 0.0, cv2.THRESH_TOZERO_INV, dst=flat)
    return values


def sanitize(values: np.ndarray, min_value: float = 0.0, max_value: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    """(float32 copy with invalid pixels set to 0, bool valid mask).

    Invalid: NaN, ±inf, <= 0, < min_value or > max_value. Bounds are inclusive.
    """
    lo, hi = _bounds(min_value, max_value)
    v = np.ascontiguousarray(values, dtype=np.float32)
    if v.size == 0:
        return v.copy(), np.zeros(v.shape, dtype=bool)
    mask = _in_range_mask(v, lo, hi)
    return _select(v, mask), mask != 0


def resize_nearest(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A depth-like map (any real dtype) as float32 at (h, w), nearest-neighbour so a hole never blends into a
    fake surface; always a new array, so the caller may write into it (`zero_invalid`)."""
    h, w = int(size[0]), int(size[1])
    if np.shape(values)[:2] == (h, w):
        return np.array(values, dtype=np.float32, order="C")
    return nearest.resize(np.asarray(values, dtype=np.float32), (h, w))


def _check_stereo(fx: float, baseline_m: float) -> float:
    if not (fx > 0 and baseline_m > 0 and math.isfinite(fx) and math.isfinite(baseline_m)):
        raise ValueError(f"need fx > 0 and baseline_m > 0, got fx={fx}, baseline_m={baseline_m}")
    return float(fx) * float(baseline_m)


def _reciprocal_scaled(x: np.ndarray, numerator: float) -> np.ndarray:
    """numerator / x where x is finite and > 0, else 0 (the relation is its own inverse)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.size == 0:
        return x.copy()
    flat = x.reshape(1, -1) if x.ndim != 2 else x
    quotient = cv2.divide(numerator, flat).reshape(x.shape)
    return _select(quotient, _in_range_mask(x, _TINY, _FLOAT32_MAX))


def depth_to_disparity(depth_m: np.ndarray, fx: float, baseline_m: float) -> np.ndarray:
    """Disparity d = fx * B / Z in pixels (for the image whose focal length is fx); 0 where Z is invalid."""
    return _reciprocal_scaled(depth_m, _check_stereo(fx, baseline_m))


def disparity_to_depth(disparity_px: np.ndarray, fx: float, baseline_m: float) -> np.ndarray:
    """Depth Z = fx * B / d in metres; 0 where d is invalid (<= 0, NaN, inf)."""
    return _reciprocal_scaled(disparity_px, _check_stereo(fx, baseline_m))


def rescale_disparity(disparity: np.ndarray, scale_x: float) -> np.ndarray:
    """Disparity after resizing its map horizontally by `scale_x` (new_width / old_width).

    Disparity is a horizontal distance in pixels, so resampling the map must
    also scale its values; 0 (no measurement) stays 0. Resize the map itself with
    nearest-neighbour interpolation so invalid pixels are not blended in.
    """
    if not (scale_x > 0 and math.isfinite(scale_x)):
        raise ValueError(f"scale_x must be a positive finite number, got {scale_x}")
    return np.multiply(disparity, np.float32(scale_x), dtype=np.float32)


@dataclass(frozen=True)
class SgbmConfig:
    """cv2.StereoSGBM parameters; defaults suit a ZED / ZED 2 at HD720 (1280x720) on a road vehicle.

    Why these defaults:
      * num_disparities 128: ZED 2 at HD720 has fx ~ 530 px and B = 0.12 m, so fx*B ~ 64 px*m and
        128 px reaches down to ~0.5 m (original ZED, fx ~ 700: ~0.66 m); nothing nearer matters on a
        road. The leftmost min_disparity + num_disparities columns get no disparity (OpenCV).
      * block_size 5: small enough to keep thin kerbs, cones and pothole rims, large enough for
        asphalt's fine texture.
      * p1/p2 None -> OpenCV's recommended 8*cn*bs^2 and 32*cn*bs^2 (cn = 1: matching runs on grey).
      * uniqueness_ratio 10, disp12_max_diff 1, speckle 100 px / range 2: reject the ambiguous matches
        (repetitive lane markings, sky, glare) rather than guess.
      * mode "sgbm_3way": several times faster than full 8-path SGBM on a CPU at small quality cost.
      * downscale 1: match at full resolution. 2 runs on half-size images and upsamples the result;
        num_disparities then counts pixels of the downscaled image, so 64 at downscale 2 covers the
        same depth range as 128 at full size. Measured on 2 CPU cores at 1280x720: defaults
        ~110-190 ms per pair, downscale=2 with num_disparities=64 ~20-30 ms (what a 30 Hz node can afford).
    """

    min_disparity: int = 0
    num_disparities: int = 128
    block_size: int = 5
    p1: int | None = None
    p2: int | None = None
    disp12_max_diff: int = 1
    pre_filter_cap: int = 63
    uniqueness_ratio: int = 10
    speckle_window_size: int = 100
    speckle_range: int = 2
    mode: str = "sgbm_3way"
    downscale: int = 1

    def __post_init__(self) -> None:
        if self.num_disparities <= 0 or self.num_disparities % 16:
            raise ValueError(f"num_disparities must be a positive multiple of 16, got {self.num_disparities}")
        if self.block_size < 1 or self.block_size % 2 == 0:
            raise ValueError(f"block_size must be odd and >= 1, got {self.block_size}")
        if self.mode not in _SGBM_MODES:
            raise ValueError(f"unknown SGBM mode {self.mode!r}; expected one of {', '.join(_SGBM_MODES)}")
        if self.downscale < 1:
            raise ValueError(f"downscale must be >= 1, got {self.downscale}")
        p1, p2 = self.penalties
        if not 0 <= p1 < p2:
            raise ValueError(f"SGBM penalties need 0 <= p1 < p2, got p1={p1}, p2={p2}")

    @property
    def penalties(self) -> tuple[int, int]:
        """(P1, P2) smoothness penalties, with OpenCV's recommended values for grey images by default."""
        area = self.block_size * self.block_size
        return (8 * area if self.p1 is None else self.p1, 32 * area if self.p2 is None else self.p2)

    def for_width(self, width: int, reference_width: int = 1280) -> "SgbmConfig":
        """This config for images `width` pixels wide, given it was tuned at `reference_width`.

        Disparity scales with image width, so the search range shrinks with it (rounded up to a
        multiple of 16) and the same near-depth limit is kept; e.g. the ZED defaults at a 320-px model
        input search 32 px instead of 128, leaving far fewer unmatched left-border columns.
        """
        if width <= 0 or reference_width <= 0:
            raise ValueError(f"widths must be positive, got width={width}, reference_width={reference_width}")
        scaled = math.ceil(self.num_disparities * width / reference_width / 16) * 16
        return dataclasses.replace(self, num_disparities=max(16, scaled))

    def create_matcher(self) -> cv2.StereoSGBM:
        p1, p2 = self.penalties
        return cv2.StereoSGBM.create(
            minDisparity=self.min_disparity,
            numDisparities=self.num_disparities,
            blockSize=self.block_size,
            P1=p1,
            P2=p2,
            disp12MaxDiff=self.disp12_max_diff,
            preFilterCap=self.pre_filter_cap,
            uniquenessRatio=self.uniqueness_ratio,
            speckleWindowSize=self.speckle_window_size,
            speckleRange=self.speckle_range,
            mode=_SGBM_MODES[self.mode],
        )


def _to_grey(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    raise ValueError(f"{name} must be HxW or HxWx3 RGB, got shape {image.shape}")


def stereo_disparity(left_rgb: np.ndarray, right_rgb: np.ndarray, config: SgbmConfig | None = None) -> np.ndarray:
    """Left-image disparity (float32 pixels at the input width, 0 = no match) of a rectified pair.

    Inputs are HxWx3 uint8 RGB (or HxW grey) of any resolution; matching runs on grey.
    """
    config = config or SgbmConfig()
    if np.shape(left_rgb) != np.shape(right_rgb):
        raise ValueError(f"left and right images differ in shape: {np.shape(left_rgb)} vs {np.shape(right_rgb)}")
    left, right = _to_grey(left_rgb, "left_rgb"), _to_grey(right_rgb, "right_rgb")
    height, width = left.shape
    if config.downscale > 1:
        size = (max(1, width // config.downscale), max(1, height // config.downscale))
        left = cv2.resize(left, size, interpolation=cv2.INTER_AREA)
        right = cv2.resize(right, size, interpolation=cv2.INTER_AREA)

    raw = config.create_matcher().compute(left, right)  # int16, 4 fractional bits
    # Unmatched pixels are (min_disparity - 1) * 16; d <= 0 (infinitely far or behind) is "no measurement".
    valid = raw >= max(config.min_disparity * 16, 1)
    disparity = np.where(valid, raw.astype(np.float32) * np.float32(1.0 / 16.0), np.float32(0.0))

    if disparity.shape != (height, width):
        scale_x = width / disparity.shape[1]
        disparity = nearest.resize(disparity, (height, width))
        disparity = rescale_disparity(disparity, scale_x)
    return disparity
