"""Preprocessing where the model runs: sensor-resolution arrays -> model inputs, as torch ops on the engine's device.

`SensorPreprocessor` does what `road_seg_core.preprocess.Preprocessor` does on
the CPU with OpenCV — area resize for colour, nearest for depth-like maps,
sanitising, depth <-> disparity, thermal percentile normalisation and the
thermal -> left warp — with the same conventions (0 = no data), but on a torch
device. On a GPU the node then uploads what it decoded (uint8 colour, depth in
metres, raw thermal counts: the sizes as they come off the sensors) and the CPU
only launches kernels; the engines take the resulting device tensors directly
(`InferenceEngine.infer_labels_on_device`). Geometry-dependent tables (resize
weights, warp grid, view coverage) are computed once per sensor size and stay
on the device.

Differences to the OpenCV path are resampling round-off only: OpenCV rounds
the resized colour image to uint8 (here it stays float, <= 0.5 apart) and
warps with 1/32-pixel fixed-point coordinates (here float). Inputs this module
has no device implementation for (SGBM stereo; the "height" input, whose road-plane fit
from depth and intrinsics is a stateful CPU algorithm) are computed by `Preprocessor` on the CPU for those
modalities alone and uploaded.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from road_seg_core import nearest
from road_seg_core.frames import SensorFrame
from road_seg_core.preprocess import PreprocessConfig, Preprocessor, frame_intrinsics
from road_seg_core.thermal import MIN_VALUE, _view_coverage, percentile_stride, resize_homography

# Same bounds as road_seg_core.depth.sanitize: smallest normal float32 and the largest float32.
_TINY = float(np.finfo(np.float32).tiny)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Modalities (and depth sources) computed on the device; anything else goes through the CPU `Preprocessor`.
DEVICE_MODALITIES = ("rgb", "depth", "disparity", "thermal")


def area_weights(src: int, dst: int) -> np.ndarray:
    """(dst, src) resampling matrix of cv2.resize INTER_AREA along one axis: the box overlaps when shrinking,
    OpenCV's two-tap coefficients when enlarging."""
    weights = np.zeros((dst, src), np.float64)
    scale = src / dst
    if scale >= 1.0:
        for d in range(dst):
            start, end = d * scale, (d + 1) * scale
            for s in range(int(math.floor(start)), min(src, int(math.ceil(end)))):
                weights[d, s] = (min(end, s + 1) - max(start, s)) / scale
        return weights
    for d in range(dst):  # as OpenCV's resize.cpp computes INTER_AREA's enlarging coefficients
        s = int(math.floor(d * scale))
        frac = (d + 1) - (s + 1) / scale
        frac = 0.0 if frac <= 0 else frac - math.floor(frac)
        if s >= src - 1:
            s, frac = src - 1, 0.0
        weights[d, s] += 1.0 - frac
        if frac:
            weights[d, s + 1] += frac
    return weights


def nearest_index(src: int, dst: int) -> np.ndarray:
    """Source index of every destination pixel under the host's nearest resize (`nearest.source_index`,
    centre-aligned), as int64 for torch indexing."""
    return nearest.source_index(src, dst).astype(np.int64)


