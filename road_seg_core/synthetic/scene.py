"""One frame's world ready to ray cast: a layout seen under a condition, turned into materials and primitives.

Compiled per frame because objects move and the look (temperatures, lamps) depends on the condition; whatever
lies entirely behind the ego car is dropped here so the renderer never visits it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .conditions import Look
from .materials import Materials
from .primitives import Box, ConeShape, Cylinder, Primitive, Sphere, box_corners
from .world import Building, Hill, Layout, Pedestrian, Pothole, Road, TrafficCone, Tree, Vehicle


@dataclass
class GroundFeature:
    """A pothole (dip) or a contact shadow on the ground, given in world coordinates."""

    x: float
    z: float
    cos: float
    sin: float
    a: float
    b: float
    depth: float = 0.0
    floor_mat: int = 0
    wall_mat: int = 0
    wobble: tuple[float, float, float] = (0.0, 1.0, 0.0)
    corners: np.ndarray | None = None


@dataclass
class CompiledScene:
    """One frame's world, ready to ray cast: material table, primitives, ground features."""

    layout: Layout
    look: Look
    materials: dict[str, np.ndarray]
    primitives: list[Primitive]
    corners: np.ndarray  # (N, 8, 3) bounding corners of the primitives
    potholes: list[GroundFeature]
    shadows: list[GroundFeature]


