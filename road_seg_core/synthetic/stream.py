"""Successive frames of one synthetic drive, for the simulated sensors, bag recording and training drives."""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np

from .camera import intrinsics_for, stereo_cameras
from .conditions import CONDITION_WEIGHTS, CONDITIONS, Look, check_condition, make_look
from .populate import DRIVE_RATES, Placer, make_layout, populate, populate_background, populate_hills
from .render import SyntheticScene, check_size, render_frame, seed_streams
from .scene import compile_scene
from .showcase import (SHOWCASE_FIRST_M, SHOWCASE_LEAD_M, SHOWCASE_RATES, SHOWCASE_SPACING_M,
                       place_showcase_set, showcase_layout)


class SceneStream:
    """Successive frames of one synthetic drive (an endless iterator unless `num_frames` is given).

    The ego car follows its lane at constant speed with a little steering wobble and suspension pitch; other
    vehicles drive along their lanes, pedestrians walk along the verges, static obstacles stay put, and new road
    ahead is populated as the car advances, so playback looks like video. Static positive obstacles keep out of
    the ego lane (nobody drives through them); potholes may be in it. The condition is drawn once per drive from
    `conditions` by the seed (weighted like `render_scene`'s default: day is most common), or, with
    `frames_per_condition`, cycles through `conditions` in order. `stamp_ns` advances by 1/fps per frame and
    `frame.extras` carries `frame_index` and `ego_z_m` (distance driven).

    `showcase` (sim_sensors' default drive) makes the road a kerbed two-way street and adds one obstacle of each
    kind every `showcase.SHOWCASE_SPACING_M` (see `road_seg_core.synthetic.showcase`), so a few seconds of it,
    cycled through the conditions, show everything; without it drives are as random as the seed makes them.
    """

    def __init__(self, seed: int, width: int = 640, height: int = 360, conditions: Sequence[str] = ("day",),
                 fps: float = 15.0, speed_mps: float | None = None, frames_per_condition: int | None = None,
                 num_frames: int | None = None, showcase: bool = False):
        check_size(width, height)
        conditions = tuple(conditions)
        if not conditions:
            raise ValueError("conditions must name at least one condition")
        for c in conditions:
            check_condition(c)
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if frames_per_condition is not None and frames_per_condition < 1:
            raise ValueError(f"frames_per_condition must be >= 1, got {frames_per_condition}")
        self.seed, self.fps, self.num_frames = int(seed), float(fps), num_frames
        self.frames_per_condition = frames_per_condition
        self.intrinsics = intrinsics_for(width, height)
        layout_rng, cond_rng, look_rng, noise_rng = seed_streams(seed)
        self._rng, self._look_rng = layout_rng, look_rng
        self._noise_seed = int(noise_rng.integers(2**63 - 1))
        self.conditions = conditions
        weights = np.array([CONDITION_WEIGHTS[CONDITIONS.index(c)] for c in conditions])
        self._drive_condition = conditions[int(cond_rng.choice(len(conditions), p=weights / weights.sum()))]
        self.showcase = bool(showcase)
        self.layout = showcase_layout(layout_rng) if self.showcase else make_layout(layout_rng)
        self.speed = float(speed_mps if speed_mps is not None else layout_rng.uniform(7.0, 15.0))
        self._placer = Placer(self.layout, keep_ego_lane_clear=True)
        self._wobble = layout_rng.uniform(0, 2 * math.pi, 3)
        self._looks: dict[str, Look] = {}
        self.ego_z = 0.0
        self.frame_index = 0
        self._populated_to = 4.0
        self._background_to = -10.0
        self._showcase_to = SHOWCASE_FIRST_M if self.showcase else math.inf  # where the next scripted set goes
        self._rates = SHOWCASE_RATES if self.showcase else DRIVE_RATES
        populate_hills(self.layout, layout_rng, 0.0)
        self._extend()

    @property
    def condition(self) -> str:
        """Condition of the next frame."""
        if self.frames_per_condition is None:
            return self._drive_condition
        return self.conditions[(self.frame_index // self.frames_per_condition) % len(self.conditions)]

    def _look(self, condition: str) -> Look:
        if condition not in self._looks:
            self._looks[condition] = make_look(self._look_rng, condition, self.layout)
        return self._looks[condition]

    def _extend(self) -> None:
        """Populate road ahead and forget what is far behind."""
        ahead = self.ego_z + 110.0
        while self._populated_to < ahead:
            z0 = self._populated_to
            while self._showcase_to < z0 + SHOWCASE_LEAD_M:  # scripted sets claim their places first
                place_showcase_set(self.layout, self._rng, self._showcase_to, self._placer)
                self._showcase_to += SHOWCASE_SPACING_M
            populate(self.layout, self._rng, z0, z0 + 20.0, self._rates, self._placer, ego_speed=self.speed)
            self._populated_to += 20.0
        while self._background_to < self.ego_z + 140.0:
            populate_background(self.layout, self._rng, self._background_to, self._background_to + 20.0)
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
        left, right = stereo_cameras(lay, self.intrinsics, self.ego_z, ego_s, pitch, lay.roll, yaw)
        look = self._look(self.condition)
        scene = compile_scene(lay, look, self.ego_z)
        rng = np.random.default_rng([self._noise_seed, i])
        extras = {"seed": self.seed, "frame_index": i, "ego_z_m": self.ego_z,
                  "camera_height_m": lay.camera_height, "camera_pitch_deg": math.degrees(pitch)}
        out = render_frame(scene, left, right, rng, stamp_ns=int(round(i * 1e9 / self.fps)), extras=extras)
        self.frame_index += 1
        return out
