"""The colour image: texture, sunlight or headlights and street lamps, fog, lamps that glow, and sensor noise.

Shaded in bands of rows with lighting folded into one gain and colour kept as three planes, because that keeps
the temporaries in the CPU cache and avoids numpy's slow interleaved three-channel arithmetic.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .camera import Camera, RayBlock, Rays, row_bands
from .materials import Materials
from .noise import gauss, sample_tile, textures, wrap_period
from .raycast import MAX_GROUND_M, View
from .scene import CompiledScene

_f32 = np.float32


@lru_cache(maxsize=8)
def _vignette(width: int, height: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(_f32)
    r2 = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (width / 2)) ** 2
    v = (1.0 - 0.18 * r2).astype(_f32)
    v.flags.writeable = False
    return v


def shade_rgb(scene: CompiledScene, cam: Camera, view: View, rays: Rays, ego: Camera,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour image (uint8) and, when stereo fails in the dark (night), its noiseless luminance in 0..1."""
    h, w = rays.shape
    rgb = np.empty((h, w, 3), dtype=np.uint8)
    luminance = np.empty((h, w), dtype=_f32) if scene.look.dark_depth_level > 0 else None
    vignette = _vignette(w, h)
    noise_dn = float(scene.look.noise_dn)
    for r in row_bands(0, h, w):
        planes = _colour_band(scene, cam, view.mat[r], view.shade[r], view.depth[r], rays.rows(r), vignette[r], ego)
        if luminance is not None:
            red, green, blue = planes
            luminance[r] = (red * _f32(0.299 / 255.0) + green * _f32(0.587 / 255.0)) + blue * _f32(0.114 / 255.0)
        for plane in planes:
            cv2.scaleAdd(gauss(rng, plane.shape), noise_dn, plane, dst=plane)
            np.clip(plane, 0.0, 255.0, out=plane)
        rgb[r] = cv2.merge([plane.astype(np.uint8) for plane in planes])
    return rgb, luminance


