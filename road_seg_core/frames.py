"""Plain containers for one synchronised set of sensor data, in sensor units.

Everything that feeds the pipeline (the ROS node, the bag evaluator, the
synthetic generator, dataset loaders) fills a `SensorFrame`; nothing in it is
normalised yet, so the same object can be displayed, saved or evaluated.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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


@dataclass
class SensorFrame:
    """One synchronised set of raw sensor data, all optional except the left image.

    Units: `rgb`/`right_rgb` HxWx3 uint8 in RGB order; `depth` HxW float32 metres;
    `disparity` HxW float32 pixels (left image resolution); `thermal` hxw raw
    counts (uint16) or uint8, at the thermal camera's own resolution. Invalid
    depth/disparity may be NaN, inf or 0; preprocessing sanitises it.
    """

    rgb: np.ndarray
    stamp_ns: int = 0
    frame_id: str = ""
    right_rgb: np.ndarray | None = None
    depth: np.ndarray | None = None
    disparity: np.ndarray | None = None
    thermal: np.ndarray | None = None
    intrinsics: StereoIntrinsics | None = None
    extras: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the left image, which every output matches."""
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])
