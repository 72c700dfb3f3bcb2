"""Sensor frame -> model input tensors, shared by the node, bag evaluation, the demo and training.

The model sees every modality at its input size, in the units of the spec
(rgb 0..255, depth metres, disparity pixels at model width, thermal in (0, 1],
height: metres above a datum 1 m below the road plane fitted to the depth),
with 0 meaning "no measurement". Resizing happens here, once, with the
interpolation each modality needs: area for colour, nearest for depth-like
maps so a hole never blends into a fake surface.

Per-frame cost matters: on the car this runs on the CPU for every camera frame
(`road-seg bench` prints it next to the cost of merely deserialising the
messages), so each step takes OpenCV's fast path: colour is box-filtered by a
whole factor first (cv2's INTER_AREA is ~20x slower at fractional ratios),
thermal is warped as raw counts and normalised at input size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from road_seg_core import depth as depth_ops
from road_seg_core.frames import SensorFrame
from road_seg_core.road_plane import RoadPlaneConfig, RoadPlaneTracker
from road_seg_core.thermal import ThermalConfig, resize_homography, thermal_in_view

#: Where the model's depth-like input comes from on the car.
DEPTH_SOURCES = ("depth", "disparity", "stereo")


@dataclass
class PreprocessConfig:
    """How raw sensor data becomes model input; lives in config/perception.yaml on the car."""

    depth_source: str = "depth"  # "depth" topic, ZED "disparity" topic, or "stereo" (SGBM on the rectified pair)
    min_depth_m: float = 0.3
    max_depth_m: float = 40.0
    thermal: ThermalConfig = field(default_factory=ThermalConfig)
    sgbm: depth_ops.SgbmConfig = field(default_factory=depth_ops.SgbmConfig)
    road_plane: RoadPlaneConfig = field(default_factory=RoadPlaneConfig)
    #: OpenCV's worker threads (process-wide), set when a Preprocessor is built; 0 leaves them as they are.
    #: The node's per-frame steps take well under a millisecond each: at 1280x720 (`road-seg bench`), 1 thread
    #: spent 2.2 ms less CPU per frame than OpenCV's default pool on 2 cores, for 0.5 ms more wall time.
    opencv_threads: int = 0

    def __post_init__(self) -> None:
        if self.depth_source not in DEPTH_SOURCES:
            raise ValueError(f"depth_source must be one of {DEPTH_SOURCES}, got {self.depth_source!r}")
        if not 0 <= self.min_depth_m < self.max_depth_m:
            raise ValueError(f"need 0 <= min_depth_m < max_depth_m, got {self.min_depth_m}, {self.max_depth_m}")
        if self.opencv_threads < 0:
            raise ValueError(f"opencv_threads must be >= 0 (0: OpenCV's default), got {self.opencv_threads}")


class MissingInputError(ValueError):
    """A frame lacks what the configured depth source needs (e.g. no intrinsics to turn depth into disparity)."""


def frame_intrinsics(frame: SensorFrame):
    """The frame's camera intrinsics; depth<->disparity conversion cannot go on without them."""
    if frame.intrinsics is None:
        raise MissingInputError("converting between depth and disparity needs camera intrinsics "
                                "(left and right camera_info); none were received for this frame")
    return frame.intrinsics


