"""Deterministic synthetic driving scenes: stereo colour, depth, thermal and exact labels from one ray cast.

Why it exists: the simulated sensors, the demo, training and the tests need multi-modal frames whose labels are
exact and whose modalities disagree the way real sensors do. Potholes are nearly invisible in colour but dip in
depth; pedestrians and cars at night are dark in colour and lost by stereo but bright in thermal; lane paint only
exists in colour. Each pixel's ray (camera z-component 1, so the ray parameter *is* the ZED depth Z) is intersected
with a flat ground plane carrying the road, kerbs and potholes, then with a few analytic primitives (boxes,
cylinders, spheres, cones) evaluated only inside each primitive's projected bounding rectangle. Everything is
numpy-vectorised per primitive; the right camera is the same world seen from `BASELINE_M` to the right, so stereo
matching on the pair recovers fx * B / Z.

World frame: x right, y up, z forward along the road; the road centreline is x = road.centre(z). Scenes depend only
on the seed (not the image size), so one seed rendered at 1280x720 and 320x180 shows the same scene.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterator, Sequence

import cv2
import numpy as np

from .frames import SensorFrame, StereoIntrinsics
from .labels import BACKGROUND, DRIVABLE, NEGATIVE_OBSTACLE, POSITIVE_OBSTACLE

__all__ = [
    "BASELINE_M",
    "CONDITIONS",
    "FRAME_ID",
    "PART_LABELS",
    "PART_NAMES",
    "SceneStream",
    "SyntheticScene",
    "intrinsics_for",
    "render_scene",
    "thermal_counts",
]

CONDITIONS = ("day", "night", "fog")
#: How often each condition is drawn when a caller leaves it to the seed.
CONDITION_WEIGHTS = (0.6, 0.2, 0.2)
FRAME_ID = "zed_left_camera_optical_frame"
BASELINE_M = 0.12
#: ZED-like focal length relative to image width (about 85 degrees horizontal field of view).
FOCAL_PER_WIDTH = 0.55
MIN_DEPTH_M = 0.3
_MAX_GROUND_M = 2000.0

_f32 = np.float32

#: Surface kinds reported per pixel in `frame.extras["parts"]` (uint8 index into this tuple), finer than the
#: label space so evaluations can ask e.g. "how many night pedestrians were found".
PART_NAMES = ("sky", "road", "lane_marking", "shoulder", "offroad", "kerb", "sidewalk", "vehicle", "pedestrian",
              "cone", "pothole", "building", "vegetation", "terrain")
#: Node label of each part.
PART_LABELS = {"sky": BACKGROUND, "road": DRIVABLE, "lane_marking": DRIVABLE, "shoulder": BACKGROUND,
               "offroad": BACKGROUND, "kerb": POSITIVE_OBSTACLE, "sidewalk": BACKGROUND,
               "vehicle": POSITIVE_OBSTACLE, "pedestrian": POSITIVE_OBSTACLE, "cone": POSITIVE_OBSTACLE,
               "pothole": NEGATIVE_OBSTACLE, "building": BACKGROUND, "vegetation": BACKGROUND,
               "terrain": BACKGROUND}


def thermal_counts(temp_c):
    """Boson-like raw counts for a scene temperature (about 30 counts per kelvin, 7500 at 10 degC)."""
    return 7500.0 + 30.0 * (np.asarray(temp_c) - 10.0)


def intrinsics_for(width: int, height: int) -> StereoIntrinsics:
    """ZED-like rectified intrinsics for an image size; the focal length scales with width."""
    f = FOCAL_PER_WIDTH * width
    return StereoIntrinsics(fx=f, fy=f, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0,
                            baseline_m=BASELINE_M, width=int(width), height=int(height))


@dataclass
class SyntheticScene:
    """One rendered frame: sensor data as the car would see it, plus exact per-pixel labels.

    `frame` holds rgb / right_rgb (uint8 RGB), depth (float32 metres, NaN = no measurement), thermal (uint16
    Boson-like counts, left image size and viewpoint: an identity thermal homography registers it) and ZED-like
    intrinsics. `frame.extras` adds ground truth for evaluation: "depth_gt" (noise-free float32 Z, inf on the
    sky), "parts" (uint8 index into `PART_NAMES` per pixel), "seed", "condition" and the camera mounting.
    `labels` is HxW uint8 in the node label space (`road_seg_core.labels`).
    """

    frame: SensorFrame
    labels: np.ndarray
    condition: str


# ----------------------------------------------------------------------------------------------------------------
# Random fields shared by every scene (fixed seeds: generated once per process, never per frame).

#: Small enough (1 MB) to stay in the CPU cache: reading noise from a bigger bank costs more than using it.
_NOISE_LEN = 1 << 18


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """Standard-normal samples; per-frame noise is a random window of it (much cheaper than sampling anew)."""
    bank = np.random.default_rng(0x5EED).standard_normal(_NOISE_LEN, dtype=_f32)
    bank.flags.writeable = False
    return bank


def _gauss(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard-normal noise of `shape`: random windows of the bank (a read-only view when one window does)."""
    n = int(np.prod(shape))
    bank, window = _noise_bank(), _NOISE_LEN // 2
    starts = rng.integers(0, _NOISE_LEN - window, size=-(-n // window))
    if n <= window:
        return bank[int(starts[0]):int(starts[0]) + n].reshape(shape)
    return np.concatenate([bank[int(s):int(s) + window] for s in starts])[:n].reshape(shape)


@lru_cache(maxsize=1)
def _textures() -> tuple[np.ndarray, np.ndarray]:
    """Two periodic 512x512 noise tiles (zero mean, unit std): coarse patches and fine grain.

    Built by spectral shaping of white noise, so they tile seamlessly; each carries one wrapped extra row and
    column so that bilinear lookups at coordinates reduced to [0, 512) never take remap's slow border path.
    """
    rng = np.random.default_rng(0x7E47)
    n = 512
    f = np.fft.fftfreq(n)
    radius = np.hypot(f[:, None], f[None, :])
    radius[0, 0] = 1.0
    tiles = []
    for exponent, cutoff in ((1.5, 0.5), (0.5, 0.35)):
        spectrum = np.fft.fft2(rng.standard_normal((n, n))) / radius ** exponent
        spectrum[radius > cutoff] = 0.0
        spectrum[0, 0] = 0.0
        tile = np.fft.ifft2(spectrum).real
        tile = ((tile - tile.mean()) / tile.std()).astype(_f32)
        tile = cv2.copyMakeBorder(tile, 0, 1, 0, 1, cv2.BORDER_WRAP)
        tile.flags.writeable = False
        tiles.append(tile)
    return tiles[0], tiles[1]


def _frac(x: np.ndarray, period: float = 1.0) -> np.ndarray:
    """x modulo period in [0, period) (much faster than numpy's % on float32 images)."""
    q = x * _f32(1.0 / period)
    return (q - np.floor(q)) * _f32(period)


def _sample_tile(tile: np.ndarray, u: np.ndarray, v: np.ndarray, texel_m: float,
                 u0: float = 0.0, v0: float = 0.0) -> np.ndarray:
    """Bilinear lookup of a periodic tile (from `_textures`) at coordinates (u0 + u, v0 + v) in metres.

    The large scalar part (u0, v0) is reduced modulo the period in double precision, so the per-pixel part
    stays float32-exact however far a drive goes.
    """
    n = tile.shape[0] - 1
    k = 1.0 / texel_m
    mx = u * _f32(k) + _f32((u0 * k) % n)
    my = v * _f32(k) + _f32((v0 * k) % n)
    mx -= np.floor(mx * _f32(1.0 / n)) * _f32(n)
    my -= np.floor(my * _f32(1.0 / n)) * _f32(n)
    return cv2.remap(tile, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# ----------------------------------------------------------------------------------------------------------------
# Scene description (geometry and colours depend on the seed only; lighting and sensors on the condition).


@dataclass
class _Road:
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

    def centre(self, z):
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
class _Vehicle:
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
class _Pedestrian:
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
class _TrafficCone:
    z: float
    s: float
    height: float
    radius: float


@dataclass
class _Pothole:
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
class _Building:
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
class _Tree:
    z: float
    s: float
    trunk_height: float
    trunk_radius: float
    crown_radius: float
    crown_colour: tuple[float, float, float]


@dataclass
class _Hill:
    z: float
    s: float
    radius: float
    colour: tuple[float, float, float]


@dataclass
class _Layout:
    """Everything about a scene that the seed fixes: road, colours, camera mounting, objects."""

    road: _Road
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
    vehicles: list[_Vehicle] = field(default_factory=list)
    pedestrians: list[_Pedestrian] = field(default_factory=list)
    cones: list[_TrafficCone] = field(default_factory=list)
    potholes: list[_Pothole] = field(default_factory=list)
    buildings: list[_Building] = field(default_factory=list)
    trees: list[_Tree] = field(default_factory=list)
    hills: list[_Hill] = field(default_factory=list)

    @property
    def ego_s(self) -> float:
        return self.road.lane_centre(self.ego_lane) + self.ego_offset


@dataclass
class _Look:
    """Lighting and sensor behaviour of one condition."""

    condition: str
    sun: np.ndarray
    ambient: float
    sun_strength: float
    sky_zenith: np.ndarray
    sky_horizon: np.ndarray
    clouds: float
    fog_beta: float
    fog_rgb: np.ndarray
    exposure: float
    white_balance: np.ndarray
    noise_dn: float
    headlight_gain: float
    streetlight_gain: float
    emissive_gain: float
    t_ambient: float
    t_sky: float
    road_heat: float
    sun_heat: float
    depth_range: float
    depth_noise: float
    depth_holes: float
    dark_depth_level: float


def _rgb(rng: np.random.Generator, base: Sequence[float], jitter: float) -> tuple[float, float, float]:
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


def _make_road(rng: np.random.Generator) -> _Road:
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
    return _Road(
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


def _make_layout(rng: np.random.Generator) -> _Layout:
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
    layout = _Layout(
        road=road, camera_height=float(rng.uniform(1.05, 1.4)), pitch=float(np.radians(rng.uniform(1.5, 7.0))),
        roll=float(np.radians(rng.normal(0.0, 0.8))), yaw_offset=float(np.radians(rng.normal(0.0, 1.5))),
        ego_lane=ego_lane, ego_offset=float(rng.normal(0.0, 0.25)), road_rgb=road_rgb, offroad_rgb=offroad_rgb,
        shoulder_rgb=_rgb(rng, (0.5, 0.47, 0.42), 0.1), kerb_rgb=_rgb(rng, (0.72, 0.72, 0.7), 0.1),
        sidewalk_rgb=_rgb(rng, (0.58, 0.57, 0.55), 0.12), offroad_tex=float(rng.uniform(0.15, 0.3)),
        road_tex=float(rng.uniform(0.05, 0.12)), texture_offset=float(rng.uniform(0, 512)),
    )
    return layout


class _Placer:
    """Places objects in road coordinates (z, s) without overlaps."""

    def __init__(self, layout: _Layout, keep_ego_lane_clear: bool):
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


def _vehicle_shape(rng: np.random.Generator) -> tuple[str, float, float, float]:
    kind = str(rng.choice(["car", "suv", "van", "truck"], p=[0.55, 0.25, 0.13, 0.07]))
    length, width, height = {
        "car": (rng.uniform(3.8, 4.8), rng.uniform(1.7, 1.9), rng.uniform(1.4, 1.55)),
        "suv": (rng.uniform(4.4, 5.0), rng.uniform(1.85, 2.0), rng.uniform(1.65, 1.85)),
        "van": (rng.uniform(4.8, 6.0), rng.uniform(1.95, 2.1), rng.uniform(2.1, 2.6)),
        "truck": (rng.uniform(7.0, 10.0), rng.uniform(2.3, 2.5), rng.uniform(3.0, 3.6)),
    }[kind]
    return kind, float(length), float(width), float(height)


def _populate(layout: _Layout, rng: np.random.Generator, z_lo: float, z_hi: float, rates: dict[str, float],
              placer: _Placer, ego_speed: float = 0.0) -> None:
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
        kind, length, width, height = _vehicle_shape(rng)
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
            paint = _CAR_PAINTS[int(rng.integers(len(_CAR_PAINTS)))]
            layout.vehicles.append(_Vehicle(
                z=z, s=float(s), length=length, width=width, height=height, kind=kind, colour=_rgb(rng, paint, 0.08),
                direction=direction, speed=float(speed), engine_on=bool(engine),
                yaw_jitter=float(rng.normal(0.0, 0.08 if speed == 0 else 0.02))))

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
            clothes = [_CLOTHES[int(i)] for i in rng.integers(len(_CLOTHES), size=2)]
            speed = float(rng.choice([-1, 1]) * rng.uniform(0.8, 1.6)) if abs(s) > hw else 0.0
            heading = (0.0 if speed > 0 else math.pi) if speed else float(rng.uniform(-math.pi, math.pi))
            layout.pedestrians.append(_Pedestrian(
                z=z, s=s, height=height, radius=float(rng.uniform(0.16, 0.21)) * height / 1.75,
                shirt=_rgb(rng, clothes[0], 0.1), trousers=_rgb(rng, clothes[1], 0.1),
                skin=_SKINS[int(rng.integers(len(_SKINS)))], speed=speed, heading=heading,
                stride_phase=float(rng.uniform(0, 2 * math.pi)), short_sleeves=bool(rng.random() < 0.4)))

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
                layout.cones.append(_TrafficCone(z=z, s=s, height=height, radius=height * 0.28))

    for _ in range(count("pothole")):
        crack = rng.random() < 0.22
        if crack:
            a, b, depth = rng.uniform(0.15, 0.25), rng.uniform(1.2, 3.0), rng.uniform(0.08, 0.15)
            angle = float(rng.choice([0.0, math.pi / 2]) + rng.normal(0.0, 0.4))
        else:
            a, b, depth = rng.uniform(0.5, 1.3), rng.uniform(0.5, 1.7), rng.uniform(0.12, 0.3)
            angle = float(rng.uniform(-0.5, 0.5))
        reach = max(a, b) + 0.15
        if hw - reach <= 0:
            continue
        z = draw_z("pothole")
        s = float(rng.uniform(-hw + reach, hw - reach))
        if placer.free(z, s, reach, reach):
            placer.footprints.append((z, s, reach, reach))
            layout.potholes.append(_Pothole(
                z=z, s=s, a=float(a), b=float(b), angle=angle, depth=float(depth), wet=bool(rng.random() < 0.4),
                darkening=float(rng.uniform(0.0, 0.03)),
                wobble=(float(rng.uniform(0.0, 0.15)), float(rng.integers(2, 6)), float(rng.uniform(0, 6.3)))))


def _populate_background(layout: _Layout, rng: np.random.Generator, z_lo: float, z_hi: float) -> None:
    """Buildings (urban roads) or trees (rural roads) along both sides of [z_lo, z_hi)."""
    road = layout.road
    beyond = road.kerb_width + road.sidewalk_width if road.kerb else road.shoulder_width
    for side in (-1, 1):
        z = z_lo + float(rng.uniform(0.0, 10.0))
        while z < z_hi:
            if road.street_lights and rng.random() < 0.85:
                length = float(rng.uniform(8.0, 25.0))
                layout.buildings.append(_Building(
                    z=z + 0.5 * length, side=side, setback=beyond + float(rng.uniform(0.5, 6.0)), length=length,
                    depth=float(rng.uniform(8.0, 15.0)), height=float(rng.uniform(4.0, 16.0)),
                    colour=_rgb(rng, _FACADES[int(rng.integers(len(_FACADES)))], 0.1),
                    window_colour=_rgb(rng, (0.15, 0.2, 0.27), 0.2), window_spacing=float(rng.uniform(2.2, 3.5))))
                z += length + float(rng.uniform(1.0, 10.0))
            else:
                if rng.random() < 0.75:
                    crown = float(rng.uniform(1.2, 3.0))
                    layout.trees.append(_Tree(
                        z=z, s=side * (road.half_width + beyond + crown + float(rng.uniform(0.5, 8.0))),
                        trunk_height=float(rng.uniform(1.5, 3.0)), trunk_radius=float(rng.uniform(0.12, 0.3)),
                        crown_radius=crown, crown_colour=_rgb(rng, (0.16, 0.32, 0.1), 0.25)))
                z += float(rng.uniform(5.0, 18.0))


def _populate_hills(layout: _Layout, rng: np.random.Generator, z_ref: float) -> None:
    for _ in range(int(rng.integers(0, 4))):
        radius = float(rng.uniform(80, 250))
        layout.hills.append(_Hill(z=z_ref + radius + float(rng.uniform(150, 450)), s=float(rng.uniform(-500, 500)),
                                  radius=radius, colour=_rgb(rng, (0.25, 0.35, 0.2), 0.25)))


#: Expected obstacles per metre of road near the camera in a single scene, and further away.
_NEAR_RATES = {"vehicle": 0.08, "vehicle_bias": 1.3, "pedestrian": 0.07, "pedestrian_bias": 1.5,
               "cone_group": 0.035, "cone_group_bias": 1.5, "pothole": 0.12, "pothole_bias": 1.6}
_FAR_RATES = {"vehicle": 0.03, "pedestrian": 0.012, "cone_group": 0.004}
#: Expected obstacles per metre for a drive (sparser, but the ego car keeps meeting them).
_DRIVE_RATES = {"vehicle": 0.05, "pedestrian": 0.035, "cone_group": 0.012, "pothole": 0.05}


def _make_look(rng: np.random.Generator, condition: str, layout: _Layout) -> _Look:
    elevation = math.radians(rng.uniform(20, 65))
    azimuth = rng.uniform(-math.pi, math.pi)
    sun = np.array([math.cos(elevation) * math.sin(azimuth), math.sin(elevation),
                    math.cos(elevation) * math.cos(azimuth)], dtype=np.float64)
    t_amb = float(rng.uniform(12.0, 28.0) if condition == "day" else rng.uniform(0.0, 15.0) if condition == "night"
                  else rng.uniform(2.0, 14.0))
    wb = np.clip(1.0 + rng.normal(0.0, 0.04, 3), 0.85, 1.15)
    base = dict(
        condition=condition, sun=sun, clouds=0.0, fog_beta=0.0, fog_rgb=np.zeros(3), white_balance=wb,
        headlight_gain=0.0, streetlight_gain=0.0, emissive_gain=0.0, t_ambient=t_amb,
        depth_range=float(rng.uniform(20.0, 40.0)), depth_noise=0.01, depth_holes=float(rng.uniform(0.005, 0.025)),
        dark_depth_level=0.0,
    )
    if condition == "day":
        overcast = rng.random() < 0.3
        clouds = 0.0 if overcast else float(rng.uniform(0.0, 0.5))
        return _Look(
            ambient=float(rng.uniform(0.75, 0.9) if overcast else rng.uniform(0.45, 0.6)),
            sun_strength=float(rng.uniform(0.05, 0.15) if overcast else rng.uniform(0.45, 0.7)),
            sky_zenith=np.array([0.6, 0.62, 0.66]) if overcast else np.array([0.3, 0.5, 0.85]) * rng.uniform(0.9, 1.1),
            sky_horizon=np.array([0.8, 0.8, 0.82]) if overcast else np.array([0.72, 0.8, 0.9]),
            exposure=float(rng.uniform(0.85, 1.15)), noise_dn=float(rng.uniform(1.0, 2.5)),
            t_sky=t_amb - (8.0 if overcast else 30.0), road_heat=float(rng.uniform(4.0, 8.0) if not overcast else 3.0),
            sun_heat=float(rng.uniform(2.0, 5.0)), **{**base, "clouds": clouds})
    if condition == "night":
        return _Look(
            ambient=float(rng.uniform(0.01, 0.04)), sun_strength=0.0,
            sky_zenith=np.array([0.01, 0.012, 0.03]), sky_horizon=np.array([0.04, 0.035, 0.05]) * (
                2.5 if layout.road.street_lights else 1.0),
            exposure=float(rng.uniform(0.8, 1.2)), noise_dn=float(rng.uniform(3.0, 6.0)),
            t_sky=t_amb - 30.0, road_heat=float(rng.uniform(2.0, 5.0)), sun_heat=0.0,
            **{**base, "headlight_gain": float(rng.uniform(0.25, 0.45)),
               "streetlight_gain": float(rng.uniform(0.04, 0.15)) if layout.road.street_lights else 0.0,
               "emissive_gain": 1.0, "depth_noise": 0.025, "dark_depth_level": float(rng.uniform(0.05, 0.08))})
    if condition == "fog":
        visibility = float(rng.uniform(25.0, 80.0))
        grey = rng.uniform(0.7, 0.85)
        return _Look(
            ambient=float(rng.uniform(0.75, 0.9)), sun_strength=0.05,
            sky_zenith=np.full(3, grey), sky_horizon=np.full(3, grey), exposure=float(rng.uniform(0.9, 1.1)),
            noise_dn=float(rng.uniform(1.5, 3.0)), t_sky=t_amb - 3.0, road_heat=1.5, sun_heat=0.5,
            **{**base, "fog_beta": 3.0 / visibility, "fog_rgb": np.array([grey, grey, grey * 1.02]),
               "depth_range": float(min(base["depth_range"], max(12.0, 0.6 * visibility))), "depth_noise": 0.018,
               "emissive_gain": 0.3})
    raise ValueError(f"unknown condition {condition!r}; expected one of {', '.join(CONDITIONS)}")


# ----------------------------------------------------------------------------------------------------------------
# Materials: every surface a pixel can show, with its colour, temperature and label.


class _Materials:
    """Growing table; rendering gathers from it with the per-pixel material id."""

    SKY, ROAD, MARK_WHITE, MARK_YELLOW, SHOULDER, OFFROAD, KERB, SIDEWALK = range(8)

    def __init__(self) -> None:
        self.rgb: list[tuple[float, float, float]] = []
        self.temp: list[float] = []
        self.part: list[int] = []
        self.tex_coarse: list[float] = []
        self.tex_fine: list[float] = []
        self.emissive: list[tuple[float, float, float]] = []

    def add(self, rgb, temp_c: float, part: str, coarse: float = 0.03, fine: float = 0.03,
            emissive=(0.0, 0.0, 0.0)) -> int:
        self.rgb.append(tuple(float(c) for c in rgb))
        self.temp.append(float(temp_c))
        self.part.append(PART_NAMES.index(part))
        self.tex_coarse.append(float(coarse))
        self.tex_fine.append(float(fine))
        self.emissive.append(tuple(float(c) for c in emissive))
        return len(self.rgb) - 1

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "rgb": np.asarray(self.rgb, dtype=_f32), "temp": np.asarray(self.temp, dtype=_f32),
            "part": np.asarray(self.part, dtype=np.uint8),
            "label": np.asarray([PART_LABELS[PART_NAMES[i]] for i in self.part], dtype=np.uint8),
            "coarse": np.asarray(self.tex_coarse, dtype=_f32), "fine": np.asarray(self.tex_fine, dtype=_f32),
            "emissive": np.asarray(self.emissive, dtype=_f32),
            "glows": np.asarray(self.emissive, dtype=_f32).any(axis=1),
        }


# ----------------------------------------------------------------------------------------------------------------
# Cameras and rays.


@dataclass(frozen=True)
class _Camera:
    origin: tuple[float, float, float]
    rot: np.ndarray  # 3x3, optical frame (x right, y down, z forward) -> world
    intr: StereoIntrinsics


def _camera_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
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


class _RayBlock:
    """World-frame ray directions of a pixel rectangle; a ray's parameter t equals the optical depth Z."""

    def __init__(self, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray, length: np.ndarray):
        self.dx, self.dy, self.dz, self.length = dx, dy, dz, length
        self.shape = dx.shape

    @property
    def tex_u(self) -> np.ndarray:
        """Direction part of the texture coordinates (see `_colour_band`)."""
        return self.dx + _f32(0.6) * self.dz

    @property
    def tex_v(self) -> np.ndarray:
        return self.dy + _f32(0.8) * self.dz


class _Rays:
    """Every pixel's ray of one camera, built on demand per rectangle.

    A ray direction is R @ (xn[u], yn[v], 1), which separates into a per-column plus a per-row term; keeping
    only those vectors and expanding the rectangle a stage needs saves whole-image arrays and memory traffic.
    """

    def __init__(self, cam: _Camera):
        xn, yn, self._length = _pixel_grid(cam.intr)
        r = cam.rot.astype(_f32)
        self._cols = [r[i, 0] * xn for i in range(3)]
        self._rows = [r[i, 1] * yn + r[i, 2] for i in range(3)]
        self.shape = (cam.intr.height, cam.intr.width)
        down = self._rows[1] + self._cols[1].min() < -1e-5  # rows where some ray points below the horizon
        below = np.flatnonzero(down)
        self.first_ground_row = int(below[0]) if below.size else self.shape[0]

    def rect(self, rows: slice, cols: slice = slice(None)) -> _RayBlock:
        dx, dy, dz = (self._cols[i][None, cols] + self._rows[i][rows, None] for i in range(3))
        return _RayBlock(dx, dy, dz, self._length[rows, cols])

    def rows(self, r: slice) -> _RayBlock:
        return self.rect(r)


#: Per-pixel stages run over bands of about this many pixels: the temporaries of a band stay in the CPU cache,
#: which roughly halves the time of long numpy expression chains compared with whole images.
_BAND_PIXELS = 16384


def _bands(start: int, height: int, width: int) -> Iterator[slice]:
    step = max(4, _BAND_PIXELS // max(width, 1))
    for r in range(start, height, step):
        yield slice(r, min(r + step, height))


#: Corner index pairs of the 12 edges of a box given by `_box_corners` (bottom ring, top ring, verticals).
_BOX_EDGES = np.array([(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
                       (0, 4), (1, 5), (2, 6), (3, 7)])
_NEAR_PLANE = 0.05


def _rois(cam: _Camera, corners: np.ndarray) -> list[tuple[slice, slice] | None]:
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


# ----------------------------------------------------------------------------------------------------------------
# Primitives: each returns (t, material, shade) over a pixel rectangle; t = inf where the ray misses.


def _box_corners(x, z, yaw, hx, hz, y0, y1) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    lx = np.array([-hx, hx, hx, -hx] * 2)
    lz = np.array([-hz, -hz, hz, hz] * 2)
    ys = np.array([y0] * 4 + [y1] * 4)
    return np.stack([x + c * lx + s * lz, ys, z - s * lx + c * lz], axis=1)


class _Box:
    """A yawed box; faces (-x, +x, -y, +y, -z, +z) in its own frame, +z being the object's front."""

    def __init__(self, x, z, yaw, hx, hz, y0, y1, face_mats, sun, lights=None, windows=None):
        self.x, self.z, self.hx, self.hz, self.y0, self.y1 = x, z, hx, hz, y0, y1
        self.c, self.s = math.cos(yaw), math.sin(yaw)
        ex, ez = np.array([self.c, 0.0, -self.s]), np.array([self.s, 0.0, self.c])
        normals = [-ex, ex, np.array([0, -1.0, 0]), np.array([0, 1.0, 0]), -ez, ez]
        self.face_shade = np.array([max(0.0, float(n @ np.asarray(sun))) for n in normals], dtype=_f32)
        self.face_mats = np.asarray(face_mats, dtype=np.uint16)
        self.lights = lights  # (rear_mat, front_mat, y_lo, y_hi, |x| fraction) for lamps on the +-z faces
        self.windows = windows  # (mat, spacing) for facade windows on the vertical faces
        self.corners = _box_corners(x, z, yaw, hx, hz, y0, y1)

    def hit(self, o, dx, dy, dz):
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
                fu = _frac(along * _f32(1.0 / spacing))
                fv = _frac(hy * _f32(1.0 / 3.2))
                window = (face != 2) & (face != 3) & (fu > 0.25) & (fu < 0.75) & (fv > 0.35) & (fv < 0.8) & (hy > 1.5)
                mat = np.where(window, np.uint16(wmat), mat)
        return t, mat, np.take(self.face_shade, face)


class _Cylinder:
    """Vertical cylinder with material bands by height: bands = ((y_top, mat), ...) ascending."""

    def __init__(self, x, z, r, y0, y1, bands, sun):
        self.x, self.z, self.r, self.y0, self.y1, self.bands = x, z, r, y0, y1, bands
        self.sun = sun
        self.corners = _box_corners(x, z, 0.0, r, r, y0, y1)

    def hit(self, o, dx, dy, dz):
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


class _Sphere:
    def __init__(self, x, y, z, r, mat, sun):
        self.x, self.y, self.z, self.r, self.mat, self.sun = x, y, z, r, mat, sun
        self.corners = _box_corners(x, z, 0.0, r, r, max(y - r, 0.0), y + r)  # nothing below ground is seen

    def hit(self, o, dx, dy, dz):
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


class _ConeShape:
    """Traffic cone: apex at height h above (x, z), base radius r, with a reflective band."""

    def __init__(self, x, z, r, h, mat, band_mat, sun):
        self.x, self.z, self.r, self.h, self.mat, self.band_mat, self.sun = x, z, r, h, mat, band_mat, sun
        self.corners = _box_corners(x, z, 0.0, r, r, 0.0, h)

    def hit(self, o, dx, dy, dz):
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


# ----------------------------------------------------------------------------------------------------------------
# A scene ready to render: primitives and ground features in world coordinates for one ego pose.


@dataclass
class _GroundFeature:
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
class _Compiled:
    """One frame's world, ready to ray cast: material table, primitives, ground features."""

    layout: _Layout
    look: _Look
    materials: dict[str, np.ndarray]
    primitives: list
    corners: np.ndarray  # (N, 8, 3) bounding corners of the primitives
    potholes: list[_GroundFeature]
    shadows: list[_GroundFeature]


@dataclass
class _SceneBuilder:
    """Collects materials and primitives while a layout is turned into renderable geometry."""

    road: _Road
    look: _Look
    sun: tuple[float, float, float]
    materials: _Materials = field(default_factory=_Materials)
    primitives: list = field(default_factory=list)
    shadows: list[_GroundFeature] = field(default_factory=list)
    potholes: list[_GroundFeature] = field(default_factory=list)

    @property
    def t_amb(self) -> float:
        return self.look.t_ambient

    @property
    def night(self) -> bool:
        return self.look.condition == "night"

    def add_ground_materials(self, layout: _Layout) -> None:
        """The fixed first entries, in `_Materials` id order."""
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

    def add_vehicle(self, v: _Vehicle) -> None:
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
        self.primitives.append(_Box(x, z, yaw, hx - 0.06, hl - 0.25, 0.0, 0.36, [under] * 6, sun))
        self.primitives.append(_Box(x, z, yaw, hx, hl, 0.36, body_top, [paint] * 6, sun, lights=lamps))
        if boxy:  # windscreen: a thin glass box on the front face
            fx, fz = x + s * (hl - 0.02), z + c * (hl - 0.02)
            self.primitives.append(_Box(fx, fz, yaw, hx - 0.12, 0.04, body_top - 0.95, body_top - 0.25,
                                        [glass] * 6, sun))
        else:  # cabin, set back a little
            cx, cz = x - s * 0.08 * v.length, z - c * 0.08 * v.length
            self.primitives.append(_Box(cx, cz, yaw, hx - 0.1, 0.3 * v.length, body_top, v.height,
                                        [glass, glass, paint, paint, glass, glass], sun))
        self.shadows.append(_GroundFeature(x=x, z=z, cos=c, sin=s, a=hx + 0.25, b=hl + 0.2,
                                           corners=_box_corners(x, z, yaw, hx + 0.3, hl + 0.3, 0.0, 0.0)))

    def add_pedestrian(self, p: _Pedestrian) -> None:
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
            self.primitives.append(_Cylinder(lx, lz, 0.08 * scale, 0.0, hip + 0.05, ((hip + 0.05, trousers),), sun))
            ax = x + side[0] * lateral * (p.radius + 0.045 * scale) - fwd[0] * 0.6 * step
            az = z + side[1] * lateral * (p.radius + 0.045 * scale) - fwd[1] * 0.6 * step
            self.primitives.append(_Cylinder(ax, az, 0.045 * scale, hip + 0.02, shoulder - 0.02,
                                             ((shoulder, arm_mat),), sun))
        self.primitives.append(_Cylinder(x, z, p.radius, hip, shoulder, ((shoulder, shirt),), sun))
        self.primitives.append(_Sphere(x, p.height - head_r, z, head_r, skin, sun))

    def add_cones(self, cones: Sequence[_TrafficCone]) -> None:
        if not cones:
            return
        cone_t = self.t_amb + 0.4 * self.look.sun_heat - (1.0 if self.night else 0.0)
        orange = self.materials.add((0.95, 0.35, 0.05), cone_t, "cone", fine=0.03)
        white = self.materials.add((0.92, 0.92, 0.9), cone_t - 0.5, "cone", fine=0.03,
                                   emissive=(0.35, 0.35, 0.35) if self.night else (0, 0, 0))  # retro-reflective
        for cone in cones:
            x, z = self.road.to_world(cone.z, cone.s)
            self.primitives.append(_ConeShape(x, z, cone.radius, cone.height, orange, white, self.sun))

    def add_building(self, b: _Building) -> None:
        m = self.materials
        yaw = self.road.yaw(b.z)
        x, z = self.road.to_world(b.z, b.side * (self.road.half_width + b.setback + 0.5 * b.depth))
        wall = m.add(b.colour, self.t_amb + 2.0 + 0.5 * self.look.sun_heat, "building", coarse=0.06, fine=0.06)
        lit_window = tuple(np.array([1.0, 0.85, 0.55]) * 0.4) if self.night else (0, 0, 0)
        window = m.add(b.window_colour, self.t_amb - 1.0, "building", fine=0.02, emissive=lit_window)
        self.primitives.append(_Box(x, z, yaw, 0.5 * b.depth, 0.5 * b.length, 0.0, b.height, [wall] * 6, self.sun,
                                    windows=(window, b.window_spacing)))

    def add_trees(self, trees: Sequence[_Tree]) -> None:
        if not trees:
            return
        trunk = self.materials.add((0.3, 0.22, 0.15), self.t_amb + 0.5, "vegetation", fine=0.1)
        for tr in trees:
            x, z = self.road.to_world(tr.z, tr.s)
            crown = self.materials.add(tr.crown_colour, self.t_amb - 1.0, "vegetation", coarse=0.25, fine=0.3)
            self.primitives.append(_Cylinder(x, z, tr.trunk_radius, 0.0, tr.trunk_height + tr.crown_radius * 0.5,
                                             ((tr.trunk_height + tr.crown_radius, trunk),), self.sun))
            self.primitives.append(_Sphere(x, tr.trunk_height + 0.8 * tr.crown_radius, z, tr.crown_radius, crown,
                                           self.sun))

    def add_hill(self, hill: _Hill) -> None:
        x, z = self.road.to_world(hill.z, hill.s)
        mat = self.materials.add(hill.colour, self.t_amb - 2.0, "terrain", coarse=0.2, fine=0.1)
        self.primitives.append(_Sphere(x, -0.75 * hill.radius, z, hill.radius, mat, self.sun))

    def add_pothole(self, ph: _Pothole, layout: _Layout) -> None:
        x, z = self.road.to_world(ph.z, ph.s)
        yaw = self.road.yaw(ph.z) + ph.angle
        floor_rgb = np.asarray(layout.road_rgb) * (1.0 - ph.darkening - (0.02 if ph.wet else 0.0))
        # Water in a pothole stays a little cooler than the asphalt around it (under 1 K); a dry one is the
        # same asphalt at the same temperature. Depth, not thermal, is what should give a pothole away.
        road_temp = self.t_amb + self.look.road_heat
        floor_t = road_temp - (float(0.3 + 0.7 * ph.depth / 0.3) if ph.wet else 0.1)
        floor = self.materials.add(floor_rgb, floor_t, "pothole", coarse=layout.road_tex, fine=0.08)
        wall = self.materials.add(floor_rgb * 0.97, 0.5 * (floor_t + road_temp), "pothole", coarse=layout.road_tex,
                                  fine=0.08)
        reach = max(ph.a, ph.b) * (1.0 + ph.wobble[0])
        self.potholes.append(_GroundFeature(
            x=x, z=z, cos=math.cos(yaw), sin=math.sin(yaw), a=ph.a, b=ph.b, depth=ph.depth, floor_mat=floor,
            wall_mat=wall, wobble=ph.wobble, corners=_box_corners(x, z, yaw, reach, reach, -ph.depth, 0.0)))


def _compile(layout: _Layout, look: _Look, ego_z: float) -> _Compiled:
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
    return _Compiled(layout=layout, look=look, materials=builder.materials.arrays(), primitives=prims,
                     corners=np.array([p.corners for p in prims]).reshape(-1, 8, 3),
                     potholes=builder.potholes, shadows=builder.shadows)


# ----------------------------------------------------------------------------------------------------------------
# Rendering.


@dataclass
class _View:
    """Per-pixel geometry of one camera: depth Z (inf = sky), material id and sun shading (<0 = shadow)."""

    depth: np.ndarray
    mat: np.ndarray
    shade: np.ndarray
    ground_x: np.ndarray
    ground_z: np.ndarray


def _cast_ground(scene: _Compiled, cam: _Camera, rays: _Rays) -> _View:
    """Intersect every ray with the ground: road, markings, shoulder, kerbs and sidewalks, off-road."""
    h, w = rays.shape
    r0 = rays.first_ground_row
    view = _View(depth=np.full((h, w), np.inf, dtype=_f32), mat=np.zeros((h, w), dtype=np.uint16),
                 shade=np.zeros((h, w), dtype=_f32), ground_x=np.empty((h, w), dtype=_f32),
                 ground_z=np.empty((h, w), dtype=_f32))
    for r in _bands(r0, h, w):
        view.depth[r], view.mat[r], view.shade[r], view.ground_x[r], view.ground_z[r] = _ground_band(
            scene, cam, rays.rows(r))
    return view


def _ground_band(scene: _Compiled, cam: _Camera, rays: _RayBlock):
    road = scene.layout.road
    ox, oy, oz = cam.origin
    dx, dy, dz = rays.dx, rays.dy, rays.dz
    down = -dy
    valid = down > 1e-5
    tg = _f32(oy) / np.maximum(down, _f32(1e-5))
    valid &= tg < _MAX_GROUND_M
    np.minimum(tg, _f32(_MAX_GROUND_M), out=tg)
    xg = ox + tg * dx
    zg = oz + tg * dz
    s = xg - road.centre(zg)
    a = np.abs(s)
    hw = road.half_width
    mats = _Materials
    m = np.where(a < hw, np.uint16(mats.ROAD),
                 np.where(a < hw + road.shoulder_width, np.uint16(mats.SHOULDER), np.uint16(mats.OFFROAD)))
    if road.edge_lines:
        edge = np.abs(a - _f32(hw - road.edge_offset - 0.5 * road.mark_width)) < _f32(0.5 * road.mark_width)
        np.copyto(m, np.uint16(mats.MARK_WHITE), where=edge)
    dividers = road.dividers()
    if dividers:
        dashes = _frac(zg + _f32(road.dash_phase), road.dash_period) < road.dash_length
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


def _cast_potholes(scene: _Compiled, cam: _Camera, rays: _Rays, view: _View) -> None:
    ox, oy, oz = cam.origin
    r0 = rays.first_ground_row
    rois = _rois(cam, np.array([ph.corners for ph in scene.potholes]).reshape(-1, 8, 3))
    for ph, roi in zip(scene.potholes, rois):
        if roi is None:
            continue
        rows = slice(max(roi[0].start, r0), roi[0].stop)
        if rows.start >= rows.stop:
            continue
        roi = (rows, roi[1])
        mat = view.mat[roi]
        on_road = (mat >= _Materials.ROAD) & (mat <= _Materials.MARK_YELLOW)
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


def _cast_shadows(scene: _Compiled, cam: _Camera, rays: _Rays, view: _View) -> None:
    """Darken the ground under vehicles (contact shadow: no sun, reduced sky light)."""
    r0 = rays.first_ground_row
    rois = _rois(cam, np.array([sd.corners for sd in scene.shadows]).reshape(-1, 8, 3))
    for sd, roi in zip(scene.shadows, rois):
        if roi is None:
            continue
        rows = slice(max(roi[0].start, r0), roi[0].stop)
        if rows.start >= rows.stop:
            continue
        roi = (rows, roi[1])
        ex, ez = view.ground_x[roi] - _f32(sd.x), view.ground_z[roi] - _f32(sd.z)
        lx, lz = sd.cos * ex - sd.sin * ez, sd.sin * ex + sd.cos * ez
        under = (np.abs(lx) < sd.a) & (np.abs(lz) < sd.b) & (view.mat[roi] <= _Materials.OFFROAD)
        under &= view.mat[roi] != _Materials.SKY
        soft = np.minimum(sd.a - np.abs(lx), sd.b - np.abs(lz)) * 4.0
        np.copyto(view.shade[roi], (-0.5 * np.clip(soft, 0.2, 1.0)).astype(_f32), where=under)


def _cast_primitives(scene: _Compiled, cam: _Camera, rays: _Rays, view: _View) -> None:
    o = cam.origin
    if not scene.primitives:
        return
    # Front to back, so that a primitive hidden behind nearer ones is skipped after one max() over its rectangle.
    nearest = ((scene.corners - np.asarray(o)) @ cam.rot)[..., 2].min(axis=1)
    rois = _rois(cam, scene.corners)
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


def _render_geometry(scene: _Compiled, cam: _Camera) -> tuple[_View, _Rays]:
    rays = _Rays(cam)
    view = _cast_ground(scene, cam, rays)
    _cast_potholes(scene, cam, rays, view)
    _cast_shadows(scene, cam, rays, view)
    _cast_primitives(scene, cam, rays, view)
    return view, rays


@lru_cache(maxsize=8)
def _vignette(width: int, height: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(_f32)
    r2 = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (width / 2)) ** 2
    v = (1.0 - 0.18 * r2).astype(_f32)
    v.flags.writeable = False
    return v


def _shade_rgb(scene: _Compiled, cam: _Camera, view: _View, rays: _Rays, ego: _Camera,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour image (uint8) and, when stereo fails in the dark (night), its noiseless luminance in 0..1."""
    h, w = rays.shape
    rgb = np.empty((h, w, 3), dtype=np.uint8)
    luminance = np.empty((h, w), dtype=_f32) if scene.look.dark_depth_level > 0 else None
    vignette = _vignette(w, h)
    noise_dn = float(scene.look.noise_dn)
    for r in _bands(0, h, w):
        planes = _colour_band(scene, cam, view.mat[r], view.shade[r], view.depth[r], rays.rows(r), vignette[r], ego)
        if luminance is not None:
            red, green, blue = planes
            luminance[r] = (red * _f32(0.299 / 255.0) + green * _f32(0.587 / 255.0)) + blue * _f32(0.114 / 255.0)
        for plane in planes:
            cv2.scaleAdd(_gauss(rng, plane.shape), noise_dn, plane, dst=plane)
            np.clip(plane, 0.0, 255.0, out=plane)
        rgb[r] = cv2.merge([plane.astype(np.uint8) for plane in planes])
    return rgb, luminance


def _colour_band(scene: _Compiled, cam: _Camera, mat: np.ndarray, shade: np.ndarray, z: np.ndarray,
                 rays: _RayBlock, vig: np.ndarray, ego: _Camera) -> list[np.ndarray]:
    """Noiseless colour of a band of rows: three float32 planes (R, G, B) in 0..255.

    All lighting is folded into one single-channel gain, and colour is kept as separate planes, because
    interleaved three-channel float arithmetic is several times slower in numpy.
    """
    look, mats = scene.look, scene.materials
    zf = np.minimum(z, _f32(_MAX_GROUND_M))
    ox, oy, oz = cam.origin
    tiles = _textures()
    off = scene.layout.texture_offset
    u0, v0 = ox + 0.6 * oz + off, oy + 0.8 * oz + 0.37 * off
    gain = np.ones(mat.shape, dtype=_f32)
    fine_fade_m = 2.0 * cam.intr.fx * 0.035  # distance at which a fine texel shrinks to half a pixel
    nearest = float(zf.min())
    if nearest < 0.5 * _MAX_GROUND_M:  # anything but sky in this band
        # Texture coordinates are a fixed linear map of the world point, so every surface orientation is
        # textured. Coarse patches are smooth at pixel scale: sampled on every other pixel and interpolated.
        h, w = mat.shape
        lo = (slice(None, None, 2), slice(None, None, 2))
        zl = zf[lo]
        coarse = _sample_tile(tiles[0], zl * (rays.dx[lo] + _f32(0.6) * rays.dz[lo]),
                              zl * (rays.dy[lo] + _f32(0.8) * rays.dz[lo]), 0.35, u0, v0)
        gain += np.take(mats["coarse"], mat) * cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    if nearest < 3.0 * fine_fade_m:
        # Fine grain fades once a pixel covers several texels, as optics would blur it (it would only alias).
        zr = zf * _f32(1.0 / fine_fade_m)
        fine = np.take(mats["fine"], mat) / (1.0 + zr * zr)
        gain += fine * _sample_tile(tiles[1], zf * rays.tex_u, zf * rays.tex_v, 0.035, u0 + 7.0, v0 + 3.0)

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
            dz_l = _frac(pz - _f32(road.light_phase), road.light_spacing) - _f32(0.5 * road.light_spacing)
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

    sky = mat == _Materials.SKY
    if look.fog_beta == 0 and sky.any():
        elevation = np.clip(rays.dy / rays.length, 0.0, 1.0)
        mix = np.minimum(elevation * _f32(2.5), 1.0)
        if look.clouds > 0:
            inv = 1.0 / np.maximum(rays.dy, _f32(0.02))
            clouds = _sample_tile(tiles[0], rays.dx * inv, rays.dz * inv, 0.02, off, off)
            cover = np.clip((clouds - _f32(1.0 - 2.0 * look.clouds)) * _f32(0.6), 0.0, 0.85)
        for c in range(3):
            horizon, zenith = float(look.sky_horizon[c] * wb[c]), float(look.sky_zenith[c] * wb[c])
            sky_c = horizon + mix * _f32(zenith - horizon)
            if look.clouds > 0:
                sky_c += cover * (_f32(0.92 * wb[c]) - sky_c)
            sky_c *= vig
            np.copyto(planes[c], sky_c, where=sky)
    return planes


def _shade_thermal(scene: _Compiled, view: _View, rays: _Rays, rng: np.random.Generator) -> np.ndarray:
    """Boson-like uint16 counts: temperatures per material, sun-warmed faces, optics blur, sensor noise."""
    look, mats = scene.look, scene.materials
    h, w = view.mat.shape
    counts = np.empty((h, w), dtype=_f32)
    for r in _bands(0, h, w):
        mat, band = view.mat[r], rays.rows(r)
        # Sunlit faces are warmer, shadowed ground (shade < 0) cooler.
        temp = np.take(mats["temp"], mat) + _f32(look.sun_heat) * view.shade[r]
        sky = mat == _Materials.SKY
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
    counts += _gauss(rng, (h, w)) * _f32(5.0)
    counts += _gauss(rng, (1, w)) * _f32(3.0)  # column fixed-pattern noise
    np.clip(counts + _f32(0.5), 0, 65535, out=counts)
    return counts.astype(np.uint16)


def _sense_depth(scene: _Compiled, view: _View, luminance: np.ndarray | None,
                 rng: np.random.Generator) -> np.ndarray:
    """ZED-like depth: ~1-2.5 % noise, holes in the sky, beyond range, in the dark and at random."""
    look = scene.look
    z = view.depth
    h, w = z.shape
    valid = (z >= MIN_DEPTH_M) & (z <= look.depth_range)
    noisy = z * (1.0 + _gauss(rng, (h, w)) * _f32(look.depth_noise))
    speckle = _gauss(rng, (h, w)) > 2.3  # ~1 % isolated invalid pixels
    # Irregular hole blobs (a few % of the image): smooth random field, thresholded.
    cell = max(4, w // 40)
    field_ = rng.random((h // cell + 2, w // cell + 2)).astype(_f32)
    blobs = cv2.resize(field_, (w, h), interpolation=cv2.INTER_CUBIC) < look.depth_holes
    valid &= ~speckle & ~blobs
    if luminance is not None:
        valid &= luminance > look.dark_depth_level
    return np.where(valid, noisy, _f32(np.nan)).astype(_f32)


def _cameras(layout: _Layout, intr: StereoIntrinsics, ego_z: float, ego_s: float,
             pitch: float, roll: float, yaw_offset: float) -> tuple[_Camera, _Camera]:
    road = layout.road
    x, z = road.to_world(ego_z, ego_s)
    rot = _camera_rotation(road.yaw(ego_z) + yaw_offset, pitch, roll)
    left = _Camera((float(x), float(layout.camera_height), float(z)), rot, intr)
    shift = rot @ np.array([intr.baseline_m, 0.0, 0.0])
    right = _Camera(tuple(float(c) for c in np.asarray(left.origin) + shift), rot, intr)
    return left, right


def _render_view(scene: _Compiled, cam: _Camera, ego: _Camera, rng: np.random.Generator):
    view, rays = _render_geometry(scene, cam)
    rgb, luminance = _shade_rgb(scene, cam, view, rays, ego, rng)
    return view, rays, rgb, luminance


def _render(scene: _Compiled, left: _Camera, right: _Camera, rng: np.random.Generator,
            stamp_ns: int, extras: dict) -> SyntheticScene:
    left_rng, right_rng, sensor_rng = rng.spawn(3)
    view, rays, rgb, luminance = _render_view(scene, left, left, left_rng)
    right_rgb = _render_view(scene, right, left, right_rng)[2]
    thermal = _shade_thermal(scene, view, rays, sensor_rng)
    depth = _sense_depth(scene, view, luminance, sensor_rng)
    labels = np.take(scene.materials["label"], view.mat)
    parts = np.take(scene.materials["part"], view.mat)
    frame = SensorFrame(rgb=rgb, stamp_ns=int(stamp_ns), frame_id=FRAME_ID, right_rgb=right_rgb, depth=depth,
                        thermal=thermal, intrinsics=left.intr,
                        extras={**extras, "depth_gt": view.depth, "parts": parts, "condition": scene.look.condition})
    return SyntheticScene(frame=frame, labels=labels, condition=scene.look.condition)


def _check_size(width: int, height: int) -> None:
    if width < 16 or height < 16:
        raise ValueError(f"image size {width}x{height} is too small; need at least 16x16")


def _check_condition(condition: str) -> None:
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; expected one of {', '.join(CONDITIONS)}")


def _streams(seed: int) -> list[np.random.Generator]:
    """Independent generators: layout, condition choice, look, per-frame noise (so one can change alone)."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(4)]


def render_scene(seed: int, width: int = 640, height: int = 360, condition: str | None = None) -> SyntheticScene:
    """Render one random road scene; identical for identical arguments.

    The seed fixes the road, camera mounting and obstacles (independently of the image size); `condition`
    ("day", "night", "fog") changes only lighting and sensor behaviour, and when None is drawn from the seed
    (60 % day, 20 % night, 20 % fog).
    """
    _check_size(width, height)
    layout_rng, cond_rng, look_rng, noise_rng = _streams(seed)
    if condition is None:
        condition = str(cond_rng.choice(CONDITIONS, p=CONDITION_WEIGHTS))
    _check_condition(condition)
    layout = _make_layout(layout_rng)
    placer = _Placer(layout, keep_ego_lane_clear=False)
    _populate(layout, layout_rng, 4.0, 40.0, _NEAR_RATES, placer)
    _populate(layout, layout_rng, 40.0, 110.0, _FAR_RATES, placer)
    _populate_background(layout, layout_rng, -5.0, 140.0)
    _populate_hills(layout, layout_rng, 0.0)
    look = _make_look(look_rng, condition, layout)
    intr = intrinsics_for(width, height)
    left, right = _cameras(layout, intr, 0.0, layout.ego_s, layout.pitch, layout.roll, layout.yaw_offset)
    scene = _compile(layout, look, 0.0)
    extras = {"seed": int(seed), "camera_height_m": layout.camera_height,
              "camera_pitch_deg": math.degrees(layout.pitch)}
    return _render(scene, left, right, noise_rng, 0, extras)


class SceneStream:
    """Successive frames of one synthetic drive (an endless iterator unless `num_frames` is given).

    The ego car follows its lane at constant speed with a little steering wobble and suspension pitch; other
    vehicles drive along their lanes, pedestrians walk along the verges, static obstacles stay put, and new road
    ahead is populated as the car advances, so playback looks like video. Static positive obstacles keep out of
    the ego lane (nobody drives through them); potholes may be in it. The condition is drawn once per drive from
    `conditions` by the seed (weighted like `render_scene`'s default: day is most common), or, with
    `frames_per_condition`, cycles through `conditions` in order. `stamp_ns` advances by 1/fps per frame and
    `frame.extras` carries `frame_index` and `ego_z_m` (distance driven).
    """

    def __init__(self, seed: int, width: int = 640, height: int = 360, conditions: Sequence[str] = ("day",),
                 fps: float = 15.0, speed_mps: float | None = None, frames_per_condition: int | None = None,
                 num_frames: int | None = None):
        _check_size(width, height)
        conditions = tuple(conditions)
        if not conditions:
            raise ValueError("conditions must name at least one condition")
        for c in conditions:
            _check_condition(c)
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if frames_per_condition is not None and frames_per_condition < 1:
            raise ValueError(f"frames_per_condition must be >= 1, got {frames_per_condition}")
        self.seed, self.fps, self.num_frames = int(seed), float(fps), num_frames
        self.frames_per_condition = frames_per_condition
        self.intrinsics = intrinsics_for(width, height)
        layout_rng, cond_rng, look_rng, noise_rng = _streams(seed)
        self._rng, self._look_rng = layout_rng, look_rng
        self._noise_seed = int(noise_rng.integers(2**63 - 1))
        self.conditions = conditions
        weights = np.array([CONDITION_WEIGHTS[CONDITIONS.index(c)] for c in conditions])
        self._drive_condition = conditions[int(cond_rng.choice(len(conditions), p=weights / weights.sum()))]
        self.layout = _make_layout(layout_rng)
        self.speed = float(speed_mps if speed_mps is not None else layout_rng.uniform(7.0, 15.0))
        self._placer = _Placer(self.layout, keep_ego_lane_clear=True)
        self._wobble = layout_rng.uniform(0, 2 * math.pi, 3)
        self._looks: dict[str, _Look] = {}
        self.ego_z = 0.0
        self.frame_index = 0
        self._populated_to = 4.0
        self._background_to = -10.0
        _populate_hills(self.layout, layout_rng, 0.0)
        self._extend()

    @property
    def condition(self) -> str:
        """Condition of the next frame."""
        if self.frames_per_condition is None:
            return self._drive_condition
        return self.conditions[(self.frame_index // self.frames_per_condition) % len(self.conditions)]

    def _look(self, condition: str) -> _Look:
        if condition not in self._looks:
            self._looks[condition] = _make_look(self._look_rng, condition, self.layout)
        return self._looks[condition]

    def _extend(self) -> None:
        """Populate road ahead and forget what is far behind."""
        ahead = self.ego_z + 110.0
        while self._populated_to < ahead:
            z0 = self._populated_to
            _populate(self.layout, self._rng, z0, z0 + 20.0, _DRIVE_RATES, self._placer, ego_speed=self.speed)
            self._populated_to += 20.0
        while self._background_to < self.ego_z + 140.0:
            _populate_background(self.layout, self._rng, self._background_to, self._background_to + 20.0)
            self._background_to += 20.0
        behind = self.ego_z - 12.0
        lay = self.layout
        lay.vehicles = [v for v in lay.vehicles if behind < v.z < self.ego_z + 250.0]
        lay.pedestrians = [p for p in lay.pedestrians if p.z > behind]
        lay.cones = [c for c in lay.cones if c.z > behind]
        lay.potholes = [p for p in lay.potholes if p.z > behind]
        lay.buildings = [b for b in lay.buildings if b.z + 0.5 * b.length > behind]
        lay.trees = [t for t in lay.trees if t.z > behind]
        self._placer.footprints = [f for f in self._placer.footprints if f[0] > behind]

    def _advance(self, dt: float) -> None:
        self.ego_z += self.speed * dt
        for v in self.layout.vehicles:
            v.z += v.direction * v.speed * dt
        for p in self.layout.pedestrians:
            p.z += p.speed * dt
            p.stride_phase += abs(p.speed) * dt * 4.0
        self._extend()

    def skip(self, frames: int) -> None:
        """Move the drive on by `frames` frames without rendering them (to sample a long drive sparsely)."""
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        if frames == 0:
            return
        # The car stands where frame `frame_index - 1` was rendered (at the start before frame 0) and moves
        # one frame on before each render, so it travels one frame less when nothing has been rendered yet.
        travel = frames if self.frame_index > 0 else frames - 1
        if travel:
            self._advance(travel / self.fps)
        self.frame_index += frames

    def __iter__(self) -> Iterator[SyntheticScene]:
        return self

    def __next__(self) -> SyntheticScene:
        if self.num_frames is not None and self.frame_index >= self.num_frames:
            raise StopIteration
        if self.frame_index > 0:
            self._advance(1.0 / self.fps)
        lay, i = self.layout, self.frame_index
        t = i / self.fps
        w0, w1, w2 = self._wobble
        ego_s = lay.ego_s + 0.15 * math.sin(0.4 * t + w0)
        pitch = lay.pitch + math.radians(0.25 * math.sin(9.0 * t + w1) + 0.1 * math.sin(3.1 * t + w2))
        yaw = lay.yaw_offset + math.radians(0.6 * math.sin(0.4 * t + w0 + 1.0))
        left, right = _cameras(lay, self.intrinsics, self.ego_z, ego_s, pitch, lay.roll, yaw)
        look = self._look(self.condition)
        scene = _compile(lay, look, self.ego_z)
        rng = np.random.default_rng([self._noise_seed, i])
        extras = {"seed": self.seed, "frame_index": i, "ego_z_m": self.ego_z,
                  "camera_height_m": lay.camera_height, "camera_pitch_deg": math.degrees(pitch)}
        out = _render(scene, left, right, rng, stamp_ns=int(round(i * 1e9 / self.fps)), extras=extras)
        self.frame_index += 1
        return out
