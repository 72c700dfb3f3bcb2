"""One rendered frame from a compiled scene and a stereo rig, and `render_scene` for independent scenes.

Every modality comes from the same ray cast, so labels are exact and the modalities disagree only the way real
sensors do (noise, holes, darkness), never in geometry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..frames import SensorFrame
from .camera import FRAME_ID, Camera, Rays, intrinsics_for, stereo_cameras
from .conditions import CONDITION_WEIGHTS, CONDITIONS, check_condition, make_look
from .populate import FAR_RATES, NEAR_RATES, Placer, make_layout, populate, populate_background, populate_hills
from .raycast import View, render_geometry
from .render_depth import sense_depth
from .render_rgb import shade_rgb
from .render_thermal import shade_thermal
from .scene import CompiledScene, compile_scene


@dataclass
class SyntheticScene:
    """One rendered frame: sensor data as the car would see it, plus exact per-pixel labels.

    `frame` holds rgb / right_rgb (uint8 RGB), depth (float32 metres, NaN = no measurement), thermal (uint16
    Boson-like counts, left image size and viewpoint: an identity thermal homography registers it) and ZED-like
    intrinsics. `frame.extras` adds ground truth for evaluation: "depth_gt" (noise-free float32 Z, inf on the
    sky), "parts" (uint8 index into `PART_NAMES` per pixel), "pothole_ids" (uint16 per pixel: 0, or the number of
    the pothole it shows, so a crack that renders as a row of separate dashes is still one pothole), "seed",
    "condition" and the camera mounting.
    `labels` is HxW uint8 in the node label space (`road_seg_core.labels`).
    """

    frame: SensorFrame
    labels: np.ndarray
    condition: str


def _render_view(scene: CompiledScene, cam: Camera, ego: Camera, rng: np.random.Generator
                 ) -> tuple[View, Rays, np.ndarray, np.ndarray | None]:
    view, rays = render_geometry(scene, cam)
    rgb, luminance = shade_rgb(scene, cam, view, rays, ego, rng)
    return view, rays, rgb, luminance


def render_frame(scene: CompiledScene, left: Camera, right: Camera, rng: np.random.Generator,
                 stamp_ns: int, extras: dict) -> SyntheticScene:
    left_rng, right_rng, sensor_rng = rng.spawn(3)
    view, rays, rgb, luminance = _render_view(scene, left, left, left_rng)
    right_rgb = _render_view(scene, right, left, right_rng)[2]
    thermal = shade_thermal(scene, view, rays, sensor_rng)
    depth = sense_depth(scene, view, luminance, sensor_rng)
    labels = np.take(scene.materials["label"], view.mat)
    parts = np.take(scene.materials["part"], view.mat)
    pothole_ids = np.take(scene.materials["instance"], view.mat)
    frame = SensorFrame(rgb=rgb, stamp_ns=int(stamp_ns), frame_id=FRAME_ID, right_rgb=right_rgb, depth=depth,
                        thermal=thermal, intrinsics=left.intr,
                        extras={**extras, "depth_gt": view.depth, "parts": parts, "pothole_ids": pothole_ids,
                                "condition": scene.look.condition})
    return SyntheticScene(frame=frame, labels=labels, condition=scene.look.condition)


def check_size(width: int, height: int) -> None:
    if width < 16 or height < 16:
        raise ValueError(f"image size {width}x{height} is too small; need at least 16x16")


def seed_streams(seed: int) -> list[np.random.Generator]:
    """Independent generators: layout, condition choice, look, per-frame noise (so one can change alone)."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(4)]


def render_scene(seed: int, width: int = 640, height: int = 360, condition: str | None = None) -> SyntheticScene:
    """Render one random road scene; identical for identical arguments.

    The seed fixes the road, camera mounting and obstacles (independently of the image size); `condition`
    ("day", "night", "fog") changes only lighting and sensor behaviour, and when None is drawn from the seed
    (60 % day, 20 % night, 20 % fog).
    """
    check_size(width, height)
    layout_rng, cond_rng, look_rng, noise_rng = seed_streams(seed)
    if condition is None:
        condition = str(cond_rng.choice(CONDITIONS, p=CONDITION_WEIGHTS))
    check_condition(condition)
    layout = make_layout(layout_rng)
    placer = Placer(layout, keep_ego_lane_clear=False)
    populate(layout, layout_rng, 4.0, 40.0, NEAR_RATES, placer)
    populate(layout, layout_rng, 40.0, 110.0, FAR_RATES, placer)
    populate_background(layout, layout_rng, -5.0, 140.0)
    populate_hills(layout, layout_rng, 0.0)
    look = make_look(look_rng, condition, layout)
    intr = intrinsics_for(width, height)
    left, right = stereo_cameras(layout, intr, 0.0, layout.ego_s, layout.pitch, layout.roll, layout.yaw_offset)
    scene = compile_scene(layout, look, 0.0)
    extras = {"seed": int(seed), "camera_height_m": layout.camera_height,
              "camera_pitch_deg": math.degrees(layout.pitch)}
    return render_frame(scene, left, right, noise_rng, 0, extras)