def resize_colour(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Anti-aliased downscale of a colour image to (h, w): area filter by a whole factor, then bilinear.

    Equal to cv2.INTER_AREA where the ratio is below 2 (one step); above, the
    whole-factor box filter (OpenCV's fast path) leaves a remaining ratio below 2
    for bilinear, whose aliasing there is small: 1280x720 -> 448x256 in 0.4 ms
    instead of 4-5 ms, labels equal to the one-step resize within resize tolerance.
    """
    h, w = size
    factor = int(min(image.shape[0] / h, image.shape[1] / w))
    if factor < 2:
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    ih, iw = image.shape[0] // factor, image.shape[1] // factor
    boxed = cv2.resize(image[:ih * factor, :iw * factor], (iw, ih), interpolation=cv2.INTER_AREA)
    if (ih, iw) == (h, w):
        return boxed
    return cv2.resize(boxed, (w, h), interpolation=cv2.INTER_LINEAR)


class Preprocessor:
    """Builds the model's input dict for one frame: {modality: (1, C, H, W) array}.

    Missing sensors are fed as zeros (validity 0), which the fusion network is
    trained to handle, so a failing thermal camera degrades output instead of
    stopping the car's perception.
    """

    def __init__(self, modalities: tuple[str, ...], input_size: tuple[int, int],
                 config: PreprocessConfig | None = None) -> None:
        self.modalities = tuple(modalities)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.config = config or PreprocessConfig()
        if self.config.opencv_threads > 0:
            cv2.setNumThreads(self.config.opencv_threads)
        h, w = self.input_size
        self._zeros = np.zeros((1, 1, h, w), np.float32)
        self._alpha = np.empty((0, 0), np.uint8)  # where a 4-channel colour image's alpha is split to
        # The SGBM search range is set for a 1280-wide ZED; scale it to the width SGBM actually runs at.
        self._sgbm = self.config.sgbm.for_width(w)
        #: Road-plane fit behind the "height" input, with the last good plane as fallback.
        self.road_plane = RoadPlaneTracker(self.config.road_plane)
        #: Fraction of valid pixels per modality in the last frame (for diagnostics).
        self.last_valid_fraction: dict[str, float] = {}

    def __call__(self, frame: SensorFrame) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        depth: list[np.ndarray | None] = []  # computed at most once per frame (depth and height share it)

        def depth_once() -> np.ndarray | None:
            if not depth:
                depth.append(self.depth_m(frame))
            return depth[0]

        for name in self.modalities:
            if name == "rgb":
                out[name] = self.rgb(*frame.colour_pixels())
            elif name == "depth":
                out[name] = self._one_channel(name, depth_once())
            elif name == "disparity":
                out[name] = self._one_channel(name, self.disparity_px(frame))
            elif name == "thermal":
                out[name] = self._one_channel(name, self.thermal01(frame))
            elif name == "height":
                out[name] = self._one_channel(name, self.height_code(frame, depth_once()))
            else:
                raise ValueError(f"unknown modality {name!r}")
        return out

    def reset(self) -> None:
        """Forget state carried between frames (the last good road plane): call between independent frames."""
        self.road_plane.reset()

    # -- per modality -------------------------------------------------------------------------------------------
    def rgb(self, image: np.ndarray, channels: tuple[int, int, int] = (0, 1, 2)) -> np.ndarray:
        """(1, 3, H, W) uint8 RGB at the input size from a colour image whose R, G, B are at `channels`.

        The sensor's pixels are resized as they come (BGRA from a ZED) and the planes picked while
        splitting HWC into CHW: per-channel resizing makes this equal to converting to RGB first.
        """
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise ValueError(f"colour image must be HxW, HxWx3 or HxWx4, got shape {image.shape}")
        small = resize_colour(image, self.input_size)
        out = np.empty((1, 3) + small.shape[:2], np.uint8)
        planes = small.shape[2] if small.ndim == 3 else 1
        if planes == 1:
            out[0] = small.reshape(small.shape[:2])
            return out
        targets: list[np.ndarray | None] = [None] * planes
        for plane, channel in enumerate(channels):
            targets[channel] = out[0, plane]
        for index in (i for i, t in enumerate(targets) if t is None):  # alpha (BGRA, RGBA): a kept scratch plane
            if self._alpha.shape != small.shape[:2]:
                self._alpha = np.empty(small.shape[:2], np.uint8)
            targets[index] = self._alpha
        cv2.split(small, targets)  # HWC -> CHW (and BGR(A) -> RGB) without numpy's strided copy
        return out

    def depth_m(self, frame: SensorFrame) -> np.ndarray | None:
        """Depth in metres at the input size, 0 where invalid; None if the sensor is missing."""
        cfg = self.config
        if cfg.depth_source == "depth":
            if frame.depth is None:
                return None
            depth = depth_ops.resize_nearest(frame.depth, self.input_size)
        else:
            disparity = self._disparity_at_input(frame)
            if disparity is None:
                return None
            fx = frame_intrinsics(frame).scaled(self.input_size[1], self.input_size[0]).fx
            depth = depth_ops.disparity_to_depth(disparity, fx, frame_intrinsics(frame).baseline_m)
        return depth_ops.zero_invalid(depth, cfg.min_depth_m, cfg.max_depth_m)  # a new array either way

    def disparity_px(self, frame: SensorFrame) -> np.ndarray | None:
        """Disparity in pixels at the model's input width, 0 where invalid; None if the sensor is missing."""
        cfg = self.config
        if cfg.depth_source == "depth":
            if frame.depth is None:
                return None
            depth = depth_ops.resize_nearest(frame.depth, self.input_size)
            intr = frame_intrinsics(frame)
            fx = intr.scaled(self.input_size[1], self.input_size[0]).fx
            disparity = depth_ops.depth_to_disparity(depth, fx, intr.baseline_m)
        else:
            disparity = self._disparity_at_input(frame)
            if disparity is None:
                return None
        return depth_ops.sanitize(disparity, 1e-3, np.inf)[0]

    def thermal01(self, frame: SensorFrame) -> np.ndarray | None:
        """Thermal in (0, 1] warped into the left view at the input size; 0 outside the thermal field of view."""
        if frame.thermal is None:
            return None
        # One warp does both jobs: thermal -> left image (configured homography), then left -> input size.
        to_input = resize_homography(frame.size, self.input_size) @ self.config.thermal.homography_matrix
        return thermal_in_view(frame.thermal, self.config.thermal, to_input, self.input_size)

    def height_code(self, frame: SensorFrame, depth_m: np.ndarray | None) -> np.ndarray | None:
        """The "height" input: height above the fitted road plane, encoded by `road_plane.encode_height`.

        None (fed as no data) without depth, without intrinsics (the plane fit
        needs the focal length and principal point) or when neither this frame
        nor a recent one gave a plausible road plane.
        """
        if depth_m is None or frame.intrinsics is None:
            return None
        h, w = self.input_size
        intr = frame.intrinsics.scaled(w, h)
        return self.road_plane.height_input(depth_m, intr.fx, intr.fy, intr.cx, intr.cy, sanitized=True)

    # -- helpers ------------------------------------------------------------------------------------------------
    def _disparity_at_input(self, frame: SensorFrame) -> np.ndarray | None:
        h, w = self.input_size
        if self.config.depth_source == "disparity":
            if frame.disparity is None:
                return None
            disparity = depth_ops.resize_nearest(frame.disparity, self.input_size)
            return depth_ops.rescale_disparity(disparity, w / frame.disparity.shape[1])
        if frame.right_rgb is None:
            return None
        # SGBM at the model's resolution: disparities come out in input-width pixels, and it is ~20x cheaper than 720p.
        left = cv2.resize(frame.rgb, (w, h), interpolation=cv2.INTER_AREA)
        right = cv2.resize(frame.right_rgb, (w, h), interpolation=cv2.INTER_AREA)
        return depth_ops.stereo_disparity(left, right, self._sgbm)

    def _one_channel(self, name: str, image: np.ndarray | None) -> np.ndarray:
        if image is None:
            self.last_valid_fraction[name] = 0.0
            return self._zeros.copy()
        image = np.ascontiguousarray(image, dtype=np.float32)
        self.last_valid_fraction[name] = cv2.countNonZero(image) / image.size  # ~3x numpy's count_nonzero
        return image[None, None]
