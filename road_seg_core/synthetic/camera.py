"""The ZED-like stereo rig: intrinsics, camera poses, per-pixel rays and screen rectangles of 3-D boxes.

A ray's parameter equals the optical depth Z (its camera z-component is 1), so the ray caster's hit distance is
directly the ZED depth; the right camera sits `BASELINE_M` to the right with the same rotation, so stereo
matching on the pair recovers fx * B / Z.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np

from ..frames import StereoIntrinsics
from .world import Layout

_f32 = np.float32


FRAME_ID = "zed_left_camera_optical_frame"
BASELINE_M = 0.12
#: ZED-like focal length relative to image width (about 85 degrees horizontal field of view).
FOCAL_PER_WIDTH = 0.55


def intrinsics_for(width: int, height: int) -> StereoIntrinsics:
    """ZED-like rectified intrinsics for an image size; the focal length scales with width."""
    f = FOCAL_PER_WIDTH * width
    return StereoIntrinsics(fx=f, fy=f, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0,
                            baseline_m=BASELINE_M, width=int(width), height=int(height))


@dataclass(frozen=True)
class Camera:
    origin: tuple[float, float, float]
    rot: np.ndarray  # 3x3, optical frame (x right, y down, z forward) -> world
    intr: StereoIntrinsics


def camera_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Optical-to-world rotation; pitch > 0 looks down, yaw > 0 looks towards +x."""
    cy_, sy_ = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    r_yaw = np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    optical_to_level = np.diag([1.0, -1.0, 1.0])
    return r_yaw @ r_pitch @ r_roll @ optical_to_level


@lru_cache(maxsize=8)
def _pixel_grid(intr: StereoIntrinsics) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised image coordinates (x/z per column, y/z per row) and the ray length for z = 1."""
    xn = ((np.arange(intr.width, dtype=np.float64) - intr.cx) / intr.fx).astype(_f32)
    yn = ((np.arange(intr.height, dtype=np.float64) - intr.cy) / intr.fy).astype(_f32)
    length = np.sqrt(1.0 + xn[None, :] ** 2 + yn[:, None] ** 2).astype(_f32)
    for a in (xn, yn, length):
        a.flags.writeable = False
    return xn, yn, length


class RayBlock:
    """World-frame ray directions of a pixel rectangle; a ray's parameter t equals the optical depth Z."""

    def __init__(self, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray, length: np.ndarray):
        self.dx, self.dy, self.dz, self.length = dx, dy, dz, length
        self.shape = dx.shape

    @property
    def tex_u(self) -> np.ndarray:
        """Direction part of the texture coordinates (see `render_rgb`)."""
        return self.dx + _f32(0.6) * self.dz

    @property
    def tex_v(self) -> np.ndarray:
        return self.dy + _f32(0.8) * self.dz


class Rays:
    """Every pixel's ray of one camera, built on demand per rectangle.

    A ray direction is R @ (xn[u], yn[v], 1), which separates into a per-column plus a per-row term; keeping
    only those vectors and expanding the rectangle a stage needs saves whole-image arrays and memory traffic.
    """

    def __init__(self, cam: Camera):
        xn, yn, self._length = _pixel_grid(cam.intr)
        r = cam.rot.astype(_f32)
        self._cols = [r[i, 0] * xn for i in range(3)]
        self._rows = [r[i, 1] * yn + r[i, 2] for i in range(3)]
        self.shape = (cam.intr.height, cam.intr.width)
        down = self._rows[1] + self._cols[1].min() < -1e-5  # rows where some ray points below the horizon
        below = np.flatnonzero(down)
        self.first_ground_row = int(below[0]) if below.size else self.shape[0]

    def rect(self, rows: slice, cols: slice = slice(None)) -> RayBlock:
        dx, dy, dz = (self._cols[i][None, cols] + self._rows[i][rows, None] for i in range(3))
        return RayBlock(dx, dy, dz, self._length[rows, cols])

    def rows(self, r: slice) -> RayBlock:
        return self.rect(r)


#: Per-pixel stages run over bands of about this many pixels: the temporaries of a band stay in the CPU cache,
#: which roughly halves the time of long numpy expression chains compared with whole images.
_BAND_PIXELS = 16384


def row_bands(start: int, height: int, width: int) -> Iterator[slice]:
    step = max(4, _BAND_PIXELS // max(width, 1))
    for r in range(start, height, step):
        yield slice(r, min(r + step, height))


#: Corner index pairs of the 12 edges of a box given by `box_corners` (bottom ring, top ring, verticals).
_BOX_EDGES = np.array([(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
                       (0, 4), (1, 5), (2, 6), (3, 7)])
_NEAR_PLANE = 0.05


def box_rois(cam: Camera, corners: np.ndarray) -> list[tuple[slice, slice] | None]:
    """Pixel rectangles covering N boxes given by their 8 world corners (N, 8, 3); None when out of view.

    Boxes crossing the camera plane are clipped against a near plane first, so a building beside the car only
    claims the part of the image it can actually cover.
    """
    if len(corners) == 0:
        return []
    intr = cam.intr
    pc = (corners - np.asarray(cam.origin)) @ cam.rot
    a, b = pc[:, _BOX_EDGES[:, 0]], pc[:, _BOX_EDGES[:, 1]]
    za, zb = a[..., 2], b[..., 2]
    crosses = (za - _NEAR_PLANE) * (zb - _NEAR_PLANE) < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(crosses, (_NEAR_PLANE - za) / (zb - za), 0.0)
    clipped = a + f[..., None] * (b - a)
    points = np.concatenate([pc, clipped], axis=1)
    usable = np.concatenate([pc[..., 2] >= _NEAR_PLANE, crosses], axis=1)
    z = np.maximum(points[..., 2], _NEAR_PLANE)
    u = intr.fx * points[..., 0] / z + intr.cx
    v = intr.fy * points[..., 1] / z + intr.cy
    big = 1e9
    u0 = np.floor(np.where(usable, u, big).min(axis=1)) - 1
    u1 = np.ceil(np.where(usable, u, -big).max(axis=1)) + 2
    v0 = np.floor(np.where(usable, v, big).min(axis=1)) - 1
    v1 = np.ceil(np.where(usable, v, -big).max(axis=1)) + 2
    u0, u1 = np.clip(u0, 0, intr.width).astype(int), np.clip(u1, 0, intr.width).astype(int)
    v0, v1 = np.clip(v0, 0, intr.height).astype(int), np.clip(v1, 0, intr.height).astype(int)
    visible = usable.any(axis=1) & (u0 < u1) & (v0 < v1)
    return [(slice(int(v0[i]), int(v1[i])), slice(int(u0[i]), int(u1[i]))) if visible[i] else None
            for i in range(len(corners))]


def stereo_cameras(layout: Layout, intr: StereoIntrinsics, ego_z: float, ego_s: float,
                   pitch: float, roll: float, yaw_offset: float) -> tuple[Camera, Camera]:
    road = layout.road
    x, z = road.to_world(ego_z, ego_s)
    rot = camera_rotation(road.yaw(ego_z) + yaw_offset, pitch, roll)
    left = Camera((float(x), float(layout.camera_height), float(z)), rot, intr)
    shift = rot @ np.array([intr.baseline_m, 0.0, 0.0])
    right = Camera(tuple(float(c) for c in np.asarray(left.origin) + shift), rot, intr)
    return left, right
