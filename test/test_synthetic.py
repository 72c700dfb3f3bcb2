"""Synthetic scene generator: determinism, sensor formats, geometry and the cues each modality carries."""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from road_seg_core import labels as L
from road_seg_core.synthetic import (
    BASELINE_M,
    CONDITIONS,
    FRAME_ID,
    PART_LABELS,
    PART_NAMES,
    SceneStream,
    render_scene,
)

W, H = 192, 112  # small: every test renders in milliseconds
SIM_CONFIG = Path(__file__).resolve().parents[1] / "config" / "sim_sensors.yaml"


def _part(scene, name: str) -> np.ndarray:
    return scene.frame.extras["parts"] == PART_NAMES.index(name)


def _first_seed_with(predicate, seeds=range(60), **kwargs):
    for seed in seeds:
        scene = render_scene(seed, W, H, **kwargs)
        if predicate(scene):
            return scene
    raise AssertionError("no seed in range produced the wanted scene")


def test_same_seed_gives_identical_scene_and_other_seeds_differ():
    a, b = render_scene(7, W, H), render_scene(7, W, H)
    fa, fb = a.frame, b.frame
    assert a.condition == b.condition
    np.testing.assert_array_equal(fa.rgb, fb.rgb)
    np.testing.assert_array_equal(fa.right_rgb, fb.right_rgb)
    np.testing.assert_array_equal(fa.depth, fb.depth)  # NaNs compare equal here
    np.testing.assert_array_equal(fa.thermal, fb.thermal)
    np.testing.assert_array_equal(a.labels, b.labels)
    c = render_scene(8, W, H)
    assert not np.array_equal(a.labels, c.labels)
    assert not np.array_equal(fa.rgb, c.frame.rgb)


def test_sensor_formats_and_intrinsics():
    scene = render_scene(3, W, H, "day")
    f = scene.frame
    assert f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8
    assert f.right_rgb.shape == (H, W, 3) and f.right_rgb.dtype == np.uint8
    assert f.depth.shape == (H, W) and f.depth.dtype == np.float32
    assert f.thermal.shape == (H, W) and f.thermal.dtype == np.uint16
    assert scene.labels.shape == (H, W) and scene.labels.dtype == np.uint8
    assert set(np.unique(scene.labels)) <= {L.BACKGROUND, L.DRIVABLE, L.POSITIVE_OBSTACLE, L.NEGATIVE_OBSTACLE}
    assert f.frame_id == FRAME_ID and f.stamp_ns == 0 and scene.condition == "day"
    intr = f.intrinsics
    assert (intr.width, intr.height) == (W, H)
    assert intr.baseline_m == pytest.approx(BASELINE_M)
    assert intr.fx == pytest.approx(intr.fy) and 0.4 * W < intr.fx < 0.7 * W
    assert intr.cx == pytest.approx((W - 1) / 2) and intr.cy == pytest.approx((H - 1) / 2)
    # Boson-like raw counts, not a normalised image.
    assert 6000 < np.percentile(f.thermal, 1) and np.percentile(f.thermal, 99) < 10000
    assert np.ptp(f.thermal) > 300
    valid = np.isfinite(f.depth)
    assert 0.2 < valid.mean() < 0.95
    assert np.nanmin(f.depth) >= 0.25 and np.nanmax(f.depth) <= 45.0


def test_pothole_ids_name_each_pothole_on_exactly_its_pixels():
    """Ids are > 0 exactly on pothole pixels (floor and wall alike)."""
    for seed in range(40):
        scene = render_scene(seed, W, H, condition="day")
        ids = scene.frame.extras["pothole_ids"]
        np.testing.assert_array_equal(ids > 0, _part(scene, "pothole"))
        if (ids > 0).any():
            break
    else:
        pytest.fail("no pothole in 40 scenes")
    assert ids.dtype == np.uint16 and ids.shape == scene.labels.shape


def test_labels_follow_parts():
    scene = render_scene(5, W, H)
    parts = scene.frame.extras["parts"]
    expected = np.array([PART_LABELS[n] for n in PART_NAMES], dtype=np.uint8)[parts]
    np.testing.assert_array_equal(scene.labels, expected)


def test_condition_argument():
    with pytest.raises(ValueError, match="condition"):
        render_scene(0, W, H, "snow")
    drawn = {render_scene(seed, 32, 24).condition for seed in range(30)}
    assert drawn == set(CONDITIONS)
    # The condition changes lighting and sensors only, never the scene itself.
    day, night = render_scene(11, W, H, "day"), render_scene(11, W, H, "night")
    np.testing.assert_array_equal(day.labels, night.labels)
    np.testing.assert_array_equal(day.frame.extras["depth_gt"], night.frame.extras["depth_gt"])


