"""Plain containers for one synchronised set of sensor data, in sensor units.

Everything that feeds the pipeline (the ROS node, the bag evaluator, the
synthetic generator, dataset loaders) fills a `SensorFrame`; nothing in it is
normalised yet, so the same object can be displayed, saved or evaluated.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from road_seg_core.image_codec import rgb_channel_indices, to_rgb8


@dataclass(frozen=True)
class StereoIntrinsics:
    """Pinhole intrinsics of the rectified left camera and the stereo baseline.

    `baseline_m` comes from the right camera's projection matrix, whose
    Tx = -fx * B (sensor_msgs/CameraInfo convention).
    """

    fx: float
    fy: float
    cx: float
    cy: float
    baseline_m: float
    width: int
    height: int

    @classmethod
    def from_projection(cls, p_left, p_right, width: int, height: int) -> "StereoIntrinsics":
        """Build from the 3x4 projection matrices (row-major, 12 values) of both cameras."""
        pl = np.asarray(p_left, dtype=np.float64).reshape(3, 4)
        pr = np.asarray(p_right, dtype=np.float64).reshape(3, 4)
        fx = float(pl[0, 0])
        if fx <= 0:
            raise ValueError(f"left projection matrix has fx={fx}, expected > 0")
        tx = float(pr[0, 3])
        baseline = -tx / float(pr[0, 0]) if pr[0, 0] > 0 else 0.0
        if baseline <= 0:
            raise ValueError(f"right projection matrix gives baseline {baseline:.4f} m (Tx={tx}); expected Tx = -fx*B < 0")
        return cls(fx=fx, fy=float(pl[1, 1]), cx=float(pl[0, 2]), cy=float(pl[1, 2]),
                   baseline_m=baseline, width=int(width), height=int(height))

    def scaled(self, width: int, height: int) -> "StereoIntrinsics":
        """Intrinsics of the same camera resampled to another image size."""
        sx, sy = width / self.width, height / self.height
        return StereoIntrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy,
                                self.baseline_m, int(width), int(height))


@dataclass(frozen=True)
class ColourImage:
    """A colour image as the camera sent it (e.g. the ZED's bgra8), before any conversion to RGB.

    Converting 1280x720 BGRA to RGB costs 0.2-0.4 ms a frame, and the model needs the image only at its
    input size: preprocessing resizes these pixels and picks the channels (`rgb_channels`) on the way, and
    the full-size RGB image is made only for whoever reads `SensorFrame.rgb` (the overlay, a saved frame).
    """

    array: np.ndarray  # HxWxC uint8 (C = 3 or 4) or HxW grey, as decoded
    encoding: str  # its sensor_msgs encoding (rgb8, bgr8, rgba8, bgra8, mono8, 8UC1)

    @property
    def rgb_channels(self) -> tuple[int, int, int]:
        """Indices of R, G and B in the last axis (0, 0, 0 for grey)."""
        return rgb_channel_indices(self.encoding)

    def to_rgb(self) -> np.ndarray:
        return to_rgb8(self.array, self.encoding)


@dataclass
class SensorFrame:
    """One synchronised set of raw sensor data, all optional except the left image.

    Units: `rgb`/`right_rgb` HxWx3 uint8 in RGB order; `depth` HxW float32 metres;
    `disparity` HxW float32 pixels (left image resolution); `thermal` hxw raw
    counts (uint16) or uint8, at the thermal camera's own resolution. Invalid
    depth/disparity may be NaN, inf or 0; preprocessing sanitises it.

    The left image is given either as `rgb` or as `colour` (the camera's pixels in
    their own channel order, `SensorFrame.from_colour`); then `rgb` is converted on
    first read and kept, and `colour_pixels()` lets preprocessing skip the conversion.
    """

    rgb: np.ndarray | None  # None when `colour` is given; a property over _rgb (installed below the class)
    stamp_ns: int = 0
    frame_id: str = ""
    right_rgb: np.ndarray | None = None
    depth: np.ndarray | None = None
    disparity: np.ndarray | None = None
    thermal: np.ndarray | None = None
    intrinsics: StereoIntrinsics | None = None
    extras: dict = field(default_factory=dict)
    colour: ColourImage | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.__dict__.get("_rgb") is None and self.colour is None:
            raise ValueError("a SensorFrame needs its left image: rgb or colour")

    @classmethod
    def from_colour(cls, array: np.ndarray, encoding: str, **fields) -> "SensorFrame":
        """A frame whose left image stays in the sensor's `encoding` until `rgb` is read."""
        return cls(rgb=None, colour=ColourImage(array, encoding), **fields)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the left image, which every output matches."""
        image = self.__dict__.get("_rgb")
        shape = (image if image is not None else self.colour.array).shape
        return int(shape[0]), int(shape[1])

    def colour_pixels(self) -> tuple[np.ndarray, tuple[int, int, int]]:
        """The left image's pixels as they are held and the indices of R, G, B in them (no conversion)."""
        image = self.__dict__.get("_rgb")
        if image is not None:
            return image, (0, 1, 2)
        return self.colour.array, self.colour.rgb_channels


def _get_rgb(frame: SensorFrame) -> np.ndarray:
    image = frame.__dict__.get("_rgb")
    if image is None:
        image = frame.colour.to_rgb()
        frame.__dict__["_rgb"] = image
    return image


def _set_rgb(frame: SensorFrame, image: np.ndarray | None) -> None:
    frame.__dict__["_rgb"] = image


# After @dataclass, which would otherwise take a property in the class body for the field's default.
SensorFrame.rgb = property(_get_rgb, _set_rgb, doc="HxWx3 uint8 RGB left image (converted from `colour` on first read)")