class SensorPreprocessor:
    """`Preprocessor`'s output, {modality: (1, C, h, w) float32 tensor on `device`}, from a `SensorFrame`."""

    def __init__(self, modalities: tuple[str, ...], input_size: tuple[int, int],
                 config: PreprocessConfig | None = None, device: str | torch.device = "cpu") -> None:
        self.modalities = tuple(modalities)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.config = config or PreprocessConfig()
        self.device = torch.device(device)
        on_device = [m for m in self.modalities if m in DEVICE_MODALITIES
                     and not (m != "rgb" and m != "thermal" and self.config.depth_source == "stereo")]
        self.host_modalities = tuple(m for m in self.modalities if m not in on_device)
        self._host = Preprocessor(self.host_modalities, self.input_size, self.config) if self.host_modalities else None
        self._tables: dict[tuple[Any, ...], Any] = {}
        h, w = self.input_size
        self._zeros = torch.zeros((1, 1, h, w), dtype=torch.float32, device=self.device)

    def __call__(self, frame: SensorFrame) -> dict[str, Tensor]:
        host = self._host(frame) if self._host is not None else {}
        out: dict[str, Tensor] = {}
        for name in self.modalities:
            if name in host:
                out[name] = torch.from_numpy(np.ascontiguousarray(host[name], np.float32)).to(self.device)
            elif name == "rgb":
                out[name] = self.rgb(*frame.colour_pixels())
            elif name == "depth":
                out[name] = self._one_channel(self.depth_m(frame))
            elif name == "disparity":
                out[name] = self._one_channel(self.disparity_px(frame))
            elif name == "thermal":
                out[name] = self._one_channel(self.thermal01(frame))
            else:
                raise ValueError(f"unknown modality {name!r}")
        return out

    def reset(self) -> None:
        """Forget per-drive state (the road-plane fit behind the host-computed "height" input)."""
        if self._host is not None:
            self._host.reset()

    # -- per modality -------------------------------------------------------------------------------------------
    def rgb(self, image: np.ndarray, channels: tuple[int, int, int] = (0, 1, 2)) -> Tensor:
        """(1, 3, h, w) float32 0..255: `preprocess.resize_colour` of a uint8 colour image whose R, G, B are at
        `channels` (the camera's own order: BGRA is uploaded as it is and its planes picked on the device)."""
        pixels = self._upload(image)  # uploaded as uint8: a quarter of the bytes
        pixels = pixels[..., None] if pixels.ndim == 2 else pixels
        image = pixels.permute(2, 0, 1)[list(channels)].to(torch.float32)
        h, w = self.input_size
        factor = int(min(image.shape[1] / h, image.shape[2] / w))
        if factor >= 2:  # box filter by the whole factor (rounded like OpenCV's uint8 result), then bilinear
            ih, iw = image.shape[1] // factor, image.shape[2] // factor
            boxed = _integer_mean(_integer_mean(image[:, :ih * factor, :iw * factor], 2, factor), 1, factor)
            boxed = torch.floor(boxed + 0.5)
            if (ih, iw) == (h, w):
                return boxed[None]
            return F.interpolate(boxed[None], size=(h, w), mode="bilinear", align_corners=False)
        rows, cols = self._area_tables(image.shape[1], image.shape[2])
        return self._resize_area(image, rows, cols)[None]

    def depth_m(self, frame: SensorFrame) -> Tensor | None:
        cfg = self.config
        if cfg.depth_source == "depth":
            if frame.depth is None:
                return None
            depth = self._nearest(self._upload(frame.depth, torch.float32))
        else:
            if frame.disparity is None:
                return None
            disparity = self._disparity_at_input(frame)
            intr = frame_intrinsics(frame)
            fx = intr.scaled(self.input_size[1], self.input_size[0]).fx
            depth = _reciprocal_scaled(disparity, fx * intr.baseline_m)
        return _sanitize(depth, cfg.min_depth_m, cfg.max_depth_m)

    def disparity_px(self, frame: SensorFrame) -> Tensor | None:
        if self.config.depth_source == "depth":
            if frame.depth is None:
                return None
            intr = frame_intrinsics(frame)
            fx = intr.scaled(self.input_size[1], self.input_size[0]).fx
            disparity = _reciprocal_scaled(self._nearest(self._upload(frame.depth, torch.float32)),
                                           fx * intr.baseline_m)
        else:
            if frame.disparity is None:
                return None
            disparity = self._disparity_at_input(frame)
        return _sanitize(disparity, 1e-3, math.inf)

    def thermal01(self, frame: SensorFrame) -> Tensor | None:
        """Thermal in (0, 1], normalised at the sensor's resolution, then warped into the left view."""
        if frame.thermal is None:
            return None
        raw = self._upload(frame.thermal)
        if raw.ndim != 2 or raw.numel() == 0:
            raise ValueError(f"thermal image must be a non-empty HxW array, got shape {tuple(raw.shape)}")
        to_input = resize_homography(frame.size, self.input_size) @ self.config.thermal.homography_matrix
        to_input = to_input / to_input[2, 2]
        if frame.thermal.dtype == np.uint16:  # as `thermal.thermal_in_view`: warp the counts, then normalise
            bounds = _thermal_bounds(raw, self.config.thermal)
            if tuple(raw.shape) == self.input_size and np.array_equal(to_input, np.eye(3)):
                return _normalize_thermal(raw, self.config.thermal, bounds)
            grid, coverage = self._warp_tables(to_input, tuple(raw.shape))
            counts = F.grid_sample(raw.to(torch.float32)[None, None], grid, mode="bilinear", padding_mode="zeros",
                                   align_corners=False)[0, 0]
            return _normalize_thermal(counts, self.config.thermal, bounds) * (coverage > 0)
        t01 = _normalize_thermal(raw, self.config.thermal)
        if t01.shape == self.input_size and np.array_equal(to_input, np.eye(3)):
            return t01
        grid, coverage = self._warp_tables(to_input, tuple(t01.shape))
        warped = F.grid_sample(t01[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # 0 wherever the bilinear footprint leaves the view or touches a no-data pixel (as the OpenCV path):
        valid = F.grid_sample((t01 > 0).to(torch.float32)[None, None], grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False) >= 1.0 - 1e-4
        return torch.where(valid & (coverage > 0), warped, 0.0)[0, 0]

    # -- helpers ------------------------------------------------------------------------------------------------
    def _upload(self, array: np.ndarray, dtype: torch.dtype | None = None) -> Tensor:
        array = np.ascontiguousarray(array)
        if not array.flags.writeable:  # torch.from_numpy warns on read-only buffers (e.g. from ROS messages)
            array = array.copy()
        if array.dtype == np.uint16:  # torch has no uint16 arithmetic on every device: widen on the device
            tensor = torch.from_numpy(array.view(np.int16)).to(self.device, non_blocking=True)
            return (tensor.to(torch.int32) & 0xFFFF).to(dtype) if dtype else tensor.to(torch.int32) & 0xFFFF
        tensor = torch.from_numpy(array).to(self.device, non_blocking=True)
        return tensor.to(dtype) if dtype is not None else tensor

    def _area_tables(self, src_h: int, src_w: int) -> tuple[Tensor | None, Tensor | None]:
        key = ("area", src_h, src_w)
        if key not in self._tables:
            h, w = self.input_size
            rows = None if src_h == h else torch.from_numpy(area_weights(src_h, h).astype(np.float32))
            cols = None if src_w == w else torch.from_numpy(area_weights(src_w, w).T.astype(np.float32).copy())
            self._tables[key] = tuple(None if t is None else t.to(self.device) for t in (rows, cols))
        return self._tables[key]

    def _resize_area(self, image: Tensor, rows: Tensor | None, cols: Tensor | None) -> Tensor:
        h, w = self.input_size
        _, src_h, src_w = image.shape
        if cols is not None:
            image = _integer_mean(image, 2, src_w // w) if src_w % w == 0 else image @ cols
        if rows is not None:
            image = _integer_mean(image, 1, src_h // h) if src_h % h == 0 else rows @ image
        return image

    def _nearest(self, image: Tensor) -> Tensor:
        h, w = self.input_size
        if tuple(image.shape) == (h, w):
            return image
        key = ("nearest", *image.shape)
        if key not in self._tables:
            self._tables[key] = tuple(torch.from_numpy(nearest_index(s, d)).to(self.device)
                                      for s, d in zip(image.shape, (h, w)))
        rows, cols = self._tables[key]
        return image.index_select(0, rows).index_select(1, cols)

    def _disparity_at_input(self, frame: SensorFrame) -> Tensor:
        width = frame.disparity.shape[1]
        return self._nearest(self._upload(frame.disparity, torch.float32)) * np.float32(self.input_size[1] / width)

    def _warp_tables(self, homography: np.ndarray, src_shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
        key = ("warp", tuple(homography.ravel().tolist()), src_shape)
        if key not in self._tables:
            h, w = self.input_size
            sh, sw = src_shape
            v, u = np.mgrid[0:h, 0:w].astype(np.float64)
            src = np.linalg.inv(homography) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
            x, y = src[0] / src[2], src[1] / src[2]
            grid = np.stack([(2 * x + 1) / sw - 1, (2 * y + 1) / sh - 1], axis=-1).reshape(1, h, w, 2)
            coverage = _view_coverage(tuple(homography.ravel().tolist()), src_shape, self.input_size)
            coverage = np.ones(self.input_size, np.float32) if coverage is None else np.array(coverage)
            self._tables[key] = (torch.from_numpy(grid.astype(np.float32)).to(self.device),
                                 torch.from_numpy(coverage).to(self.device))
        return self._tables[key]

    def _one_channel(self, image: Tensor | None) -> Tensor:
        return self._zeros.clone() if image is None else image.to(torch.float32)[None, None].contiguous()


def _integer_mean(image: Tensor, axis: int, factor: int) -> Tensor:
    """Mean over blocks of `factor` along `axis` (INTER_AREA for an integer shrink factor)."""
    shape = list(image.shape)
    shape[axis:axis + 1] = [shape[axis] // factor, factor]
    return image.reshape(shape).mean(dim=axis + 1)


def _sanitize(values: Tensor, min_value: float, max_value: float) -> Tensor:
    """`road_seg_core.depth.sanitize` on a tensor: 0 for NaN, ±inf, <= 0 and outside [min, max]."""
    lo, hi = max(float(min_value), _TINY), min(float(max_value), _FLOAT32_MAX)
    return torch.where((values >= lo) & (values <= hi), values, 0.0)


def _reciprocal_scaled(values: Tensor, numerator: float) -> Tensor:
    """numerator / x where x is finite and > 0, else 0 (depth <-> disparity)."""
    if not (numerator > 0 and math.isfinite(numerator)):
        raise ValueError(f"need fx > 0 and baseline_m > 0, got fx * baseline = {numerator}")
    valid = (values >= _TINY) & (values <= _FLOAT32_MAX)
    return torch.where(valid, numerator / torch.where(valid, values, 1.0), 0.0)


def _thermal_bounds(raw: Tensor, config) -> tuple[Tensor, Tensor]:
    """`road_seg_core.thermal.thermal_range` on a tensor: (lo, hi) raw counts."""
    if config.mode == "fixed":
        return tuple(torch.tensor(v, dtype=torch.float64, device=raw.device) for v in config.fixed_range)
    lo, hi = _percentile_range(raw, config, not raw.dtype.is_floating_point)
    span = max(config.min_span, 1e-6)
    centre = 0.5 * (lo + hi)
    narrow = hi - lo < span
    return torch.where(narrow, centre - 0.5 * span, lo), torch.where(narrow, centre + 0.5 * span, hi)


def _normalize_thermal(raw: Tensor, config, bounds: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """`road_seg_core.thermal.normalize_thermal` on a tensor (same percentiles, same float32 arithmetic)."""
    integer = not raw.dtype.is_floating_point
    lo, hi = _thermal_bounds(raw, config) if bounds is None else bounds
    gain = ((1.0 - float(MIN_VALUE)) / (hi - lo)).to(torch.float32)
    values = raw.to(torch.float32)
    out = (values - (0.5 * (lo + hi)).to(torch.float32)) * gain + np.float32(0.5 * (1.0 + float(MIN_VALUE)))
    out = out.clamp(float(MIN_VALUE), 1.0)
    if not integer:
        out = torch.where(torch.isfinite(values), out, 0.0)  # clip keeps NaN; +inf would read as "hot"
    return out


def _percentile_range(raw: Tensor, config, integer: bool) -> tuple[Tensor, Tensor]:
    step = percentile_stride(tuple(raw.shape))
    raw = raw[::step, ::step]  # the host path's sample grid
    if integer:  # from the histogram, as the CPU path ("inverted CDF" percentile)
        cumulative = torch.cumsum(torch.bincount(raw.reshape(-1).to(torch.int64)), 0)
        ranks = torch.clamp(torch.ceil(torch.tensor(config.percentiles, dtype=torch.float64, device=raw.device)
                                       / 100.0 * cumulative[-1]), min=1)
        found = torch.searchsorted(cumulative, ranks.to(cumulative.dtype))
        return found[0].to(torch.float64), found[1].to(torch.float64)
    finite = raw[torch.isfinite(raw)].to(torch.float64)
    if finite.numel() == 0:  # nothing valid: every pixel becomes "no data"
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=raw.device)
        return nan, nan
    q = torch.tensor(config.percentiles, dtype=torch.float64, device=raw.device) / 100.0
    bounds = torch.quantile(finite, q)
    return bounds[0], bounds[1]
