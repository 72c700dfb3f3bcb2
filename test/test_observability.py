"""The recall ceiling: contrast of near potholes against their surroundings, per plane, on hand-made frames."""
import json

import numpy as np
import pytest

from road_seg_core import labels as L
from road_seg_training import observability as obs


def frame(pothole_value: float, thermal_pothole: float = 0.5, distance: float = 10.0):
    """A 40x60 road (grey 100 with noise, thermal 0.5, height 1.0) with one 4x10 pothole at `distance`."""
    rng = np.random.default_rng(0)
    target = np.full((40, 60), L.DRIVABLE, np.uint8)
    target[18:22, 25:35] = L.NEGATIVE_OBSTACLE
    grey = 100 + rng.normal(0, 2, target.shape)
    grey[target == L.NEGATIVE_OBSTACLE] = pothole_value
    thermal = np.full(target.shape, 0.5) + rng.normal(0, 0.001, target.shape)
    thermal[target == L.NEGATIVE_OBSTACLE] = thermal_pothole
    height = np.zeros(target.shape)  # no depth anywhere: a stereo hole
    depth = np.full(target.shape, distance)
    return {"rgb": grey, "thermal": thermal, "height": height}, target, depth


def test_a_dark_pothole_stands_out_in_colour_only():
    planes, target, depth = frame(pothole_value=80.0)
    (row,) = obs.near_pothole_contrasts(planes, target, depth)
    assert row["distance_m"] == 10.0
    assert row["rgb"] > 5 and row["thermal"] < 2 and row["height"] == 0.0  # no valid height: counts 0


def test_ceiling_counts_potholes_hidden_in_every_plane():
    visible = obs.near_pothole_contrasts(*frame(pothole_value=80.0))
    cold = obs.near_pothole_contrasts(*frame(pothole_value=100.0, thermal_pothole=0.49))
    hidden = obs.near_pothole_contrasts(*frame(pothole_value=100.0))
    far = obs.near_pothole_contrasts(*frame(pothole_value=80.0, distance=25.0))
    assert far == []  # beyond NEAR_M: not a near pothole
    summary = obs.summarise({"day": visible + hidden, "night": cold + hidden}, threshold=0.5)
    assert summary["near_potholes"] == 4 and summary["below_threshold_everywhere"] == 2
    assert summary["recall_ceiling"] == 0.5
    assert summary["by_condition"]["night"] == {"near_potholes": 2, "below_threshold_everywhere": 1,
                                                "recall_ceiling": 0.5}


def test_command_prints_strict_json_for_a_drive(capsys):
    assert obs.main(["--drives", "1", "--seed", "8001", "--frames", "3", "--width", "320", "--height", "180"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["by_condition"]) == {"day", "night", "fog"}
    assert 0 <= result["below_threshold_everywhere"] <= result["near_potholes"]


def test_bad_arguments_are_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        obs.main(["--threshold", "0"])
    assert info.value.code == 2
    assert "--threshold > 0" in capsys.readouterr().err
