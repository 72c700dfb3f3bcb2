"""Geometry of one camera's view: per-pixel depth, material and sun shading from one ray cast.

The ground plane (road, markings, kerbs, sidewalks) is intersected analytically for every pixel; potholes and
contact shadows edit the ground inside their rectangles; primitives are then z-buffered front to back, each only
over the rows and columns not already covered by something nearer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera import Camera, RayBlock, Rays, box_rois, row_bands
from .materials import Materials
from .noise import wrap_period
from .scene import CompiledScene

_f32 = np.float32
#: Rays that meet the ground further than this are treated as sky (and texture lookups clamp to it).
MAX_GROUND_M = 2000.0


@dataclass
class View:
    """Per-pixel geometry of one camera: depth Z (inf = sky), material id and sun shading (<0 = shadow)."""

    depth: np.ndarray
    mat: np.ndarray
    shade: np.ndarray
    ground_x: np.ndarray
    ground_z: np.ndarray


def _cast_ground(scene: CompiledScene, cam: Camera, rays: Rays) -> View:
    """Intersect every ray with the ground: road, markings, shoulder, kerbs and sidewalks, off-road."""
    h, w = rays.shape
    r0 = rays.first_ground_row
    view = View(depth=np.full((h, w), np.inf, dtype=_f32), mat=np.zeros((h, w), dtype=np.uint16),
                shade=np.zeros((h, w), dtype=_f32), ground_x=np.empty((h, w), dtype=_f32),
                 ground_z=np.empty((h, w), dtype=_f32))
    for r in row_bands(r0, h, w):
        view.depth[r], view.mat[r], view.shade[r], view.ground_x[r], view.ground_z[r] = _ground_band(
            scene, cam, rays.rows(r))
    return view


def _ground_band(scene: CompiledScene, cam: Camera, rays: RayBlock
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ground hit of a band of rows: (depth, material, shade, world x, world z)."""
    road = scene.layout.road
    ox, oy, oz = cam.origin
    dx, dy, dz = rays.dx, rays.dy, rays.dz
    down = -dy
    valid = down > 1e-5
    tg = _f32(oy) / np.maximum(down, _f32(1e-5))
    valid &= tg < MAX_GROUND_M
    np.minimum(tg, _f32(MAX_GROUND_M), out=tg)
    xg = ox + tg * dx
    zg = oz + tg * dz
    s = xg - road.centre(zg)
    a = np.abs(s)
    hw = road.half_width
    mats = Materials
    m = np.where(a < hw, np.uint16(mats.ROAD),
                 np.where(a < hw + road.shoulder_width, np.uint16(mats.SHOULDER), np.uint16(mats.OFFROAD)))
    if road.edge_lines:
        edge = np.abs(a - _f32(hw - road.edge_offset - 0.5 * road.mark_width)) < _f32(0.5 * road.mark_width)
        np.copyto(m, np.uint16(mats.MARK_WHITE), where=edge)
    dividers = road.dividers()
    if dividers:
        dashes = wrap_period(zg + _f32(road.dash_phase), road.dash_period) < road.dash_length
        half = 0.5 * road.mark_width
        for pos, style in dividers:
            if style == "double_yellow":
                off = np.abs(np.abs(s - _f32(pos)) - _f32(0.14))
                np.copyto(m, np.uint16(mats.MARK_YELLOW), where=off < half)
            else:
                line = np.abs(s - _f32(pos)) < half
                if style == "dashed":
                    line &= dashes
                paint = mats.MARK_YELLOW if style == "solid_yellow" else mats.MARK_WHITE
                np.copyto(m, np.uint16(paint), where=line)
    t = tg
    sh = np.full(tg.shape, max(float(scene.look.sun[1]), 0.0), dtype=_f32)
    if road.kerb:
        # Kerb top and sidewalk are a second plane at kerb height; a ray that is above the road at that height
        # but outside it at ground level has hit the kerb's face.
        rho = _f32((oy - road.kerb_height) / oy)
        tk = tg * rho
        zk = oz + (zg - _f32(oz)) * rho
        sk = ox + (xg - _f32(ox)) * rho - road.centre(zk)
        ak = np.abs(sk)
        top = (ak >= hw) & (ak < hw + road.kerb_width + road.sidewalk_width)
        face = (ak < hw) & (a >= hw)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.clip((hw - ak) / (a - ak), 0.0, 1.0)
        t = np.where(top, tk, np.where(face, tk + frac * (tg - tk), tg))
        kerb_mat = np.where(ak < hw + road.kerb_width, np.uint16(mats.KERB), np.uint16(mats.SIDEWALK))
        m = np.where(top, kerb_mat, np.where(face, np.uint16(mats.KERB), m))
        sun_x = float(scene.look.sun[0])
        face_shade = np.where(s > 0, _f32(max(-sun_x, 0.0)), _f32(max(sun_x, 0.0)))
        sh = np.where(face, face_shade, sh)
    t = np.where(valid, t, _f32(np.inf))
    m[~valid] = mats.SKY
    return t, m, sh, xg, zg


def _ground_rois(items, cam: Camera, rays: Rays):
    """(item, image ROI) for each ground item in view, the ROI clipped to the rows where the ground starts."""
    r0 = rays.first_ground_row
    rois = box_rois(cam, np.array([item.corners for item in items]).reshape(-1, 8, 3))
    for item, roi in zip(items, rois):
        if roi is None:
            continue
        rows = slice(max(roi[0].start, r0), roi[0].stop)
        if rows.start < rows.stop:
            yield item, (rows, roi[1])


