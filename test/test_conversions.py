"""sensor_msgs <-> numpy through the node's conversion layer (real ROS 2 message classes)."""
import array

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from road_seg_core.frames import StereoIntrinsics
from road_seg_core.image_codec import ImageFormatError
from road_seg_ros import conversions
from road_seg_core.sensor_spec import intrinsics_from_camera_info
from road_seg_ros.conversions import array_to_image, camera_info, image_to_array

CASES = [
    ("bgra8", np.uint8, (5, 7, 4)),
    ("rgb8", np.uint8, (5, 7, 3)),
    ("mono8", np.uint8, (5, 7)),
    ("mono16", np.uint16, (5, 7)),
    ("32FC1", np.float32, (5, 7)),
]


@pytest.mark.parametrize("encoding, dtype, shape", CASES)
def test_message_round_trip(encoding, dtype, shape):
    rng = np.random.default_rng(0)
    image = (rng.random(shape) * 1000).astype(dtype)
    header = Header(frame_id="cam")
    msg = array_to_image(image, encoding, header)
    assert isinstance(msg.data, array.array)
    assert msg.header.frame_id == "cam" and (msg.height, msg.width) == shape[:2]
    np.testing.assert_array_equal(image_to_array(msg, use_cv_bridge=False), image)


def test_padded_big_endian_depth_message():
    depth = np.arange(12, dtype=np.float32).reshape(3, 4)
    step = 4 * 4 + 8  # 8 bytes of row padding
    rows = np.zeros((3, step), np.uint8)
    rows[:, :16] = depth.astype(">f4").view(np.uint8).reshape(3, 16)
    msg = Image(height=3, width=4, encoding="32FC1", is_bigendian=1, step=step)
    msg.data = array.array("B", rows.tobytes())
    np.testing.assert_array_equal(image_to_array(msg, use_cv_bridge=False), depth)


def test_truncated_message_names_the_problem():
    msg = Image(height=4, width=4, encoding="bgra8", step=16)
    msg.data = array.array("B", bytes(10))
    with pytest.raises(ImageFormatError) as err:
        image_to_array(msg, use_cv_bridge=False)
    assert err.value.reason == "size_mismatch"


def test_camera_info_round_trip_gives_the_baseline():
    intr = StereoIntrinsics(fx=700.0, fy=700.0, cx=640.0, cy=360.0, baseline_m=0.12, width=1280, height=720)
    left, right = camera_info(intr, Header()), camera_info(intr, Header(), right=True)
    assert right.p[3] == pytest.approx(-700.0 * 0.12)
    assert intrinsics_from_camera_info(left, right) == intr


@pytest.mark.skipif(not conversions.cv_bridge_available(), reason="ROS 2 cv_bridge is not installed here")
@pytest.mark.parametrize("encoding, dtype, shape", CASES)
def test_cv_bridge_and_own_decoder_agree(encoding, dtype, shape):
    image = (np.random.default_rng(1).random(shape) * 200).astype(dtype)
    msg = array_to_image(image, encoding, Header())
    np.testing.assert_array_equal(image_to_array(msg, use_cv_bridge=True), image_to_array(msg, use_cv_bridge=False))
