"""Analytic primitives (box, cylinder, sphere, traffic cone): ray hits over a pixel rectangle.

Each `hit` is numpy-vectorised over the rays of the rectangle the primitive projects to and returns
(t, material, shade) with t = inf where the ray misses; `corners` bound it for culling and rectangles.
"""
from __future__ import annotations

import math
from typing import Protocol, Sequence

import numpy as np

from .noise import wrap_period

_f32 = np.float32
Vec3 = tuple[float, float, float]
#: (t, material id, shade) per pixel of a rectangle: the hit distance (inf = miss), uint16 ids, float32 shading.
Hit = tuple[np.ndarray, np.ndarray, np.ndarray]


class Primitive(Protocol):
    """What the ray caster needs of a shape: 8 world corners bounding it, and its hits for a block of rays."""

    corners: np.ndarray

    def hit(self, o: Vec3, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> Hit: ...


def box_corners(x: float, z: float, yaw: float, hx: float, hz: float, y0: float, y1: float) -> np.ndarray:
    """The 8 world corners (8, 3) of a box yawed about y: bottom ring then top ring."""
    c, s = math.cos(yaw), math.sin(yaw)
    lx = np.array([-hx, hx, hx, -hx] * 2)
    lz = np.array([-hz, -hz, hz, hz] * 2)
    ys = np.array([y0] * 4 + [y1] * 4)
    return np.stack([x + c * lx + s * lz, ys, z - s * lx + c * lz], axis=1)


class Box:
    """A yawed box; faces (-x, +x, -y, +y, -z, +z) in its own frame, +z being the object's front."""

    def __init__(self, x: float, z: float, yaw: float, hx: float, hz: float, y0: float, y1: float,
                 face_mats: Sequence[int], sun: Vec3, lights: tuple[int, int, float, float, float] | None = None,
                 windows: tuple[int, float] | None = None):
        self.x, self.z, self.hx, self.hz, self.y0, self.y1 = x, z, hx, hz, y0, y1
        self.c, self.s = math.cos(yaw), math.sin(yaw)
        ex, ez = np.array([self.c, 0.0, -self.s]), np.array([self.s, 0.0, self.c])
        normals = [-ex, ex, np.array([0, -1.0, 0]), np.array([0, 1.0, 0]), -ez, ez]
        self.face_shade = np.array([max(0.0, float(n @ np.asarray(sun))) for n in normals], dtype=_f32)
        self.face_mats = np.asarray(face_mats, dtype=np.uint16)
        self.lights = lights  # (rear_mat, front_mat, y_lo, y_hi, |x| fraction) for lamps on the +-z faces
        self.windows = windows  # (mat, spacing) for facade windows on the vertical faces
        self.corners = box_corners(x, z, yaw, hx, hz, y0, y1)

    def hit(self, o: Vec3, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> Hit:
        c, s = self.c, self.s
        px, pz = o[0] - self.x, o[2] - self.z
        lox, loz, loy = c * px - s * pz, s * px + c * pz, o[1]
        ldx = c * dx - s * dz
        ldz = s * dx + c * dz
        with np.errstate(divide="ignore", invalid="ignore"):
            ix, iy, iz = 1.0 / ldx, 1.0 / dy, 1.0 / ldz
            ax, bx = (-self.hx - lox) * ix, (self.hx - lox) * ix
            ay, by = (self.y0 - loy) * iy, (self.y1 - loy) * iy
            az, bz = (-self.hz - loz) * iz, (self.hz - loz) * iz
        nx, ny, nz = np.minimum(ax, bx), np.minimum(ay, by), np.minimum(az, bz)
        near = np.maximum(np.maximum(nx, ny), nz)
        far = np.minimum(np.minimum(np.maximum(ax, bx), np.maximum(ay, by)), np.maximum(az, bz))
        t = np.where((near <= far) & (near > 0.0), near, _f32(np.inf))
        # Entry face: the axis whose slab was entered last, and which side of it (uint8 keeps this cheap).
        on_x, on_y = near == nx, near == ny
        axis = np.where(on_x, np.uint8(0), np.where(on_y, np.uint8(2), np.uint8(4)))
        face = axis | np.where(on_x, ldx < 0, np.where(on_y, dy < 0, ldz < 0))
        mat = np.take(self.face_mats, face)
        if self.lights is not None or self.windows is not None:
            tf = np.where(np.isfinite(t), t, _f32(0.0))
            hx_local = lox + tf * ldx
            hy = loy + tf * dy
            if self.lights is not None:
                rear, front, y_lo, y_hi, frac = self.lights
                lamp = (face >= 4) & (hy > y_lo) & (hy < y_hi) & (np.abs(hx_local) > frac * self.hx)
                mat = np.where(lamp, np.where(face == 5, front, rear).astype(np.uint16), mat)
            if self.windows is not None:
                wmat, spacing = self.windows
                along = np.where(face < 2, loz + tf * ldz, hx_local)
                fu = wrap_period(along * _f32(1.0 / spacing))
                fv = wrap_period(hy * _f32(1.0 / 3.2))
                window = (face != 2) & (face != 3) & (fu > 0.25) & (fu < 0.75) & (fv > 0.35) & (fv < 0.8) & (hy > 1.5)
                mat = np.where(window, np.uint16(wmat), mat)
        return t, mat, np.take(self.face_shade, face)


class Cylinder:
    """Vertical cylinder with material bands by height: bands = ((y_top, mat), ...) ascending."""

    def __init__(self, x: float, z: float, r: float, y0: float, y1: float, bands: Sequence[tuple[float, int]],
                 sun: Vec3):
        self.x, self.z, self.r, self.y0, self.y1, self.bands = x, z, r, y0, y1, bands
        self.sun = sun
        self.corners = box_corners(x, z, 0.0, r, r, y0, y1)

    def hit(self, o: Vec3, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> Hit:
        px, pz = o[0] - self.x, o[2] - self.z
        a = dx * dx + dz * dz
        b = 2.0 * (px * dx + pz * dz)
        c = px * px + pz * pz - self.r * self.r
        disc = b * b - 4.0 * a * c
        with np.errstate(invalid="ignore", divide="ignore"):
            t = (-b - np.sqrt(disc)) / (2.0 * a)
        y = o[1] + t * dy
        ok = (disc >= 0) & (t > 0) & (y >= self.y0) & (y <= self.y1)
        t = np.where(ok, t, _f32(np.inf))
        mat = np.full(t.shape, self.bands[-1][1], dtype=np.uint16)
        for y_top, m in reversed(self.bands[:-1]):
            mat[y < y_top] = m
        tf = np.where(ok, t, _f32(0.0))
        shade = np.maximum(((px + tf * dx) * self.sun[0] + (pz + tf * dz) * self.sun[2]) * (1.0 / self.r), 0.0)
        return t, mat, shade.astype(_f32, copy=False)


class Sphere:
    """A sphere (heads, tree crowns, distant hills sunk into the ground)."""

    def __init__(self, x: float, y: float, z: float, r: float, mat: int, sun: Vec3):
        self.x, self.y, self.z, self.r, self.mat, self.sun = x, y, z, r, mat, sun
        self.corners = box_corners(x, z, 0.0, r, r, max(y - r, 0.0), y + r)  # nothing below ground is seen

    def hit(self, o: Vec3, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> Hit:
        px, py, pz = o[0] - self.x, o[1] - self.y, o[2] - self.z
        a = dx * dx + dy * dy + dz * dz
        b = 2.0 * (px * dx + py * dy + pz * dz)
        c = px * px + py * py + pz * pz - self.r * self.r
        disc = b * b - 4.0 * a * c
        with np.errstate(invalid="ignore", divide="ignore"):
            t = (-b - np.sqrt(disc)) / (2.0 * a)
        ok = (disc >= 0) & (t > 0)
        t = np.where(ok, t, _f32(np.inf))
        tf = np.where(ok, t, _f32(0.0))
        sun = self.sun
        shade = ((px + tf * dx) * sun[0] + (py + tf * dy) * sun[1] + (pz + tf * dz) * sun[2]) * (1.0 / self.r)
        return t, np.full(t.shape, self.mat, dtype=np.uint16), np.maximum(shade, 0.0).astype(_f32, copy=False)


class ConeShape:
    """Traffic cone: apex at height h above (x, z), base radius r, with a reflective band."""

    def __init__(self, x: float, z: float, r: float, h: float, mat: int, band_mat: int, sun: Vec3):
        self.x, self.z, self.r, self.h, self.mat, self.band_mat, self.sun = x, z, r, h, mat, band_mat, sun
        self.corners = box_corners(x, z, 0.0, r, r, 0.0, h)

    def hit(self, o: Vec3, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> Hit:
        k = self.r / self.h
        px, pz = o[0] - self.x, o[2] - self.z
        q = self.r - k * o[1]  # cone radius at the camera's height
        a = dx * dx + dz * dz - (k * k) * dy * dy
        b = 2.0 * (px * dx + pz * dz + (k * q) * dy)
        c = px * px + pz * pz - q * q
        disc = b * b - 4.0 * a * c
        with np.errstate(invalid="ignore", divide="ignore"):
            root = np.sqrt(disc)
            t1, t2 = (-b - root) / (2.0 * a), (-b + root) / (2.0 * a)
        lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
        y_lo, y_hi = o[1] + lo * dy, o[1] + hi * dy
        ok_lo = (disc >= 0) & (lo > 0) & (y_lo >= 0) & (y_lo <= self.h)
        ok_hi = (disc >= 0) & (hi > 0) & (y_hi >= 0) & (y_hi <= self.h)
        t = np.where(ok_lo, lo, np.where(ok_hi, hi, _f32(np.inf)))
        y = np.where(ok_lo, y_lo, y_hi)
        band = (y > 0.4 * self.h) & (y < 0.65 * self.h)
        mat = np.where(band, np.uint16(self.band_mat), np.uint16(self.mat))
        tf = np.where(np.isfinite(t), t, _f32(0.0))
        shade = np.maximum(((px + tf * dx) * self.sun[0] + (pz + tf * dz) * self.sun[2]) / self.r * 0.9
                           + 0.3 * self.sun[1], 0.0)
        return t, mat, shade.astype(_f32, copy=False)
