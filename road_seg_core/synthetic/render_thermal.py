"""The FLIR Boson-like thermal image: temperature per material, sun-warmed faces, fog, blur and sensor noise.

Temperatures are chosen so thermal shows what colour misses (people and running engines at night) and not what
it should not (a pothole is the same asphalt at nearly the same temperature).
"""
from __future__ import annotations

import cv2
import numpy as np

from .camera import Rays, row_bands
from .materials import Materials
from .noise import gauss
from .raycast import View
from .scene import CompiledScene

_f32 = np.float32


def thermal_counts(temp_c: float | np.ndarray) -> np.ndarray | np.floating:
    """Boson-like raw counts for a scene temperature (about 30 counts per kelvin, 7500 at 10 degC)."""
    return 7500.0 + 30.0 * (np.asarray(temp_c) - 10.0)


def shade_thermal(scene: CompiledScene, view: View, rays: Rays, rng: np.random.Generator) -> np.ndarray:
    """Boson-like uint16 counts: temperatures per material, sun-warmed faces, optics blur, sensor noise."""
    look, mats = scene.look, scene.materials
    h, w = view.mat.shape
    counts = np.empty((h, w), dtype=_f32)
    for r in row_bands(0, h, w):
        mat, band = view.mat[r], rays.rows(r)
        # Sunlit faces are warmer, shadowed ground (shade < 0) cooler.
        temp = np.take(mats["temp"], mat) + _f32(look.sun_heat) * view.shade[r]
        sky = mat == Materials.SKY
        if sky.any():
            elevation = np.clip(band.dy / band.length, 0.0, 1.0)
            sky_temp = _f32(look.t_sky) + _f32(look.t_ambient - look.t_sky) * np.exp(elevation * _f32(-6.0))
            np.copyto(temp, sky_temp, where=sky)
        if look.fog_beta > 0:
            dist = np.minimum(view.depth[r], _f32(1e4)) * band.length
            trans = np.exp(-_f32(look.fog_beta * 0.15) * dist)
            temp = temp * trans + _f32(look.t_ambient - 1.0) * (1.0 - trans)
        counts[r] = temp * _f32(30.0) + _f32(thermal_counts(0.0))
    counts = cv2.GaussianBlur(counts, (0, 0), max(0.5, 0.9 * w / 640.0))
    counts += gauss(rng, (h, w)) * _f32(5.0)
    counts += gauss(rng, (1, w)) * _f32(3.0)  # column fixed-pattern noise
    np.clip(counts + _f32(0.5), 0, 65535, out=counts)
    return counts.astype(np.uint16)
