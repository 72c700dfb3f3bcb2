"""What a synthetic world is made of: the road, the objects on and beside it, and the layout holding them.

Plain data in road coordinates (z forward along the road, s lateral offset from the centreline); nothing here
draws random numbers or renders, so the generator (`populate`) and the renderer (`scene`) share one vocabulary.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

_f32 = np.float32


@dataclass
class Road:
    """A road of constant width whose centreline wanders as two sinusoids (bounded curvature, any length)."""

    width: float
    lanes: int
    oncoming_lanes: int
    slope: float
    amp: tuple[float, float]
    omega: tuple[float, float]
    phase: tuple[float, float]
    surface: str  # "asphalt" | "dirt"
    kerb: bool
    kerb_height: float
    kerb_width: float
    sidewalk_width: float
    shoulder_width: float
    centre_marking: str  # "dashed" | "solid_yellow" | "double_yellow" | "none"
    edge_lines: bool
    dash_period: float
    dash_length: float
    dash_phase: float
    mark_width: float
    edge_offset: float
    street_lights: bool
    light_spacing: float
    light_phase: float

    @property
    def half_width(self) -> float:
        return 0.5 * self.width

    @property
    def lane_width(self) -> float:
        return self.width / self.lanes

    def lane_centre(self, lane: int) -> float:
        """Lateral offset of a lane centre; lane 0 is leftmost (oncoming traffic, right-hand driving)."""
        return -self.half_width + (lane + 0.5) * self.lane_width

    def centre(self, z: float | np.ndarray) -> float | np.ndarray:
        """World x of the centreline at forward position z (scalar or float32 array)."""
        (a0, a1), (w0, w1), (p0, p1) = self.amp, self.omega, self.phase
        if isinstance(z, np.ndarray):  # in-place float32 arithmetic: this runs twice per ground pixel
            x = z * _f32(w0)
            x += _f32(p0)
            np.sin(x, out=x)
            x *= _f32(a0)
            y = z * _f32(w1)
            y += _f32(p1)
            np.sin(y, out=y)
            y *= _f32(a1)
            x += y
            np.multiply(z, _f32(self.slope), out=y)
            x += y
            return x
        return self.slope * z + a0 * math.sin(w0 * z + p0) + a1 * math.sin(w1 * z + p1)

    def yaw(self, z: float) -> float:
        """Heading of the road at z (radians, positive turns towards +x)."""
        (a0, a1), (w0, w1), (p0, p1) = self.amp, self.omega, self.phase
        return math.atan(self.slope + a0 * w0 * math.cos(w0 * z + p0) + a1 * w1 * math.cos(w1 * z + p1))

    def to_world(self, z: float, s: float) -> tuple[float, float]:
        """World (x, z) of a point at forward position z and lateral offset s from the centreline."""
        return self.centre(z) + s, z

    def dividers(self) -> list[tuple[float, str]]:
        """Lane lines inside the road: (lateral offset, style)."""
        if self.surface != "asphalt" or self.lanes < 2:
            return []
        out = []
        for k in range(1, self.lanes):
            pos = -self.half_width + k * self.lane_width
            style = self.centre_marking if k == self.oncoming_lanes else "dashed"
            if style != "none":
                out.append((pos, style))
        return out


@dataclass
class Vehicle:
    z: float
    s: float
    length: float
    width: float
    height: float
    kind: str  # car | suv | van | truck
    colour: tuple[float, float, float]
    direction: int  # +1 drives with the ego car, -1 oncoming
    speed: float  # m/s along its direction (0 = parked)
    engine_on: bool
    yaw_jitter: float


@dataclass
class Pedestrian:
    z: float
    s: float
    height: float
    radius: float
    shirt: tuple[float, float, float]
    trousers: tuple[float, float, float]
    skin: tuple[float, float, float]
    speed: float  # m/s along the road (signed)
    heading: float  # facing direction relative to the road (radians)
    stride_phase: float  # gait phase; advances as the pedestrian walks
    short_sleeves: bool


@dataclass
class TrafficCone:
    z: float
    s: float
    height: float
    radius: float


@dataclass
class Pothole:
    """An elliptical dip in the road surface (also models elongated cracks)."""

    z: float
    s: float
    a: float  # semi-axis across the road (m)
    b: float  # semi-axis along the road (m)
    angle: float  # rotation relative to the road heading
    depth: float
    wet: bool
    darkening: float
    wobble: tuple[float, float, float]  # irregular rim: amplitude, frequency, phase


@dataclass
class Building:
    z: float
    side: int
    setback: float
    length: float
    depth: float
    height: float
    colour: tuple[float, float, float]
    window_colour: tuple[float, float, float]
    window_spacing: float


@dataclass
class Tree:
    z: float
    s: float
    trunk_height: float
    trunk_radius: float
    crown_radius: float
    crown_colour: tuple[float, float, float]


@dataclass
class Hill:
    z: float
    s: float
    radius: float
    colour: tuple[float, float, float]


@dataclass
class Layout:
    """Everything about a scene that the seed fixes: road, colours, camera mounting, objects."""

    road: Road
    camera_height: float
    pitch: float
    roll: float
    yaw_offset: float
    ego_lane: int
    ego_offset: float
    road_rgb: tuple[float, float, float]
    offroad_rgb: tuple[float, float, float]
    shoulder_rgb: tuple[float, float, float]
    kerb_rgb: tuple[float, float, float]
    sidewalk_rgb: tuple[float, float, float]
    offroad_tex: float
    road_tex: float
    texture_offset: float
    vehicles: list[Vehicle] = field(default_factory=list)
    pedestrians: list[Pedestrian] = field(default_factory=list)
    cones: list[TrafficCone] = field(default_factory=list)
    potholes: list[Pothole] = field(default_factory=list)
    buildings: list[Building] = field(default_factory=list)
    trees: list[Tree] = field(default_factory=list)
    hills: list[Hill] = field(default_factory=list)

    @property
    def ego_s(self) -> float:
        return self.road.lane_centre(self.ego_lane) + self.ego_offset