@dataclass
class _SceneBuilder:
    """Collects materials and primitives while a layout is turned into renderable geometry."""

    road: Road
    look: Look
    sun: tuple[float, float, float]
    materials: Materials = field(default_factory=Materials)
    primitives: list[Primitive] = field(default_factory=list)
    shadows: list[GroundFeature] = field(default_factory=list)
    potholes: list[GroundFeature] = field(default_factory=list)

    @property
    def t_amb(self) -> float:
        return self.look.t_ambient

    @property
    def night(self) -> bool:
        return self.look.condition == "night"

    def add_ground_materials(self, layout: Layout) -> None:
        """The fixed first entries, in `Materials` id order."""
        m, look, t_amb = self.materials, self.look, self.t_amb
        road_temp = t_amb + look.road_heat
        m.add((0, 0, 0), look.t_sky, "sky")  # coloured by ray direction at shading time
        m.add(layout.road_rgb, road_temp, "road", coarse=layout.road_tex, fine=0.08)
        m.add((0.85, 0.85, 0.82), road_temp - 1.5, "lane_marking", coarse=0.08, fine=0.05)
        m.add((0.85, 0.68, 0.15), road_temp - 1.5, "lane_marking", coarse=0.08, fine=0.05)
        m.add(layout.shoulder_rgb, road_temp - 1.0, "shoulder", coarse=0.15, fine=0.15)
        m.add(layout.offroad_rgb, t_amb + 0.3 * look.road_heat - (2.0 if self.night else 0.0), "offroad",
              coarse=layout.offroad_tex, fine=0.2)
        m.add(layout.kerb_rgb, t_amb + 0.6 * look.road_heat, "kerb", coarse=0.05, fine=0.05)
        m.add(layout.sidewalk_rgb, t_amb + 0.6 * look.road_heat, "sidewalk", coarse=0.08, fine=0.1)

    def add_vehicle(self, v: Vehicle) -> None:
        """Wheels/underbody, body and cabin boxes, lamps, and a contact shadow."""
        m, sun, t_amb = self.materials, self.sun, self.t_amb
        x, z = self.road.to_world(v.z, v.s)
        yaw = self.road.yaw(v.z) + v.yaw_jitter + (math.pi if v.direction < 0 else 0.0)
        # Running engines warm the whole body; parked cars sit near ambient (plus sun on the paint).
        body_t = t_amb + (12.0 if v.engine_on else 2.0) + 0.8 * self.look.sun_heat
        paint = m.add(v.colour, body_t, "vehicle", coarse=0.02, fine=0.02)
        glass = m.add(np.asarray(v.colour) * 0.15 + 0.08, t_amb - 1.0, "vehicle", coarse=0.05, fine=0.02)
        under = m.add((0.05, 0.05, 0.05), t_amb + (45.0 if v.engine_on else 2.0), "vehicle", fine=0.05)
        lit = v.engine_on and self.look.condition in ("night", "fog")
        tail = m.add((0.7, 0.05, 0.05), body_t + 3.0, "vehicle", emissive=(1.4, 0.1, 0.08) if lit else (0, 0, 0))
        head = m.add((0.9, 0.9, 0.85), body_t + 4.0, "vehicle", emissive=(2.5, 2.4, 2.0) if lit else (0, 0, 0))
        hl, hx = 0.5 * v.length, 0.5 * v.width
        c, s = math.cos(yaw), math.sin(yaw)
        boxy = v.kind in ("van", "truck")
        body_top = v.height if boxy else 0.58 * v.height
        lamps = (tail, head, body_top - (0.9 if boxy else 0.32), body_top - (0.7 if boxy else 0.12), 0.6)
        self.primitives.append(Box(x, z, yaw, hx - 0.06, hl - 0.25, 0.0, 0.36, [under] * 6, sun))
        self.primitives.append(Box(x, z, yaw, hx, hl, 0.36, body_top, [paint] * 6, sun, lights=lamps))
        if boxy:  # windscreen: a thin glass box on the front face
            fx, fz = x + s * (hl - 0.02), z + c * (hl - 0.02)
            self.primitives.append(Box(fx, fz, yaw, hx - 0.12, 0.04, body_top - 0.95, body_top - 0.25,
                                       [glass] * 6, sun))
        else:  # cabin, set back a little
            cx, cz = x - s * 0.08 * v.length, z - c * 0.08 * v.length
            self.primitives.append(Box(cx, cz, yaw, hx - 0.1, 0.3 * v.length, body_top, v.height,
                                       [glass, glass, paint, paint, glass, glass], sun))
        self.shadows.append(GroundFeature(x=x, z=z, cos=c, sin=s, a=hx + 0.25, b=hl + 0.2,
                                          corners=box_corners(x, z, yaw, hx + 0.3, hl + 0.3, 0.0, 0.0)))

    def add_pedestrian(self, p: Pedestrian) -> None:
        """Legs, torso and arms (cylinders) and a head (sphere); legs and arms swing while walking."""
        m, sun, t_amb = self.materials, self.sun, self.t_amb
        x, z = self.road.to_world(p.z, p.s)
        cloth_t = t_amb + 0.55 * (33.0 - t_amb)
        shirt = m.add(p.shirt, cloth_t, "pedestrian", fine=0.05)
        trousers = m.add(p.trousers, cloth_t - 1.5, "pedestrian", fine=0.05)
        skin = m.add(p.skin, 33.5 - 0.05 * (33.5 - t_amb), "pedestrian")
        arm_mat = skin if p.short_sleeves else shirt
        scale = p.height / 1.75
        head_r = 0.115 * scale
        hip, shoulder = 0.48 * p.height, p.height - 2 * head_r - 0.03
        yaw = self.road.yaw(p.z) + p.heading
        fwd, side = (math.sin(yaw), math.cos(yaw)), (math.cos(yaw), -math.sin(yaw))
        swing = 0.22 * scale * math.sin(p.stride_phase) if p.speed else 0.0
        for lateral, step in ((-1.0, swing), (1.0, -swing)):
            lx = x + side[0] * lateral * 0.09 * scale + fwd[0] * step
            lz = z + side[1] * lateral * 0.09 * scale + fwd[1] * step
            self.primitives.append(Cylinder(lx, lz, 0.08 * scale, 0.0, hip + 0.05, ((hip + 0.05, trousers),), sun))
            ax = x + side[0] * lateral * (p.radius + 0.045 * scale) - fwd[0] * 0.6 * step
            az = z + side[1] * lateral * (p.radius + 0.045 * scale) - fwd[1] * 0.6 * step
            self.primitives.append(Cylinder(ax, az, 0.045 * scale, hip + 0.02, shoulder - 0.02,
                                            ((shoulder, arm_mat),), sun))
        self.primitives.append(Cylinder(x, z, p.radius, hip, shoulder, ((shoulder, shirt),), sun))
        self.primitives.append(Sphere(x, p.height - head_r, z, head_r, skin, sun))

    def add_cones(self, cones: Sequence[TrafficCone]) -> None:
        if not cones:
            return
        cone_t = self.t_amb + 0.4 * self.look.sun_heat - (1.0 if self.night else 0.0)
        orange = self.materials.add((0.95, 0.35, 0.05), cone_t, "cone", fine=0.03)
        white = self.materials.add((0.92, 0.92, 0.9), cone_t - 0.5, "cone", fine=0.03,
                                   emissive=(0.35, 0.35, 0.35) if self.night else (0, 0, 0))  # retro-reflective
        for cone in cones:
            x, z = self.road.to_world(cone.z, cone.s)
            self.primitives.append(ConeShape(x, z, cone.radius, cone.height, orange, white, self.sun))

    def add_building(self, b: Building) -> None:
        m = self.materials
        yaw = self.road.yaw(b.z)
        x, z = self.road.to_world(b.z, b.side * (self.road.half_width + b.setback + 0.5 * b.depth))
        wall = m.add(b.colour, self.t_amb + 2.0 + 0.5 * self.look.sun_heat, "building", coarse=0.06, fine=0.06)
        lit_window = tuple(np.array([1.0, 0.85, 0.55]) * 0.4) if self.night else (0, 0, 0)
        window = m.add(b.window_colour, self.t_amb - 1.0, "building", fine=0.02, emissive=lit_window)
        self.primitives.append(Box(x, z, yaw, 0.5 * b.depth, 0.5 * b.length, 0.0, b.height, [wall] * 6, self.sun,
                                   windows=(window, b.window_spacing)))

    def add_trees(self, trees: Sequence[Tree]) -> None:
        if not trees:
            return
        trunk = self.materials.add((0.3, 0.22, 0.15), self.t_amb + 0.5, "vegetation", fine=0.1)
        for tr in trees:
            x, z = self.road.to_world(tr.z, tr.s)
            crown = self.materials.add(tr.crown_colour, self.t_amb - 1.0, "vegetation", coarse=0.25, fine=0.3)
            self.primitives.append(Cylinder(x, z, tr.trunk_radius, 0.0, tr.trunk_height + tr.crown_radius * 0.5,
                                            ((tr.trunk_height + tr.crown_radius, trunk),), self.sun))
            self.primitives.append(Sphere(x, tr.trunk_height + 0.8 * tr.crown_radius, z, tr.crown_radius, crown,
                                          self.sun))

    def add_hill(self, hill: Hill) -> None:
        x, z = self.road.to_world(hill.z, hill.s)
        mat = self.materials.add(hill.colour, self.t_amb - 2.0, "terrain", coarse=0.2, fine=0.1)
        self.primitives.append(Sphere(x, -0.75 * hill.radius, z, hill.radius, mat, self.sun))

    def add_pothole(self, ph: Pothole, layout: Layout) -> None:
        x, z = self.road.to_world(ph.z, ph.s)
        yaw = self.road.yaw(ph.z) + ph.angle
        floor_rgb = np.asarray(layout.road_rgb) * (1.0 - ph.darkening - (0.02 if ph.wet else 0.0))
        # Water in a pothole stays a little cooler than the asphalt around it (under 1 K); a dry one is the
        # same asphalt at the same temperature. Depth, not thermal, is what should give a pothole away.
        road_temp = self.t_amb + self.look.road_heat
        floor_t = road_temp - (float(0.3 + 0.7 * ph.depth / 0.3) if ph.wet else 0.1)
        instance = len(self.potholes) + 1  # one id for floor and wall: the pothole as one object
        floor = self.materials.add(floor_rgb, floor_t, "pothole", coarse=layout.road_tex, fine=0.08,
                                   instance=instance)
        wall = self.materials.add(floor_rgb * 0.97, 0.5 * (floor_t + road_temp), "pothole", coarse=layout.road_tex,
                                  fine=0.08, instance=instance)
        reach = max(ph.a, ph.b) * (1.0 + ph.wobble[0])
        self.potholes.append(GroundFeature(
            x=x, z=z, cos=math.cos(yaw), sin=math.sin(yaw), a=ph.a, b=ph.b, depth=ph.depth, floor_mat=floor,
            wall_mat=wall, wobble=ph.wobble, corners=box_corners(x, z, yaw, reach, reach, -ph.depth, 0.0)))


def compile_scene(layout: Layout, look: Look, ego_z: float) -> CompiledScene:
    """Turn a layout seen under a condition into materials and world-space primitives."""
    sun = tuple(float(c) for c in look.sun)  # Python floats keep the per-pixel maths in float32
    builder = _SceneBuilder(road=layout.road, look=look, sun=sun)
    builder.add_ground_materials(layout)
    for v in layout.vehicles:
        builder.add_vehicle(v)
    for p in layout.pedestrians:
        builder.add_pedestrian(p)
    builder.add_cones(layout.cones)
    for b in layout.buildings:
        builder.add_building(b)
    builder.add_trees(layout.trees)
    for hill in layout.hills:
        builder.add_hill(hill)
    for ph in layout.potholes:
        builder.add_pothole(ph, layout)
    # Whatever lies entirely behind the ego car cannot be seen.
    prims = [p for p in builder.primitives if p.corners[:, 2].max() > ego_z - 2.0]
    return CompiledScene(layout=layout, look=look, materials=builder.materials.arrays(), primitives=prims,
                         corners=np.array([p.corners for p in prims]).reshape(-1, 8, 3),
                     potholes=builder.potholes, shadows=builder.shadows)
