"""The node's outputs are written into their messages' own buffers: what a subscriber receives must be each
frame as it was when published, although the next frame overwrites the same buffer right after."""
import numpy as np
import pytest
import rclpy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from road_seg_core.pipeline import SegmentationPipeline
from road_seg_core.postprocess import Masks, make_masks
from road_seg_ros.mask_publisher import MaskPublishers
from rosutil import Collector

TOPICS = ("drivable_mask", "obstacle_mask", "labels", "overlay")


@pytest.fixture
def publisher_node(ros_domain):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    node = rclpy.create_node("road_seg", context=context)
    yield node
    node.destroy_node()
    rclpy.try_shutdown(context=context)


def _frames(count: int, size: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(4)
    small = (size[0] // 3, size[1] // 4)
    return [(rng.integers(0, 8, small, dtype=np.uint8), rng.integers(0, 256, size + (3,), dtype=np.uint8))
            for _ in range(count)]


def test_frames_written_in_place_arrive_as_published(publisher_node, ros_domain):
    size = (48, 64)
    outputs = MaskPublishers(publisher_node, 10)
    collector = Collector(ros_domain, {f"/road_seg/{t}": Image for t in TOPICS})
    try:
        assert collector.wait_for(lambda: outputs.overlay_wanted, 10.0), "collector never matched the overlay"
        frames = _frames(4, size)
        expected = []
        for i, (labels_small, rgb) in enumerate(frames):
            buffers = outputs.buffers(size, with_overlay=True)
            masks = make_masks(labels_small, rgb, size, with_overlay=True, out=buffers)
            assert masks.labels is buffers.labels and masks.overlay is buffers.overlay  # no copy was made
            expected.append({name: getattr(make_masks(labels_small, rgb, size, with_overlay=True), field).copy()
                             for name, field in (("drivable_mask", "drivable"), ("obstacle_mask", "obstacle"),
                                                 ("labels", "labels"), ("overlay", "overlay"))})
            header = Header(frame_id="zed_left")
            header.stamp.sec = i
            outputs.publish(header, masks)
        assert collector.wait_for(lambda: all(collector.count(f"/road_seg/{t}") == 4 for t in TOPICS), 10.0)
        for topic in TOPICS:
            received = collector.messages[f"/road_seg/{topic}"]
            assert [m.header.stamp.sec for m in received] == [0, 1, 2, 3]
            for msg, frame in zip(received, expected):
                want = frame[topic]
                np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(want.shape), want)
                assert (msg.height, msg.width, msg.step) == (size[0], size[1], size[1] * (3 if want.ndim == 3 else 1))
                assert msg.encoding == ("rgb8" if topic == "overlay" else "mono8")
    finally:
        collector.close()


def test_masks_not_written_in_place_are_copied_and_a_new_size_gets_new_buffers(publisher_node):
    outputs = MaskPublishers(publisher_node, 10)
    small = outputs.buffers((8, 12), with_overlay=False)
    assert small.overlay is None and small.labels.shape == (8, 12)
    masks = make_masks(np.full((4, 6), 1, np.uint8), None, (8, 12))  # its own arrays
    outputs.publish(Header(), masks)
    np.testing.assert_array_equal(outputs.buffers((8, 12), False).labels, masks.labels)
    large = outputs.buffers((16, 24), with_overlay=True)
    assert large.labels.shape == (16, 24) and large.overlay.shape == (16, 24, 3)
    assert outputs.buffers((16, 24), with_overlay=True).labels is large.labels  # kept while the size holds


def test_pipeline_writes_into_the_buffers_it_is_given(tiny_checkpoint):
    from road_seg_core.engines import create_engine
    from road_seg_core.synthetic import render_scene

    engine = create_engine(tiny_checkpoint, backend="torch", device="cpu")
    frame = render_scene(0, width=96, height=64).frame
    pipeline = SegmentationPipeline(engine)
    reference = pipeline.run(frame).masks
    buffers = Masks(*(np.empty(frame.size, np.uint8) for _ in range(3)))
    masks = pipeline.run(frame, out=buffers).masks
    assert masks.labels is buffers.labels and masks.drivable is buffers.drivable
    np.testing.assert_array_equal(masks.labels, reference.labels)
    np.testing.assert_array_equal(masks.obstacle, reference.obstacle)
    with pytest.raises(ValueError, match="output array"):  # a buffer of another size: refused, not reallocated
        make_masks(np.zeros((2, 2), np.uint8), None, (4, 4), out=Masks(*(np.empty((3, 3), np.uint8) for _ in range(3))))
