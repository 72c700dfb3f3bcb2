"""Seeded generation of a world: road shape, colours, camera mounting, and obstacles placed without overlaps.

The order of random draws is part of the output (a seed must keep giving the same scene), so every draw for a
layout happens here, in one fixed sequence per road stretch.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .world import Building, Hill, Layout, Pedestrian, Pothole, Road, TrafficCone, Tree, Vehicle


def _rgb(rng: np.random.Generator, base: Sequence[float], jitter: float) -> tuple[float, float, float]:
    """A colour near `base`: brightness and per-channel jitter, so no two objects look identical."""
    c = np.clip(np.asarray(base) * (1.0 + rng.uniform(-jitter, jitter)) + rng.uniform(-jitter, jitter, 3) * 0.3,
                0.0, 1.0)
    return (float(c[0]), float(c[1]), float(c[2]))


_CAR_PAINTS = ((0.85, 0.85, 0.85), (0.08, 0.08, 0.09), (0.55, 0.56, 0.58), (0.35, 0.36, 0.38), (0.6, 0.08, 0.08),
               (0.1, 0.18, 0.45), (0.1, 0.28, 0.15), (0.85, 0.7, 0.15), (0.45, 0.3, 0.2), (0.95, 0.95, 0.9))
_CLOTHES = ((0.1, 0.1, 0.12), (0.2, 0.22, 0.35), (0.5, 0.1, 0.1), (0.8, 0.8, 0.78), (0.3, 0.4, 0.2),
            (0.9, 0.6, 0.1), (0.25, 0.25, 0.25), (0.15, 0.3, 0.55))
_SKINS = ((0.87, 0.68, 0.55), (0.6, 0.42, 0.3), (0.35, 0.22, 0.15), (0.95, 0.8, 0.7))
_FACADES = ((0.75, 0.7, 0.62), (0.55, 0.3, 0.22), (0.8, 0.8, 0.78), (0.45, 0.45, 0.47), (0.85, 0.75, 0.55),
            (0.6, 0.62, 0.55))


def _make_road(rng: np.random.Generator) -> Road:
    lanes = int(rng.choice([1, 2, 3, 4], p=[0.12, 0.53, 0.2, 0.15]))
    lane_w = rng.uniform(2.9, 3.7)
    width = lanes * lane_w + (rng.uniform(0.8, 1.6) if lanes == 1 else rng.uniform(0.0, 1.0))
    surface = "dirt" if lanes <= 2 and rng.random() < 0.12 else "asphalt"
    oncoming = 0 if lanes == 1 else lanes // 2
    urban = surface == "asphalt" and rng.random() < 0.55
    curved = rng.random() < 0.75
    amps, omegas = [], []
    for wavelength, max_curv in ((rng.uniform(110, 260), 1 / 60), (rng.uniform(300, 700), 1 / 250)):
        omega = 2 * math.pi / wavelength
        curvature = rng.uniform(0.0, max_curv) if curved else 0.0
        amps.append(float(curvature / omega ** 2) * float(rng.choice([-1, 1])))
        omegas.append(float(omega))
    centre = str(rng.choice(["dashed", "solid_yellow", "double_yellow", "none"], p=[0.5, 0.15, 0.25, 0.1]))
    return Road(
        width=float(width), lanes=lanes, oncoming_lanes=oncoming, slope=float(rng.uniform(-0.03, 0.03)),
        amp=(amps[0], amps[1]), omega=(omegas[0], omegas[1]),
        phase=(float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 2 * math.pi))),
        surface=surface, kerb=urban and rng.random() < 0.85, kerb_height=float(rng.uniform(0.1, 0.18)),
        kerb_width=float(rng.uniform(0.2, 0.35)), sidewalk_width=float(rng.uniform(1.5, 3.5)),
        shoulder_width=float(rng.uniform(0.0, 1.5)), centre_marking=centre,
        edge_lines=surface == "asphalt" and rng.random() < 0.7, dash_period=float(rng.uniform(9.0, 15.0)),
        dash_length=float(rng.uniform(3.0, 5.0)), dash_phase=float(rng.uniform(0, 20)),
        mark_width=float(rng.uniform(0.12, 0.2)), edge_offset=float(rng.uniform(0.1, 0.35)),
        street_lights=urban, light_spacing=float(rng.uniform(22, 35)), light_phase=float(rng.uniform(0, 30)),
    )


def make_layout(rng: np.random.Generator) -> Layout:
    road = _make_road(rng)
    same_dir = list(range(road.oncoming_lanes, road.lanes))
    ego_lane = int(rng.choice(same_dir))
    if road.surface == "dirt":
        road_rgb = _rgb(rng, (0.5, 0.42, 0.3), 0.12)
    else:
        grey = rng.uniform(0.22, 0.45)
        road_rgb = _rgb(rng, (grey, grey, grey * rng.uniform(0.95, 1.08)), 0.04)
    offroad = rng.choice(3, p=[0.6, 0.25, 0.15])
    offroad_rgb = _rgb(rng, [(0.22, 0.42, 0.14), (0.55, 0.5, 0.28), (0.42, 0.33, 0.22)][offroad], 0.15)
    layout = Layout(
        road=road, camera_height=float(rng.uniform(1.05, 1.4)), pitch=float(np.radians(rng.uniform(1.5, 7.0))),
        roll=float(np.radians(rng.normal(0.0, 0.8))), yaw_offset=float(np.radians(rng.normal(0.0, 1.5))),
        ego_lane=ego_lane, ego_offset=float(rng.normal(0.0, 0.25)), road_rgb=road_rgb, offroad_rgb=offroad_rgb,
        shoulder_rgb=_rgb(rng, (0.5, 0.47, 0.42), 0.1), kerb_rgb=_rgb(rng, (0.72, 0.72, 0.7), 0.1),
        sidewalk_rgb=_rgb(rng, (0.58, 0.57, 0.55), 0.12), offroad_tex=float(rng.uniform(0.15, 0.3)),
        road_tex=float(rng.uniform(0.05, 0.12)), texture_offset=float(rng.uniform(0, 512)),
    )
    return layout


class Placer:
    """Places objects in road coordinates (z, s) without overlaps."""

    def __init__(self, layout: Layout, keep_ego_lane_clear: bool):
        self.layout, self.clear = layout, keep_ego_lane_clear
        self.footprints: list[tuple[float, float, float, float]] = []  # z, s, half-length, half-width

    def free(self, z: float, s: float, hl: float, hw: float) -> bool:
        for fz, fs, fl, fw in self.footprints:
            if abs(z - fz) < hl + fl + 0.4 and abs(s - fs) < hw + fw + 0.3:
                return False
        return True

    def in_ego_lane(self, s: float, hw: float) -> bool:
        road = self.layout.road
        centre = road.lane_centre(self.layout.ego_lane)
        return abs(s - centre) < 0.5 * road.lane_width + hw

    def claim(self, z: float, s: float, hl: float, hw: float, static: bool = True) -> bool:
        """Reserve a footprint; static obstacles stay out of the ego lane when it must be kept clear."""
        blocked = static and self.clear and self.in_ego_lane(s, hw) and abs(s) < self.layout.road.half_width + hw
        if blocked or not self.free(z, s, hl, hw):
            return False
        self.footprints.append((z, s, hl, hw))
        return True


def vehicle_shape(rng: np.random.Generator) -> tuple[str, float, float, float]:
    """Kind, length, width and height of a vehicle (cars most often, now and then a truck)."""
    kind = str(rng.choice(["car", "suv", "van", "truck"], p=[0.55, 0.25, 0.13, 0.07]))
    length, width, height = {
        "car": (rng.uniform(3.8, 4.8), rng.uniform(1.7, 1.9), rng.uniform(1.4, 1.55)),
        "suv": (rng.uniform(4.4, 5.0), rng.uniform(1.85, 2.0), rng.uniform(1.65, 1.85)),
        "van": (rng.uniform(4.8, 6.0), rng.uniform(1.95, 2.1), rng.uniform(2.1, 2.6)),
        "truck": (rng.uniform(7.0, 10.0), rng.uniform(2.3, 2.5), rng.uniform(3.0, 3.6)),
    }[kind]
    return kind, float(length), float(width), float(height)


def make_vehicle(rng: np.random.Generator, z: float, s: float, shape: tuple[str, float, float, float],
                 direction: int, speed: float, engine: bool) -> Vehicle:
    """A vehicle at its place: paint and (when parked) a skew are drawn here, after the place was drawn."""
    kind, length, width, height = shape
    paint = _CAR_PAINTS[int(rng.integers(len(_CAR_PAINTS)))]
    return Vehicle(
        z=z, s=float(s), length=length, width=width, height=height, kind=kind, colour=_rgb(rng, paint, 0.08),
        direction=direction, speed=float(speed), engine_on=bool(engine),
        yaw_jitter=float(rng.normal(0.0, 0.08 if speed == 0 else 0.02)))


def make_pedestrian(rng: np.random.Generator, z: float, s: float, height: float, walking: bool) -> Pedestrian:
    """A pedestrian at its place: clothes, gait and (walking along the road, else standing) heading."""
    clothes = [_CLOTHES[int(i)] for i in rng.integers(len(_CLOTHES), size=2)]
    speed = float(rng.choice([-1, 1]) * rng.uniform(0.8, 1.6)) if walking else 0.0
    heading = (0.0 if speed > 0 else math.pi) if speed else float(rng.uniform(-math.pi, math.pi))
    return Pedestrian(
        z=z, s=s, height=height, radius=float(rng.uniform(0.16, 0.21)) * height / 1.75,
        shirt=_rgb(rng, clothes[0], 0.1), trousers=_rgb(rng, clothes[1], 0.1),
        skin=_SKINS[int(rng.integers(len(_SKINS)))], speed=speed, heading=heading,
        stride_phase=float(rng.uniform(0, 2 * math.pi)), short_sleeves=bool(rng.random() < 0.4))


def pothole_shape(rng: np.random.Generator, crack: bool) -> tuple[float, float, float, float]:
    """Semi-axes across / along the road, depth and angle (m, rad): a round pothole or an elongated crack."""
    if crack:
        a, b, depth = rng.uniform(0.15, 0.25), rng.uniform(1.2, 3.0), rng.uniform(0.08, 0.15)
        angle = float(rng.choice([0.0, math.pi / 2]) + rng.normal(0.0, 0.4))
    else:
        a, b, depth = rng.uniform(0.5, 1.3), rng.uniform(0.5, 1.7), rng.uniform(0.12, 0.3)
        angle = float(rng.uniform(-0.5, 0.5))
    return float(a), float(b), float(depth), angle


def make_pothole(rng: np.random.Generator, z: float, s: float, shape: tuple[float, float, float, float]) -> Pothole:
    """A pothole of `shape` (from `pothole_shape`) at its place: wetness, darkening and an irregular rim."""
    a, b, depth, angle = shape
    return Pothole(
        z=z, s=s, a=a, b=b, angle=angle, depth=depth, wet=bool(rng.random() < 0.4),
        darkening=float(rng.uniform(0.0, 0.03)),
        wobble=(float(rng.uniform(0.0, 0.15)), float(rng.integers(2, 6)), float(rng.uniform(0, 6.3))))


def populate(layout: Layout, rng: np.random.Generator, z_lo: float, z_hi: float, rates: dict[str, float],
             placer: Placer, ego_speed: float = 0.0) -> None:
    """Add obstacles for the road stretch [z_lo, z_hi) at the given expected counts per metre."""
    road = layout.road
    hw = road.half_width
    span = z_hi - z_lo

    def count(key: str) -> int:
        return int(rng.poisson(rates.get(key, 0.0) * span))

    def draw_z(key: str) -> float:
        # A bias > 1 favours the near end: small things (people, cones, potholes) only matter when close.
        return float(z_lo + span * rng.random() ** rates.get(key + "_bias", 1.0))

    for _ in range(count("vehicle")):
        shape = vehicle_shape(rng)
        kind, length, width, height = shape
        z = draw_z("vehicle") + 0.5 * length
        mode = rng.random()
        if mode < 0.28 and road.lanes >= 2:
            side = float(rng.choice([-1, 1]))
            s = side * (hw - 0.5 * width - rng.uniform(0.1, 0.5))
            direction, speed, engine = (1 if side > 0 else int(rng.choice([-1, 1]))), 0.0, rng.random() < 0.2
        elif mode < 0.36:
            side = float(rng.choice([-1, 1]))
            s = side * (hw + road.shoulder_width * (not road.kerb) + 0.5 * width + rng.uniform(0.3, 2.0))
            direction, speed, engine = int(rng.choice([-1, 1])), 0.0, False
        else:
            lane = int(rng.integers(0, road.lanes))
            s = road.lane_centre(lane) + float(rng.normal(0.0, 0.2))
            direction = -1 if lane < road.oncoming_lanes else 1
            if direction > 0:
                same = lane == layout.ego_lane
                speed = ego_speed + (rng.uniform(0.5, 3.0) if same else rng.uniform(-4.0, 3.0))
            else:
                speed = rng.uniform(8.0, 16.0)
            speed, engine = max(float(speed), 0.0), True
        if placer.claim(z, s, 0.5 * length, 0.5 * width, static=speed == 0):
            layout.vehicles.append(make_vehicle(rng, z, s, shape, direction, speed, engine))

    for _ in range(count("pedestrian")):
        z = draw_z("pedestrian")
        mode = rng.random()
        if mode < 0.55:
            beyond = road.kerb_width + 0.3 * road.sidewalk_width if road.kerb else road.shoulder_width * 0.5
            s = float(rng.choice([-1, 1])) * (hw + beyond + rng.uniform(0.3, 1.5))
        elif mode < 0.75:
            s = float(rng.choice([-1, 1])) * (hw - rng.uniform(0.3, 1.0))
        else:
            s = float(rng.uniform(-hw + 0.5, hw - 0.5))
        if z < 5.0 and abs(s) < hw:
            continue
        height = float(rng.uniform(1.5, 1.92))
        if placer.claim(z, s, 0.35, 0.35):
            layout.pedestrians.append(make_pedestrian(rng, z, s, height, walking=abs(s) > hw))

    for _ in range(count("cone_group")):
        z0 = draw_z("cone_group")
        n = int(rng.integers(4, 10))
        spacing = float(rng.uniform(2.0, 4.0))
        if rng.random() < 0.5 and road.lanes >= 2:
            lane = int(rng.integers(0, road.lanes))
            s0 = road.lane_centre(lane) + rng.uniform(-0.4, 0.4)
            taper = rng.uniform(-0.35, 0.35)
        else:
            s0 = float(rng.choice([-1, 1])) * (hw - rng.uniform(0.2, 0.6))
            taper = 0.0
        height = float(rng.uniform(0.7, 1.0))
        for k in range(n):
            z, s = z0 + k * spacing, float(s0 + k * taper)
            if abs(s) < hw + 0.5 and placer.claim(z, s, 0.25, 0.25):
                layout.cones.append(TrafficCone(z=z, s=s, height=height, radius=height * 0.28))

    for _ in range(count("pothole")):
        shape = pothole_shape(rng, crack=rng.random() < 0.22)
        reach = max(shape[0], shape[1]) + 0.15
        if hw - reach <= 0:
            continue
        z = draw_z("pothole")
        s = float(rng.uniform(-hw + reach, hw - reach))
        if placer.free(z, s, reach, reach):
            placer.footprints.append((z, s, reach, reach))
            layout.potholes.append(make_pothole(rng, z, s, shape))


def populate_background(layout: Layout, rng: np.random.Generator, z_lo: float, z_hi: float) -> None:
    """Buildings (urban roads) or trees (rural roads) along both sides of [z_lo, z_hi)."""
    road = layout.road
    beyond = road.kerb_width + road.sidewalk_width if road.kerb else road.shoulder_width
    for side in (-1, 1):
        z = z_lo + float(rng.uniform(0.0, 10.0))
        while z < z_hi:
            if road.street_lights and rng.random() < 0.85:
                length = float(rng.uniform(8.0, 25.0))
                layout.buildings.append(Building(
                    z=z + 0.5 * length, side=side, setback=beyond + float(rng.uniform(0.5, 6.0)), length=length,
                    depth=float(rng.uniform(8.0, 15.0)), height=float(rng.uniform(4.0, 16.0)),
                    colour=_rgb(rng, _FACADES[int(rng.integers(len(_FACADES)))], 0.1),
                    window_colour=_rgb(rng, (0.15, 0.2, 0.27), 0.2), window_spacing=float(rng.uniform(2.2, 3.5))))
                z += length + float(rng.uniform(1.0, 10.0))
            else:
                if rng.random() < 0.75:
                    crown = float(rng.uniform(1.2, 3.0))
                    layout.trees.append(Tree(
                        z=z, s=side * (road.half_width + beyond + crown + float(rng.uniform(0.5, 8.0))),
                        trunk_height=float(rng.uniform(1.5, 3.0)), trunk_radius=float(rng.uniform(0.12, 0.3)),
                        crown_radius=crown, crown_colour=_rgb(rng, (0.16, 0.32, 0.1), 0.25)))
                z += float(rng.uniform(5.0, 18.0))


def populate_hills(layout: Layout, rng: np.random.Generator, z_ref: float) -> None:
    for _ in range(int(rng.integers(0, 4))):
        radius = float(rng.uniform(80, 250))
        layout.hills.append(Hill(z=z_ref + radius + float(rng.uniform(150, 450)), s=float(rng.uniform(-500, 500)),
                                 radius=radius, colour=_rgb(rng, (0.25, 0.35, 0.2), 0.25)))


#: Expected obstacles per metre of road near the camera in a single scene, and further away.
NEAR_RATES = {"vehicle": 0.08, "vehicle_bias": 1.3, "pedestrian": 0.07, "pedestrian_bias": 1.5,
               "cone_group": 0.035, "cone_group_bias": 1.5, "pothole": 0.12, "pothole_bias": 1.6}
FAR_RATES = {"vehicle": 0.03, "pedestrian": 0.012, "cone_group": 0.004}
#: Expected obstacles per metre for a drive (sparser, but the ego car keeps meeting them).
DRIVE_RATES = {"vehicle": 0.05, "pedestrian": 0.035, "cone_group": 0.012, "pothole": 0.05}
