"""Deterministic synthetic driving scenes: stereo colour, depth, thermal and exact labels from one ray cast.

Why it exists: the simulated sensors, the demo, training and the tests need multi-modal frames whose labels are
exact and whose modalities disagree the way real sensors do. Potholes are nearly invisible in colour but dip in
depth; pedestrians and cars at night are dark in colour and lost by stereo but bright in thermal; lane paint only
exists in colour. Scenes depend only on the seed (not the image size), so one seed rendered at 1280x720 and
320x180 shows the same scene.

Modules, in the order a frame is made: `world` (what a scene contains), `populate` (drawing it from a seed),
`conditions` (day / night / fog looks), `materials`, `camera` (stereo rig and rays), `primitives`, `scene`
(one frame's world compiled for ray casting), `raycast` (geometry), `render_rgb` / `render_thermal` /
`render_depth` (the sensors), `render` (one frame; `render_scene`), `stream` (drives), `showcase` (the scripted
drive sim_sensors plays by default), `noise` (shared random fields).
"""
from .camera import BASELINE_M, FRAME_ID
from .conditions import CONDITIONS
from .materials import PART_LABELS, PART_NAMES
from .render import SyntheticScene, render_scene
from .stream import SceneStream

__all__ = [
    "BASELINE_M",
    "CONDITIONS",
    "FRAME_ID",
    "PART_LABELS",
    "PART_NAMES",
    "SceneStream",
    "SyntheticScene",
    "render_scene",
]