def _cast_potholes(scene: CompiledScene, cam: Camera, rays: Rays, view: View) -> None:
    ox, oy, oz = cam.origin
    for ph, roi in _ground_rois(scene.potholes, cam, rays):
        mat = view.mat[roi]
        on_road = (mat >= Materials.ROAD) & (mat <= Materials.MARK_YELLOW)
        if not on_road.any():
            continue
        c, s = ph.cos, ph.sin
        ex, ez = view.ground_x[roi] - _f32(ph.x), view.ground_z[roi] - _f32(ph.z)
        qx, qz = (c * ex - s * ez) / ph.a, (s * ex + c * ez) / ph.b
        rho2 = qx * qx + qz * qz
        amp, freq, phase = ph.wobble
        if amp > 0:
            limit = 1.0 + amp * np.sin(freq * np.arctan2(qz, qx) + phase)
            inside = on_road & (rho2 < limit * limit)
        else:
            inside = on_road & (rho2 < 1.0)
        if not inside.any():
            continue
        block = rays.rect(*roi)
        dx, dy, dz = block.dx, block.dy, block.dz
        down = np.maximum(-dy, _f32(1e-5))
        t_floor = _f32(oy + ph.depth) / down
        fx, fz = ox + t_floor * dx - _f32(ph.x), oz + t_floor * dz - _f32(ph.z)
        fqx, fqz = (c * fx - s * fz) / ph.a, (s * fx + c * fz) / ph.b
        on_floor = fqx * fqx + fqz * fqz < 1.0
        # The ray otherwise meets the far wall where its horizontal path leaves the ellipse.
        px, pz = ox - ph.x, oz - ph.z
        qox, qoz = (c * px - s * pz) / ph.a, (s * px + c * pz) / ph.b
        ux, uz = (c * dx - s * dz) / ph.a, (s * dx + c * dz) / ph.b
        qa = ux * ux + uz * uz
        qb = 2.0 * (qox * ux + qoz * uz)
        qc = qox * qox + qoz * qoz - 1.0
        with np.errstate(invalid="ignore"):
            t_exit = (-qb + np.sqrt(np.maximum(qb * qb - 4.0 * qa * qc, 0.0))) / (2.0 * qa)
        t_ground = view.depth[roi]
        t = np.where(on_floor, t_floor, np.clip(t_exit, t_ground, t_floor))
        np.copyto(view.depth[roi], t.astype(_f32), where=inside)
        np.copyto(view.mat[roi], np.where(on_floor, np.uint16(ph.floor_mat), np.uint16(ph.wall_mat)), where=inside)
        # Still sunlit, only a little less than the road: colour alone should barely give a pothole away.
        sun_y = max(float(scene.look.sun[1]), 0.0)
        np.copyto(view.shade[roi], np.where(on_floor, _f32(0.97 * sun_y), _f32(0.9 * sun_y)), where=inside)


def _cast_shadows(scene: CompiledScene, cam: Camera, rays: Rays, view: View) -> None:
    """Darken the ground under vehicles (contact shadow: no sun, reduced sky light)."""
    for sd, roi in _ground_rois(scene.shadows, cam, rays):
        ex, ez = view.ground_x[roi] - _f32(sd.x), view.ground_z[roi] - _f32(sd.z)
        lx, lz = sd.cos * ex - sd.sin * ez, sd.sin * ex + sd.cos * ez
        under = (np.abs(lx) < sd.a) & (np.abs(lz) < sd.b) & (view.mat[roi] <= Materials.OFFROAD)
        under &= view.mat[roi] != Materials.SKY
        soft = np.minimum(sd.a - np.abs(lx), sd.b - np.abs(lz)) * 4.0
        np.copyto(view.shade[roi], (-0.5 * np.clip(soft, 0.2, 1.0)).astype(_f32), where=under)


def _cast_primitives(scene: CompiledScene, cam: Camera, rays: Rays, view: View) -> None:
    o = cam.origin
    if not scene.primitives:
        return
    # Front to back, so that a primitive hidden behind nearer ones is skipped after one max() over its rectangle.
    nearest = ((scene.corners - np.asarray(o)) @ cam.rot)[..., 2].min(axis=1)
    rois = box_rois(cam, scene.corners)
    for i in np.argsort(nearest):
        prim, roi = scene.primitives[i], rois[i]
        if roi is None:
            continue
        # Shrink the rectangle to the rows and columns not already covered by something nearer.
        open_ = view.depth[roi] > nearest[i]
        rows, cols = np.flatnonzero(open_.any(axis=1)), np.flatnonzero(open_.any(axis=0))
        if rows.size == 0:
            continue
        roi = (slice(roi[0].start + int(rows[0]), roi[0].start + int(rows[-1]) + 1),
               slice(roi[1].start + int(cols[0]), roi[1].start + int(cols[-1]) + 1))
        block = rays.rect(*roi)
        t, mat, shade = prim.hit(o, block.dx, block.dy, block.dz)
        zbuf = view.depth[roi]
        closer = t < zbuf
        np.copyto(zbuf, t, where=closer)
        np.copyto(view.mat[roi], mat, where=closer)
        np.copyto(view.shade[roi], shade, where=closer)


def render_geometry(scene: CompiledScene, cam: Camera) -> tuple[View, Rays]:
    rays = Rays(cam)
    view = _cast_ground(scene, cam, rays)
    _cast_potholes(scene, cam, rays, view)
    _cast_shadows(scene, cam, rays, view)
    _cast_primitives(scene, cam, rays, view)
    return view, rays
