"""Thermal camera images: raw counts to the model's (0, 1] range, and registration to the left image.

The model reserves exactly 0 for "no thermal data" (outside the thermal view,
sensor down), so every real measurement maps into [1/255, 1]; 1/255 keeps the
coldest pixel distinguishable from "no data" even after 8-bit quantisation.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

MIN_VALUE = np.float32(1.0 / 255.0)
_MODES = ("fixed", "percentile")
_IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
#: Percentiles are taken on a regular grid of at most this many pixels: a 720p histogram of every pixel costs
#: 1.25 ms, the 1/16 sample 0.14 ms (0.32 ms on cold caches), and the 1st/99th percentile of a camera image moves
#: by a count or two between them (every 8th row and column saves 0.2 ms more but moved a fog frame's 99th
#: percentile by 8.5 % of the span).
PERCENTILE_SAMPLES = 65536


def percentile_stride(shape: tuple[int, ...]) -> int:
    """Row and column step of the percentile sample for an image of `shape` (at most PERCENTILE_SAMPLES pixels)."""
    return max(1, math.ceil((shape[0] * shape[1] / PERCENTILE_SAMPLES) ** 0.5))


@dataclass(frozen=True)
class ThermalConfig:
    """How raw thermal counts become model input.

    mode:
      * "percentile" (default): per frame, map the `percentiles` (lo, hi) of the image to the ends of
        the range. Adapts to ambient temperature and sensor drift (e.g. uncalibrated FLIR Boson counts)
        at the cost of the absolute scale; hot pixels beyond the upper percentile saturate instead of
        compressing the rest of the scene.
      * "fixed": map `fixed_range` (lo, hi) raw counts linearly. Use with radiometric / stable cameras
        when absolute temperature matters. Default (7000, 9000) is a typical outdoor span of Boson
        14-bit counts; set it from your camera.
    min_span: smallest (hi - lo) in raw counts used in percentile mode; a nearly uniform scene is
        centred instead of its noise being stretched over the whole range.
    homography: 3x3 (row-major nested sequence) mapping thermal pixel coordinates (u, v, 1) to left
        image pixel coordinates. Identity means thermal pixel (u, v) lands on left pixel (u, v) even
        when the resolutions differ (a smaller thermal image then covers the top-left corner only).
        For a thermal camera that is optically aligned with the left camera but has another
        resolution, scale: [[sx, 0, 0], [0, sy, 0], [0, 0, 1]] with sx = W_left / W_thermal,
        sy = H_left / H_thermal (`resize_homography` gives the half-pixel-exact version). A
        calibrated homography (e.g. from cv2.findHomography on a heated checkerboard) is valid for
        scene points far compared with the cameras' separation, which holds for road scenes.
    """

    mode: str = "percentile"
    fixed_range: tuple[float, float] = (7000.0, 9000.0)
    percentiles: tuple[float, float] = (1.0, 99.0)
    min_span: float = 0.0
    homography: tuple[tuple[float, float, float], ...] = _IDENTITY

    def __post_init__(self) -> None:
        # Accept lists from YAML/JSON and store tuples so the config stays hashable and immutable.
        object.__setattr__(self, "fixed_range", tuple(float(x) for x in self.fixed_range))
        object.__setattr__(self, "percentiles", tuple(float(x) for x in self.percentiles))
        matrix = np.asarray(self.homography, dtype=np.float64)
        if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
            raise ValueError(f"homography must be a finite 3x3 matrix, got {self.homography!r}")
        if abs(np.linalg.det(matrix)) < 1e-12:
            raise ValueError(f"homography is singular: {self.homography!r}")
        object.__setattr__(self, "homography", tuple(tuple(float(x) for x in row) for row in matrix))
        if self.mode not in _MODES:
            raise ValueError(f"unknown thermal mode {self.mode!r}; expected one of {', '.join(_MODES)}")
        lo, hi = self.fixed_range if len(self.fixed_range) == 2 else (1.0, 0.0)
        if not lo < hi:
            raise ValueError(f"fixed_range must be (lo, hi) with lo < hi, got {self.fixed_range}")
        plo, phi = self.percentiles if len(self.percentiles) == 2 else (1.0, 0.0)
        if not 0.0 <= plo < phi <= 100.0:
            raise ValueError(f"percentiles must be (lo, hi) with 0 <= lo < hi <= 100, got {self.percentiles}")
        if not self.min_span >= 0:
            raise ValueError(f"min_span must be >= 0, got {self.min_span}")

    @property
    def homography_matrix(self) -> np.ndarray:
        return np.array(self.homography, dtype=np.float64)


def resize_homography(src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """Homography equivalent to cv2.resize from `src_size` to `dst_size` (both (h, w)).

    Pixel centres map to pixel centres: u' = sx * (u + 0.5) - 0.5, which plain
    diag(sx, sy, 1) misses by half a destination pixel minus half a source pixel.
    """
    (sh, sw), (dh, dw) = src_size, dst_size
    sx, sy = dw / sw, dh / sh
    return np.array([[sx, 0.0, 0.5 * (sx - 1.0)], [0.0, sy, 0.5 * (sy - 1.0)], [0.0, 0.0, 1.0]])


def _integer_percentiles(raw: np.ndarray, percentiles: Sequence[float]) -> tuple[float, float]:
    """Percentiles of a non-negative integer image from its histogram: O(N) instead of a sort."""
    counts = np.bincount(raw.ravel())
    cumulative = np.cumsum(counts)
    total = cumulative[-1]
    # Lowest value whose cumulative count reaches the requested rank ("inverted CDF" percentile).
    ranks = np.maximum(np.ceil(np.asarray(percentiles) / 100.0 * total), 1)
    lo, hi = np.searchsorted(cumulative, ranks)
    return float(lo), float(hi)


def thermal_range(raw: np.ndarray, config: ThermalConfig) -> tuple[float, float] | None:
    """(lo, hi) raw counts mapped to the ends of the output range, or None if nothing is valid."""
    if config.mode == "fixed":
        return config.fixed_range
    step = percentile_stride(raw.shape)
    raw = raw[::step, ::step]
    if raw.dtype.kind == "u" and raw.dtype.itemsize <= 2:
        lo, hi = _integer_percentiles(raw, config.percentiles)
    else:
        finite = raw[np.isfinite(raw)] if raw.dtype.kind == "f" else raw
        if finite.size == 0:
            return None
        lo, hi = (float(x) for x in np.percentile(finite, config.percentiles))
    span = max(config.min_span, 1e-6)
    if hi - lo < span:
        centre = 0.5 * (lo + hi)
        lo, hi = centre - 0.5 * span, centre + 0.5 * span
    return lo, hi


def normalize_thermal(raw: np.ndarray, config: ThermalConfig | None = None,
                      bounds: tuple[float, float] | None = None) -> np.ndarray:
    """float32 image in [1/255, 1] from raw thermal counts (uint16, uint8 or float); NaN/inf -> 0 (no data).

    `bounds` (from `thermal_range` of the whole image) lets a caller normalise a resampled copy with the
    range of the original.
    """
    config = config or ThermalConfig()
    raw = np.asarray(raw)
    if raw.ndim != 2 or raw.size == 0:
        raise ValueError(f"thermal image must be a non-empty HxW array, got shape {raw.shape}")
    bounds = thermal_range(raw, config) if bounds is None else bounds
    if bounds is None:
        return np.zeros(raw.shape, dtype=np.float32)
    lo, hi = bounds
    gain = (1.0 - float(MIN_VALUE)) / (hi - lo)
    # Linear map of [lo, hi] onto [MIN_VALUE, 1] written around the centres, so a degenerate (tiny) span
    # still puts its centre exactly mid-range in float32; in-place float32 passes, no float64 temporaries.
    out = np.subtract(raw, np.float32(0.5 * (lo + hi)), dtype=np.float32)
    out *= np.float32(gain)
    out += np.float32(0.5 * (1.0 + float(MIN_VALUE)))
    np.clip(out, MIN_VALUE, np.float32(1.0), out=out)
    if raw.dtype.kind == "f":
        out[~np.isfinite(raw)] = 0.0  # clip keeps NaN; +inf would saturate to a fake "hot" reading
    return out


def _normalised_homography(homography) -> np.ndarray:
    """The homography as a float64 3x3 matrix with H[2,2] = 1; ValueError naming what is wrong with it."""
    matrix = np.asarray(homography, dtype=np.float64)
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)) or matrix[2, 2] == 0:
        raise ValueError(f"homography must be a finite 3x3 matrix with H[2,2] != 0, got {homography!r}")
    return matrix / matrix[2, 2]


def _warp(image: np.ndarray, homography: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    return cv2.warpPerspective(image, homography, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _resample(image: np.ndarray, homography: np.ndarray, key: tuple[float, ...], size: tuple[int, int]) -> np.ndarray:
    """`_warp`, by cv2.resize where the homography is exactly a resize to `size` (a thermal camera at the
    left camera's resolution or aligned with it: 0.11 instead of 0.31 ms at 1280x720 -> 512x320, warm caches). Both
    sample the same positions bilinearly; OpenCV's fixed-point weights differ by under 1/32 of a pixel step.
    Border pixels whose footprint leaves the image are blanked by the caller's coverage mask either way."""
    if _is_resize(key, image.shape[:2], size):
        return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return _warp(image, homography, size)


@functools.lru_cache(maxsize=8)
def _view_coverage(homography: tuple[float, ...], src_shape: tuple[int, int],
                   dst_size: tuple[int, int]) -> np.ndarray | None:
    """float32 1/0 mask of left pixels whose whole bilinear footprint lies inside the thermal image, or None
    when that is every pixel (a downscale of the whole image).

    Depends only on the calibration and the sizes, so it is computed once.
    Fixed-point bilinear on a uint8 image reaches 255 only when every
    contributing neighbour is 255, and uses the same coordinate rounding as the
    float warp of the data.
    """
    inside = np.full(src_shape, 255, np.uint8)
    coverage = (_warp(inside, np.array(homography).reshape(3, 3), dst_size) == 255).astype(np.float32)
    if coverage.all():
        return None
    coverage.flags.writeable = False
    return coverage


@functools.lru_cache(maxsize=8)
def _is_resize(homography: tuple[float, ...], src_shape: tuple[int, int], dst_size: tuple[int, int]) -> bool:
    return bool(np.allclose(np.reshape(homography, (3, 3)), resize_homography(src_shape, dst_size), rtol=0, atol=1e-9))


def warp_to_left(thermal01: np.ndarray, homography, left_size: tuple[int, int]) -> np.ndarray:
    """Thermal image (normalised, 0 = no data) resampled onto the left image grid of size (h, w).

    `homography` maps thermal pixel coordinates to left pixel coordinates. Left
    pixels outside the thermal view are 0, and so are pixels whose bilinear
    footprint touches the border or a no-data pixel: blending with 0 would
    produce plausible-looking but false cold readings. With the identity and
    equal sizes the input itself is returned (as float32, no copy).
    """
    thermal01 = np.asarray(thermal01, dtype=np.float32)
    if thermal01.ndim != 2 or thermal01.size == 0:
        raise ValueError(f"thermal image must be a non-empty HxW array, got shape {thermal01.shape}")
    matrix = _normalised_homography(homography)
    size = tuple(int(x) for x in left_size)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"left_size must be positive (h, w), got {left_size}")
    if thermal01.shape == size and np.array_equal(matrix, np.eye(3)):
        return thermal01

    warped = _warp(thermal01, matrix, size)
    if np.all(thermal01 > 0):  # the usual case: only the edge of the view limits coverage
        coverage = _view_coverage(tuple(matrix.ravel().tolist()), thermal01.shape, size)
        return warped if coverage is None else np.multiply(warped, coverage, out=warped)
    # Holes inside the thermal image must not bleed into their neighbours either.
    valid = _warp((thermal01 > 0).view(np.uint8) * np.uint8(255), matrix, size)
    np.copyto(warped, np.float32(0.0), where=valid != 255)
    return warped


