"""Phantom frames and pothole recall by object on hand-made ground truth with known answers."""
import math

import numpy as np
import pytest

from road_seg_core import labels as L
from road_seg_core.obstacle_metrics import ObstacleCounter

H, W = 60, 100  # 6000 px: the default phantom blob threshold is 5e-5 * 6000 = 0.3 px, so any blob counts


def road() -> np.ndarray:
    out = np.full((H, W), L.DRIVABLE, np.uint8)
    out[:20] = L.BACKGROUND
    return out


def test_phantom_frames_count_only_clear_frames_with_a_large_enough_blob():
    counter = ObstacleCounter(min_area_fraction=10 / (H * W))  # blobs of more than 10 px
    clear = road()
    expected_phantoms = 0
    # 1) clear road, clear prediction
    counter.update(clear.copy(), clear)
    # 2) clear road, a 4x5 = 20 px phantom pothole -> phantom
    pred = clear.copy()
    pred[40:44, 10:15] = L.NEGATIVE_OBSTACLE
    counter.update(pred, clear)
    expected_phantoms += 1
    # 3) clear road, scattered single pixels (each blob 1 px, 12 px in all) -> not a phantom
    pred = clear.copy()
    pred[30:54:2, 50] = L.NEGATIVE_OBSTACLE
    counter.update(pred, clear)
    # 4) clear road, two 3x3 blobs that touch diagonally (8-connected: one 18 px blob) -> phantom
    pred = clear.copy()
    pred[30:33, 30:33] = L.NEGATIVE_OBSTACLE
    pred[33:36, 33:36] = L.NEGATIVE_OBSTACLE
    counter.update(pred, clear)
    expected_phantoms += 1
    # 5) a frame with a real pothole and a false blob elsewhere: not a clear frame, so not a phantom frame
    truth = clear.copy()
    truth[50:55, 70:80] = L.NEGATIVE_OBSTACLE
    pred = clear.copy()
    pred[30:40, 10:20] = L.NEGATIVE_OBSTACLE
    counter.update(pred, truth)
    # 6) a phantom blob only where the ground truth is ignored -> not counted
    ignored = clear.copy()
    ignored[40:50, 40:50] = L.IGNORE
    pred = clear.copy()
    pred[40:50, 40:50] = L.NEGATIVE_OBSTACLE
    counter.update(pred, ignored)
    out = counter.compute()
    assert out["frames"] == 6 and out["clear_frames"] == 5
    assert out["phantom_frames"] == expected_phantoms == 2
    assert out["phantom_frame_rate"] == pytest.approx(2 / 5)
    # Blobs over 10 px touching no true pothole: the two phantoms and frame 5's blob beside a real pothole.
    assert out["pothole_blobs"] == 3 and out["false_pothole_blobs"] == 3
    assert out["false_pothole_blob_rate"] == 1.0


def test_pothole_recall_by_object_and_by_distance():
    counter = ObstacleCounter(near_m=20.0)
    truth = road()
    depth = np.full((H, W), 30.0, np.float32)
    # Four potholes: two near (depth 8 m, 15 m), two far (25 m, 40 m); the prediction finds the 8 m and 40 m ones.
    boxes = [((25, 30), (10, 20), 8.0), ((25, 30), (40, 50), 15.0), ((40, 45), (10, 20), 25.0),
             ((40, 45), (60, 70), 40.0)]
    for (r0, r1), (c0, c1), z in boxes:
        truth[r0:r1, c0:c1] = L.NEGATIVE_OBSTACLE
        depth[r0:r1, c0:c1] = z
    depth[25, 40] = 0.0  # a hole in the depth does not change an object's median distance
    pred = road()
    pred[27, 15] = L.NEGATIVE_OBSTACLE  # one pixel inside the 8 m pothole is enough
    pred[40:45, 60:62] = L.NEGATIVE_OBSTACLE  # part of the 40 m one
    pred[50:52, 90:95] = L.NEGATIVE_OBSTACLE  # a false blob touches no object
    frame = counter.update(pred, truth, depth)
    assert frame == {"phantom": 0, "objects": 4, "found": 2, "blobs": 3, "false_blobs": 1}
    # A second frame without depth: its one pothole (found) counts overall only.
    truth2 = road()
    truth2[30:33, 30:40] = L.NEGATIVE_OBSTACLE
    counter.update(truth2.copy(), truth2)
    out = counter.compute()
    assert out["potholes"] == 5 and out["potholes_found"] == 3
    assert out["pothole_recall"] == pytest.approx(3 / 5)
    assert out["near_potholes"] == 2 and out["near_potholes_found"] == 1
    assert out["pothole_recall_near_20m"] == pytest.approx(0.5)
    assert out["potholes_without_depth"] == 1
    assert out["clear_frames"] == 0 and math.isnan(out["phantom_frame_rate"])
    assert out["pothole_blobs"] == 4 and out["false_pothole_blobs"] == 1  # frame 2's blob is its pothole
    assert out["false_pothole_blob_rate"] == pytest.approx(1 / 4)