def _colour_band(scene: CompiledScene, cam: Camera, mat: np.ndarray, shade: np.ndarray, z: np.ndarray,
                 rays: RayBlock, vig: np.ndarray, ego: Camera) -> list[np.ndarray]:
    """Noiseless colour of a band of rows: three float32 planes (R, G, B) in 0..255.

    All lighting is folded into one single-channel gain, and colour is kept as separate planes, because
    interleaved three-channel float arithmetic is several times slower in numpy.
    """
    look, mats = scene.look, scene.materials
    zf = np.minimum(z, _f32(MAX_GROUND_M))
    ox, oy, oz = cam.origin
    tiles = textures()
    off = scene.layout.texture_offset
    u0, v0 = ox + 0.6 * oz + off, oy + 0.8 * oz + 0.37 * off
    gain = np.ones(mat.shape, dtype=_f32)
    fine_fade_m = 2.0 * cam.intr.fx * 0.035  # distance at which a fine texel shrinks to half a pixel
    nearest = float(zf.min())
    if nearest < 0.5 * MAX_GROUND_M:  # anything but sky in this band
        # Texture coordinates are a fixed linear map of the world point, so every surface orientation is
        # textured. Coarse patches are smooth at pixel scale: sampled on every other pixel and interpolated.
        h, w = mat.shape
        lo = (slice(None, None, 2), slice(None, None, 2))
        zl = zf[lo]
        coarse = sample_tile(tiles[0], zl * (rays.dx[lo] + _f32(0.6) * rays.dz[lo]),
                             zl * (rays.dy[lo] + _f32(0.8) * rays.dz[lo]), 0.35, u0, v0)
        gain += np.take(mats["coarse"], mat) * cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    if nearest < 3.0 * fine_fade_m:
        # Fine grain fades once a pixel covers several texels, as optics would blur it (it would only alias).
        zr = zf * _f32(1.0 / fine_fade_m)
        fine = np.take(mats["fine"], mat) / (1.0 + zr * zr)
        gain += fine * sample_tile(tiles[1], zf * rays.tex_u, zf * rays.tex_v, 0.035, u0 + 7.0, v0 + 3.0)

    if look.condition == "night":
        # Light from the ego car's low beams and, on urban roads, street lamps; the rest is near-black.
        px, py, pz = ox + zf * rays.dx, oy + zf * rays.dy, oz + zf * rays.dz
        rel = ego.rot.T.astype(_f32)
        ex, ey, ez = px - _f32(ego.origin[0]), py - _f32(ego.origin[1]), pz - _f32(ego.origin[2])
        cz = rel[2, 0] * ex + rel[2, 1] * ey + rel[2, 2] * ez
        cx = rel[0, 0] * ex + rel[0, 1] * ey + rel[0, 2] * ez
        czp = np.maximum(cz, _f32(0.5))
        spread = cx / (_f32(0.9) + _f32(0.35) * czp)
        beam = np.exp(-(spread * spread) - np.maximum(py - _f32(1.0), 0.0) * _f32(1.5))
        light = look.ambient + look.headlight_gain * beam * np.clip(cz * _f32(0.4), 0.0, 1.0) / (
            1.0 + (czp * _f32(1.0 / 14.0)) ** 2)
        if look.streetlight_gain > 0:
            road = scene.layout.road
            dz_l = wrap_period(pz - _f32(road.light_phase), road.light_spacing) - _f32(0.5 * road.light_spacing)
            pool = np.exp(-(dz_l * dz_l) * _f32(1.0 / 40.0) - np.maximum(py - _f32(2.0), 0.0) * _f32(0.4))
            light = light + look.streetlight_gain * pool
        gain *= light * (1.0 + np.minimum(shade, 0.0) * 0.5)
    else:
        gain *= look.ambient + look.sun_strength * np.maximum(shade, 0.0)
        gain *= 1.0 + np.minimum(shade, 0.0)  # shade < 0 marks shadow: no sun, less sky light
    if look.fog_beta > 0:
        trans = np.exp(-_f32(look.fog_beta) * z * rays.length)  # 0 for the sky (z = inf)
        gain *= trans
    gain *= vig
    wb = look.white_balance * (255.0 * look.exposure)  # colours are built in 0..255 units
    albedo = (mats["rgb"] * wb).astype(_f32)
    planes = [np.take(albedo[:, c], mat) * gain for c in range(3)]
    if look.fog_beta > 0:
        haze = (1.0 - trans) * vig
        for c in range(3):
            planes[c] += haze * _f32(look.fog_rgb[c] * wb[c])
    if look.emissive_gain > 0 and mats["glows"].any():
        rows, cols = np.nonzero(np.take(mats["glows"], mat))
        if rows.size:
            scale = vig[rows, cols] * _f32(look.emissive_gain)
            if look.fog_beta > 0:
                scale = scale * (0.3 + 0.7 * trans[rows, cols])
            glow = mats["emissive"][mat[rows, cols]]
            for c in range(3):
                planes[c][rows, cols] += glow[:, c] * scale * _f32(wb[c])

    sky = mat == Materials.SKY
    if look.fog_beta == 0 and sky.any():
        elevation = np.clip(rays.dy / rays.length, 0.0, 1.0)
        mix = np.minimum(elevation * _f32(2.5), 1.0)
        if look.clouds > 0:
            inv = 1.0 / np.maximum(rays.dy, _f32(0.02))
            clouds = sample_tile(tiles[0], rays.dx * inv, rays.dz * inv, 0.02, off, off)
            cover = np.clip((clouds - _f32(1.0 - 2.0 * look.clouds)) * _f32(0.6), 0.0, 0.85)
        for c in range(3):
            horizon, zenith = float(look.sky_horizon[c] * wb[c]), float(look.sky_zenith[c] * wb[c])
            sky_c = horizon + mix * _f32(zenith - horizon)
            if look.clouds > 0:
                sky_c += cover * (_f32(0.92 * wb[c]) - sky_c)
            sky_c *= vig
            np.copyto(planes[c], sky_c, where=sky)
    return planes