def test_every_class_appears_over_a_few_seeds():
    seen = np.zeros(4, dtype=int)
    for seed in range(6):
        scene = render_scene(seed, W, H)
        present = np.bincount(scene.labels.ravel(), minlength=4) > 0
        assert present[L.BACKGROUND] and present[L.DRIVABLE]
        seen += present
    assert (seen > 0).all(), seen
    assert seen[L.POSITIVE_OBSTACLE] >= 5


def test_scene_does_not_depend_on_resolution():
    small, large = render_scene(4, 160, 90), render_scene(4, 320, 180)
    down = cv2.resize(large.labels, (160, 90), interpolation=cv2.INTER_NEAREST_EXACT)
    assert (down == small.labels).mean() > 0.95


def test_pothole_depth_dips_below_the_road_around_it():
    scene = _first_seed_with(lambda s: (s.labels == L.NEGATIVE_OBSTACLE).sum() > 40)
    z_gt, z = scene.frame.extras["depth_gt"], scene.frame.depth
    rows_checked = deeper = deeper_measured = 0
    ratios = []
    for row in np.flatnonzero((scene.labels == L.NEGATIVE_OBSTACLE).any(axis=1)):
        hole = np.flatnonzero(scene.labels[row] == L.NEGATIVE_OBSTACLE)
        around = np.zeros(W, dtype=bool)
        around[max(hole.min() - 12, 0):hole.min()] = True
        around[hole.max() + 1:hole.max() + 13] = True
        around &= scene.labels[row] == L.DRIVABLE
        if around.sum() < 3:
            continue
        rows_checked += 1
        # On flat ground an image row has (nearly) one depth, so the road beside the hole is the reference.
        ratios.append(np.median(z_gt[row, hole]) / np.median(z_gt[row, around]))
        deeper += ratios[-1] > 1.0
        deeper_measured += np.nanmedian(z[row, hole]) > np.nanmedian(z[row, around])
    assert rows_checked >= 3
    assert deeper >= 0.9 * rows_checked
    assert np.mean(ratios) > 1.02
    assert deeper_measured >= 0.7 * rows_checked


def test_right_image_is_the_left_seen_from_the_baseline():
    scene = render_scene(2, 320, 180, "day")
    f = scene.frame
    disparity = f.intrinsics.fx * f.intrinsics.baseline_m / f.extras["depth_gt"]  # 0 for the sky
    h, w = disparity.shape
    map_x = (np.arange(w, dtype=np.float32)[None, :] - disparity).astype(np.float32)
    map_y = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
    warped = cv2.remap(f.right_rgb, map_x, map_y, cv2.INTER_LINEAR)
    road = (scene.labels == L.DRIVABLE) & (map_x > 1)
    err_warped = np.abs(warped.astype(np.float32) - f.rgb)[road].mean()
    err_plain = np.abs(f.right_rgb.astype(np.float32) - f.rgb)[road].mean()
    assert err_warped < 6.0 and err_warped < 0.5 * err_plain
    # And a standard matcher recovers fx * B / Z on the textured road.
    left, right = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (f.rgb, f.right_rgb))
    sgbm = cv2.StereoSGBM_create(0, 48, 5, P1=8 * 25, P2=32 * 25, uniquenessRatio=5)
    measured = sgbm.compute(left, right).astype(np.float32) / 16.0
    ok = road & (measured > 0) & (disparity > 2)
    ok[:, :48] = False
    assert ok.sum() > 2000
    assert np.median(np.abs(measured[ok] - disparity[ok])) < 0.6


def test_depth_is_noisy_metric_with_holes():
    scene = render_scene(9, 320, 180, "day")
    z, z_gt = scene.frame.depth, scene.frame.extras["depth_gt"]
    sky = scene.frame.extras["parts"] == PART_NAMES.index("sky")
    assert np.isnan(z[sky]).all()
    assert np.isnan(z[np.isfinite(z_gt) & (z_gt > 45.0)]).all()
    valid = np.isfinite(z)
    rel = z[valid] / z_gt[valid] - 1.0
    assert 0.003 < np.std(rel) < 0.03 and abs(np.median(rel)) < 0.005
    near = np.isfinite(z_gt) & (z_gt < 15.0)
    holes = np.isnan(z[near]).mean()
    assert 0.005 < holes < 0.2  # ZED-like speckle and blobs, not a clean range image


def test_night_is_dark_and_loses_stereo_depth():
    for seed in (1, 12):
        day, night = render_scene(seed, W, H, "day"), render_scene(seed, W, H, "night")
        assert night.frame.rgb.mean() < 0.5 * day.frame.rgb.mean()
        assert np.isfinite(night.frame.depth).mean() < np.isfinite(day.frame.depth).mean()