def test_a_pothole_named_by_instances_is_one_object_however_many_pieces_it_renders_as():
    """A far crack renders as a row of separate one-pixel dashes: by connected components those are four
    "potholes" (one found), by the ground truth's instance ids one pothole (found). A pothole pixel without an
    id stays an object of its own; distances and sensor coverage are taken over the whole pothole."""
    truth, depth, measured = road(), np.full((H, W), 30.0, np.float32), np.full((H, W), 30.0, np.float32)
    ids = np.zeros((H, W), np.uint16)
    for c0 in (10, 20, 30, 40):  # one crack, 12 m ahead, in four dashes; one dash lies in a stereo hole
        truth[30, c0:c0 + 4] = L.NEGATIVE_OBSTACLE
        ids[30, c0:c0 + 4] = 5
        depth[30, c0:c0 + 4] = 12.0
    measured[30, 10:14] = np.nan
    truth[50:53, 70:75] = L.NEGATIVE_OBSTACLE  # a pothole without an id, 15 m ahead, missed
    depth[50:53, 70:75] = 15.0
    pred = road()
    pred[30, 41] = L.NEGATIVE_OBSTACLE  # touches the last dash only
    by_components, by_instances = ObstacleCounter(), ObstacleCounter()
    assert by_components.update(pred, truth, depth, measured)["objects"] == 5
    frame = by_instances.update(pred, truth, depth, measured, instances=ids)
    assert frame["objects"] == 2 and frame["found"] == 1
    out = by_instances.compute()
    assert out["near_potholes"] == 2 and out["near_potholes_found"] == 1
    assert out["near_potholes_with_sensor_depth"] == 2  # the crack: 12 of its 16 pixels measured
    assert out["frames_with_pothole_instances"] == 1 and by_components.compute()["frames_with_pothole_instances"] == 0
    assert by_components.compute()["near_potholes_found"] == 1 and by_components.compute()["near_potholes"] == 5
    with pytest.raises(ValueError, match="instances shape"):
        by_instances.update(pred, truth, instances=ids[:-1])


def test_near_recall_is_split_by_what_the_depth_camera_measured():
    """Three near potholes: one fully measured (found), one in a stereo hole (missed), one measured on 60 % of
    its pixels (missed); a far one in a hole. Only the near measured ones enter the split recall."""
    counter = ObstacleCounter(near_m=20.0)
    truth = road()
    exact = np.full((H, W), 30.0, np.float32)
    sensor = exact.copy()
    for (r0, r1), (c0, c1), z in [((25, 30), (10, 20), 8.0), ((25, 30), (40, 50), 12.0),
                                  ((40, 45), (10, 20), 15.0), ((40, 45), (60, 70), 35.0)]:
        truth[r0:r1, c0:c1] = L.NEGATIVE_OBSTACLE
        exact[r0:r1, c0:c1] = z
        sensor[r0:r1, c0:c1] = z
    sensor[25:30, 40:50] = np.nan  # the 12 m pothole lies in a stereo hole
    sensor[40:42, 10:20] = 0.0  # the 15 m one: 2 of 5 rows without depth (60 % measured)
    sensor[40:45, 60:70] = np.inf  # the far one: no measurement, and not near anyway
    pred = road()
    pred[26, 12] = L.NEGATIVE_OBSTACLE  # finds the measured 8 m pothole only
    counter.update(pred, truth, exact, sensor)
    out = counter.compute()
    assert out["near_potholes"] == 3 and out["near_potholes_found"] == 1
    assert out["near_potholes_with_sensor_depth"] == 2 and out["near_potholes_with_sensor_depth_found"] == 1
    assert out["pothole_recall_near_20m_with_sensor_depth"] == pytest.approx(0.5)
    # Without the camera's depth the split is not made (NaN), the rest is unchanged.
    plain = ObstacleCounter(near_m=20.0)
    plain.update(pred, truth, exact)
    assert plain.compute()["near_potholes_with_sensor_depth"] == 0
    assert math.isnan(plain.compute()["pothole_recall_near_20m_with_sensor_depth"])
    with pytest.raises(ValueError, match="sensor_depth shape"):
        counter.update(pred, truth, exact, sensor[:-1])


def test_merge_adds_counts_and_bad_shapes_are_refused():
    a, b = ObstacleCounter(), ObstacleCounter()
    clear = road()
    pred = clear.copy()
    pred[40:45, 10:20] = L.NEGATIVE_OBSTACLE
    a.update(pred, clear)
    b.update(clear.copy(), clear)
    a.merge(b)
    assert a.compute()["phantom_frames"] == 1 and a.compute()["clear_frames"] == 2
    assert a.compute()["false_pothole_blobs"] == a.compute()["pothole_blobs"] == 1
    with pytest.raises(ValueError, match="shape"):
        a.update(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="depth shape"):
        a.update(clear, clear, np.zeros((4, 4), np.float32))
