"""A drive that shows everything: a kerbed two-way street with one of each obstacle kind every few tens of metres.

Why: the demo and sim_sensors' default drive last seconds, and random population (`populate`) may go that long
without a cone group or a pothole in view, or on a road without kerbs. Here the road is drawn until it has kerbs
and an oncoming lane, and a scripted set (two potholes in the ego lane, a pedestrian on the sidewalk, cones along
the kerb, an oncoming vehicle) is placed every `SHOWCASE_SPACING_M`, so about two sets are in view at any time. All
draws come from the drive's seed, so the drive is deterministic; random objects still fill the road around them.
Everything but the oncoming vehicle is on the ego car's side, where nothing in the other lanes can hide it.
"""
from __future__ import annotations

import numpy as np

from .populate import Placer, make_layout, make_pedestrian, make_pothole, make_vehicle, pothole_shape, vehicle_shape
from .world import Layout, TrafficCone

#: Distance between scripted sets, and where the first one starts ahead of the car.
SHOWCASE_SPACING_M = 25.0
SHOWCASE_FIRST_M = 5.0
#: Scripted sets are placed this far ahead of the random population, so random objects (a cone group reaches
#: about 36 m past its first cone) never take their places.
SHOWCASE_LEAD_M = 60.0
#: Where each scripted object goes, metres past the start of its set: far enough apart that they do not block
#: each other's places (only the oncoming vehicle may, rarely, yield to a large pothole).
_POTHOLE_OFFSETS_M = (0.0, 12.5)
_PEDESTRIAN_OFFSET_M = 6.0
_CONE_OFFSETS_M = (16.0, 18.5, 21.0)
_VEHICLE_OFFSET_M = 22.0
#: Random obstacles per metre around the scripted sets: sparser than a plain drive's (`populate.DRIVE_RATES`), so a
#: showcase frame holds not many more objects, and costs not much more to render, than a plain one.
SHOWCASE_RATES = {"vehicle": 0.03, "pedestrian": 0.015, "pothole": 0.01}


def showcase_layout(rng: np.random.Generator) -> Layout:
    """The first layout the seed draws that can show everything: a kerbed street with an oncoming lane."""
    for _ in range(1000):  # over a third of layouts qualify
        layout = make_layout(rng)
        if layout.road.kerb and layout.road.oncoming_lanes >= 1:
            return layout
    raise RuntimeError("no kerbed two-way street in 1000 layouts")  # odds below 1e-190: a bug, not bad luck


def place_showcase_set(layout: Layout, rng: np.random.Generator, z: float, placer: Placer) -> None:
    """One set from z on (offsets above): potholes in the ego lane, a pedestrian walking on the near sidewalk,
    three cones just behind the near kerb, and an oncoming vehicle in the leftmost lane."""
    road = layout.road
    hw = road.half_width
    for offset in _POTHOLE_OFFSETS_M:
        shape = pothole_shape(rng, crack=False)
        reach = max(shape[0], shape[1]) + 0.15
        s = float(np.clip(road.lane_centre(layout.ego_lane) + rng.uniform(-0.3, 0.3), -hw + reach, hw - reach))
        if placer.free(z + offset, s, reach, reach):
            placer.footprints.append((z + offset, s, reach, reach))
            layout.potholes.append(make_pothole(rng, z + offset, s, shape))

    # Far enough into the sidewalk that walking past the cones never touches them.
    s = hw + road.kerb_width + float(rng.uniform(0.5, 0.8)) * road.sidewalk_width
    height = float(rng.uniform(1.5, 1.92))
    if placer.claim(z + _PEDESTRIAN_OFFSET_M, s, 0.35, 0.35):
        layout.pedestrians.append(make_pedestrian(rng, z + _PEDESTRIAN_OFFSET_M, s, height, walking=True))

    height = float(rng.uniform(0.7, 1.0))
    s = hw + road.kerb_width + 0.1
    for offset in _CONE_OFFSETS_M:
        if placer.claim(z + offset, s, 0.25, 0.25):
            layout.cones.append(TrafficCone(z=z + offset, s=s, height=height, radius=height * 0.28))

    shape_v = vehicle_shape(rng)
    zv, sv = z + _VEHICLE_OFFSET_M + 0.5 * shape_v[1], road.lane_centre(0)
    if placer.claim(zv, sv, 0.5 * shape_v[1], 0.5 * shape_v[2], static=False):
        layout.vehicles.append(make_vehicle(rng, zv, sv, shape_v, -1, float(rng.uniform(8.0, 12.0)), True))