def test_fog_washes_out_distant_colour():
    scene = render_scene(6, W, H, "fog")
    clear = render_scene(6, W, H, "day")
    far = np.isfinite(scene.frame.extras["depth_gt"]) & (scene.frame.extras["depth_gt"] > 40.0)
    far |= _part(scene, "sky")
    assert far.sum() > 100
    assert scene.frame.rgb[far].std(axis=0).mean() < 0.5 * clear.frame.rgb[far].std(axis=0).mean()


@pytest.mark.parametrize("condition", ["day", "night"])
def test_thermal_vehicles_are_warmer_than_the_road(condition):
    scene = _first_seed_with(lambda s: _part(s, "vehicle").sum() > 150, condition=condition)
    thermal = scene.frame.thermal.astype(np.float32)
    road = scene.labels == L.DRIVABLE
    assert np.median(thermal[_part(scene, "vehicle")]) > np.median(thermal[road]) + 50


def test_night_pedestrians_show_in_thermal_not_in_colour():
    def distant_people(scene):
        return _part(scene, "pedestrian") & (scene.frame.extras["depth_gt"] > 12.0)

    night = _first_seed_with(lambda s: distant_people(s).sum() > 25, condition="night")
    day = render_scene(night.frame.extras["seed"], W, H, "day")
    people = distant_people(night)
    background = night.labels == L.BACKGROUND
    thermal = night.frame.thermal.astype(np.float32)
    assert np.median(thermal[people]) > np.percentile(thermal[background], 90)
    assert night.frame.rgb[people].mean() < 0.5 * day.frame.rgb[people].mean()


def test_potholes_are_subtle_in_colour():
    scene = _first_seed_with(lambda s: (s.labels == L.NEGATIVE_OBSTACLE).sum() > 40, condition="day")
    grey = scene.frame.rgb.astype(np.float32).mean(axis=2)
    hole = scene.labels == L.NEGATIVE_OBSTACLE
    rows = np.flatnonzero(hole.any(axis=1))
    asphalt = _part(scene, "road") & np.isin(np.arange(H), rows)[:, None]
    ratio = grey[hole].mean() / grey[asphalt].mean()
    assert 0.85 < ratio < 1.0