def thermal_in_view(raw: np.ndarray, config: ThermalConfig, homography, size: tuple[int, int]) -> np.ndarray:
    """Raw thermal -> (0, 1] model input on a (h, w) grid of the left view, 0 where there is no data.

    16-bit counts (every real thermal camera) are warped first and normalised at the target size with
    the range of the whole image: normalisation is affine, so the order only matters next to
    saturated pixels, and the per-pixel work shrinks with the image (1280x720 -> 448x256: 0.4 ms
    instead of 2.5 ms). Other types (float with NaN holes) are normalised first, so holes stay holes.
    """
    raw = np.asarray(raw)
    if raw.ndim != 2 or raw.size == 0:
        raise ValueError(f"thermal image must be a non-empty HxW array, got shape {raw.shape}")
    if raw.dtype != np.uint16:
        return warp_to_left(normalize_thermal(raw, config), homography, size)
    matrix = _normalised_homography(homography)
    size = (int(size[0]), int(size[1]))
    bounds = thermal_range(raw, config)
    if raw.shape == size and np.array_equal(matrix, np.eye(3)):
        return normalize_thermal(raw, config, bounds)
    key = tuple(matrix.ravel().tolist())  # the calibration as the cached tables' key
    out = normalize_thermal(_resample(raw, matrix, key, size), config, bounds)
    coverage = _view_coverage(key, raw.shape, size)
    return out if coverage is None else np.multiply(out, coverage, out=out)
