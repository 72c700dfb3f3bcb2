from pathlib import Path

import pytest

from road_seg_core.node_config import PerceptionConfig
from road_seg_core.input_plan import StartupError, plan_inputs

REPO = Path(__file__).resolve().parent.parent


def test_shipped_params_file_equals_the_defaults():
    """config/perception.yaml documents every parameter with its default value."""
    from_file = PerceptionConfig.from_yaml(REPO / "config" / "perception.yaml")
    assert from_file.flat() == PerceptionConfig().flat()


def test_unknown_parameter_is_named(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("road_seg:\n  ros__parameters:\n    topics: {lefty: /x}\n")
    with pytest.raises(ValueError, match="topics.lefty"):
        PerceptionConfig.from_yaml(p)


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="depth_source"):
        PerceptionConfig.from_flat({"depth_source": "lidar"})
    with pytest.raises(ValueError, match="reliability"):
        PerceptionConfig.from_flat({"qos.left.reliability": "sometimes"})


def test_preprocess_config_carries_thermal_homography():
    cfg = PerceptionConfig.from_flat({"thermal.homography": [2, 0, 0, 0, 1.5, 0, 0, 0, 1], "thermal.mode": "fixed"})
    pre = cfg.preprocess_config()
    assert pre.thermal.mode == "fixed"
    assert pre.thermal.homography[0][0] == 2.0 and pre.thermal.homography[1][1] == 1.5


@pytest.mark.parametrize("modalities, source, keys, info", [
    (("rgb",), "depth", ("left",), False),
    (("rgb", "depth", "thermal"), "depth", ("left", "depth", "thermal"), False),
    (("rgb", "disparity"), "depth", ("left", "depth"), True),
    (("rgb", "disparity"), "disparity", ("left", "disparity"), False),
    (("rgb", "disparity"), "stereo", ("left", "right"), False),
    (("rgb", "depth"), "stereo", ("left", "right"), True),
    # "height" is derived from depth and needs the intrinsics for the road-plane fit.
    (("rgb", "depth", "thermal", "height"), "depth", ("left", "depth", "thermal"), True),
    (("rgb", "height"), "disparity", ("left", "disparity"), True),
])
def test_node_subscribes_only_to_what_the_model_needs(modalities, source, keys, info):
    plan = plan_inputs(modalities, PerceptionConfig.from_flat({"depth_source": source}))
    assert plan.keys == keys and plan.needs_camera_info is info


def test_only_a_depth_disparity_conversion_makes_camera_info_a_condition_for_a_set():
    height = plan_inputs(("rgb", "depth", "thermal", "height"), PerceptionConfig())
    assert height.needs_camera_info and not height.requires_camera_info  # height is "no data" until it arrives
    convert = plan_inputs(("rgb", "disparity", "height"), PerceptionConfig())
    assert convert.needs_camera_info and convert.requires_camera_info


def test_unservable_model_is_refused_with_the_parameter_name():
    with pytest.raises(StartupError, match="topics.thermal"):
        plan_inputs(("rgb", "thermal"), PerceptionConfig.from_flat({"topics.thermal": ""}))