def test_potholes_are_subtle_in_thermal():
    """Under 1 K (30 counts) against the asphalt around them: depth, not thermal, must find a pothole."""
    found = 0
    for seed in range(40):
        scene = render_scene(seed, 320, 180)
        hole = _part(scene, "pothole")
        if hole.sum() < 50:
            continue
        ring = cv2.dilate(hole.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & _part(scene, "road")
        thermal = scene.frame.thermal.astype(np.float32)
        assert abs(thermal[hole].mean() - thermal[ring].mean()) < 30, seed
        found += 1
    assert found >= 5


def test_stream_advances_in_time_and_space_and_repeats_per_seed():
    stream = SceneStream(5, W, H, conditions=("day",), fps=10.0)
    frames = list(itertools.islice(stream, 4))
    stamps = [f.frame.stamp_ns for f in frames]
    assert stamps == [0, 100_000_000, 200_000_000, 300_000_000]
    ego = [f.frame.extras["ego_z_m"] for f in frames]
    assert np.all(np.diff(ego) > 0.3)
    for a, b in zip(frames, frames[1:]):
        assert not np.array_equal(a.frame.rgb, b.frame.rgb)
        assert not np.array_equal(a.labels, b.labels)
        # The same world, a little further on: most pixels keep their class.
        assert (a.labels == b.labels).mean() > 0.85
    again = list(itertools.islice(SceneStream(5, W, H, conditions=("day",), fps=10.0), 4))
    for a, b in zip(frames, again):
        np.testing.assert_array_equal(a.frame.rgb, b.frame.rgb)


def test_stream_skip_lands_where_rendering_every_frame_would():
    rendered = list(itertools.islice(SceneStream(5, W, H, conditions=("day",), fps=10.0), 7))
    for start in (0, 2):
        stream = SceneStream(5, W, H, conditions=("day",), fps=10.0)
        for _ in range(start):
            next(stream)
        stream.skip(3)
        frame = next(stream)
        expected = rendered[start + 3]
        assert frame.frame.extras["frame_index"] == start + 3
        assert frame.frame.stamp_ns == expected.frame.stamp_ns
        assert frame.frame.extras["ego_z_m"] == pytest.approx(expected.frame.extras["ego_z_m"])
        # The same place in the same drive (objects placed ahead may differ in detail).
        assert (frame.labels == expected.labels).mean() > 0.9
    with pytest.raises(ValueError):
        SceneStream(5, W, H).skip(-1)


def test_stream_objects_persist_between_frames():
    def covered(previous, current):
        """Share of this frame's pixels of a kind that were of that kind a few pixels away in the last frame."""
        near = cv2.dilate(previous.astype(np.uint8), np.ones((11, 11), np.uint8)).astype(bool)
        return (current & near).sum() / max(current.sum(), 1)

    kinds = ("vehicle", "pedestrian")
    for seed in range(20):  # 30 fps at city speed: nothing moves more than a few pixels between frames
        stream = SceneStream(seed, 320, 180, conditions=("day",), fps=30.0, speed_mps=8.0)
        first = next(stream)
        if all(_part(first, part).sum() > 60 for part in kinds):
            break
    else:
        raise AssertionError("no drive starts with both vehicles and pedestrians in view")
    frames = [first] + [next(stream) for _ in range(3)]
    for part in kinds:
        masks = [_part(f, part) for f in frames]
        assert all(m.sum() > 30 for m in masks), part
        assert all(covered(a, b) > 0.85 for a, b in zip(masks, masks[1:])), part


def test_stream_conditions_and_length():
    frames = list(SceneStream(1, 48, 32, conditions=("day", "night", "fog"), frames_per_condition=2, num_frames=6))
    assert [f.condition for f in frames] == ["day", "day", "night", "night", "fog", "fog"]
    single = {SceneStream(seed, 48, 32, conditions=("night", "fog")).condition for seed in range(12)}
    assert single == {"night", "fog"}
    with pytest.raises(ValueError):
        SceneStream(0, 48, 32, conditions=("dusk",))
    with pytest.raises(ValueError):
        SceneStream(0, 48, 32, conditions=())


def _sim_defaults() -> dict:
    return yaml.safe_load(SIM_CONFIG.read_text())["sim_sensors"]["ros__parameters"]


def _demo_frames() -> int:
    """Frames `make demo` publishes: its duration times its sim_sensors rate (road-seg demo's defaults)."""
    from road_seg_ros import demo

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args([])
    return int(args.duration * args.rate)


def test_sim_sensors_default_drive_shows_every_condition_and_obstacle_kind():
    """What `make demo` plays: sim_sensors' default loop (cycled for the demo's 30 s) covers day, night and fog,
    and in each condition shows potholes, kerbs, cones, vehicles and pedestrians (rendered at half the demo's
    640x360: the demo sees four times these pixel counts)."""
    params = _sim_defaults()
    assert 0 < params["loop_frames"] <= _demo_frames()  # the demo shows the whole loop at least once
    for seed in (params["seed"], 1):
        frames = list(SceneStream(seed, 320, 180, conditions=params["conditions"],
                                  frames_per_condition=params["frames_per_condition"], showcase=params["showcase"],
                                  num_frames=params["loop_frames"]))
        assert len(frames) == params["loop_frames"]
        assert {f.condition for f in frames} == set(CONDITIONS), seed
        for condition in CONDITIONS:
            shown = [f for f in frames if f.condition == condition]
            for kind in ("pothole", "kerb", "cone", "vehicle", "pedestrian"):
                assert max(int(_part(f, kind).sum()) for f in shown) >= 20, (seed, condition, kind)
            labels = np.stack([f.labels for f in shown])
            for label in (L.DRIVABLE, L.POSITIVE_OBSTACLE, L.NEGATIVE_OBSTACLE):
                assert (labels == label).any(), (seed, condition, label)


def test_showcase_drive_repeats_per_seed_and_keeps_its_promises():
    def drive(seed: int) -> list:
        return list(SceneStream(seed, W, H, conditions=CONDITIONS, frames_per_condition=2, showcase=True,
                                num_frames=4))

    first, again = drive(4), drive(4)
    for a, b in zip(first, again):
        for name in ("rgb", "right_rgb", "depth", "thermal"):
            np.testing.assert_array_equal(getattr(a.frame, name), getattr(b.frame, name))
        np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(drive(5)[0].frame.rgb, first[0].frame.rgb)
    assert [f.condition for f in first] == ["day", "day", "night", "night"]
    for seed in range(8):
        stream = SceneStream(seed, 32, 24, showcase=True)
        road = stream.layout.road
        assert road.kerb and road.oncoming_lanes >= 1, seed
        ahead = [o.z - stream.ego_z for o in stream.layout.potholes]
        assert any(3.0 < d < 20.0 for d in ahead), seed  # a pothole close ahead from the first frame
        assert stream.layout.cones and stream.layout.pedestrians and stream.layout.vehicles, seed

