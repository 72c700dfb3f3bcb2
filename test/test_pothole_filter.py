"""Which pothole blobs are published (depth verification, temporal confirmation): hand-made label images with known
answers, and the pipeline's use."""
import numpy as np
import pytest

from road_seg_core import labels as L
from road_seg_core.node_config import PerceptionConfig
from road_seg_core.pothole_filter import PotholeFilter, PotholeFilterConfig, depth_measured

H, W = 40, 80  # radius 0.05 * 80 = 4 px


def road(*blobs: tuple[int, int, int, int]) -> np.ndarray:
    """A road label image with pothole rectangles (y0, y1, x0, x1)."""
    out = np.full((H, W), L.DRIVABLE, np.uint8)
    out[:10] = L.BACKGROUND
    for y0, y1, x0, x1 in blobs:
        out[y0:y1, x0:x1] = L.NEGATIVE_OBSTACLE
    return out


def potholes(labels: np.ndarray) -> int:
    return int((labels == L.NEGATIVE_OBSTACLE).sum())


def test_off_leaves_every_frame_as_predicted():
    confirm = PotholeFilter(PotholeFilterConfig(min_depth_share=0, confirm_frames=1))
    assert not confirm.config.enabled
    for frame in (road((20, 24, 10, 14)), road(), road((30, 33, 60, 70))):
        assert np.array_equal(confirm(frame.copy()), frame)


def test_two_frames_publish_a_moving_pothole_from_its_second_sighting_and_drop_one_frame_phantoms():
    confirm = PotholeFilter(PotholeFilterConfig(min_depth_share=0, confirm_frames=2, confirm_radius=0.05))
    first = confirm(road((20, 24, 10, 14)))
    assert potholes(first) == 0, "a first sighting is not confirmed yet"
    assert first[22, 12] == L.BACKGROUND  # unconfirmed: neither obstacle nor free road
    # The pothole came 3 rows nearer (within the 4 px radius); a new blob far from anything seen appears too.
    second = confirm(road((23, 27, 11, 15), (12, 14, 60, 66)))
    assert potholes(second) == 16, "the moved pothole is kept whole"
    assert np.all(second[12:14, 60:66] == L.BACKGROUND), "a blob with no predecessor is a phantom"
    # A jump of 20 px is not the same pothole.
    third = confirm(road((23, 27, 35, 39)))
    assert potholes(third) == 0
    # The rest of the image is never touched.
    frame = road((30, 34, 40, 44))
    frame[15, :] = L.POSITIVE_OBSTACLE
    out = confirm(frame.copy())
    assert np.array_equal(out == L.POSITIVE_OBSTACLE, frame == L.POSITIVE_OBSTACLE)


def test_three_frames_need_the_blob_in_both_previous_frames():
    confirm = PotholeFilter(PotholeFilterConfig(min_depth_share=0, confirm_frames=3, confirm_radius=0.05))
    blob = (20, 24, 10, 14)
    assert potholes(confirm(road(blob))) == 0
    assert potholes(confirm(road(blob))) == 0
    assert potholes(confirm(road(blob))) == 16
    assert potholes(confirm(road())) == 0
    assert potholes(confirm(road(blob))) == 0, "the gap frame breaks the run"
    assert potholes(confirm(road(blob))) == 0
    assert potholes(confirm(road(blob))) == 16


def test_depth_verification_keeps_the_blobs_the_depth_camera_measured_enough_of():
    """Three blobs of 16 px: measured on all, on 8 (half) and on 4 of their pixels; a share of 0.5 keeps two."""
    labels = road((20, 24, 10, 14), (20, 24, 30, 34), (20, 24, 50, 54))
    depth = np.full((H, W), 9.0, np.float32)
    depth[20:22, 30:34] = np.nan  # 8 of 16 without depth
    depth[20:23, 50:54] = 0.0  # 12 of 16 without depth
    out = PotholeFilter(PotholeFilterConfig(min_depth_share=0.5))(labels.copy(), depth)
    assert potholes(out[:, :20]) == 16 and potholes(out[:, 25:40]) == 16
    assert potholes(out[:, 45:]) == 0 and np.all(out[20:24, 50:54] == L.BACKGROUND)
    # No depth camera in the frame: nothing to verify against, every blob passes.
    assert np.array_equal(PotholeFilter()(labels.copy(), None), labels)
    # Depth at the camera's resolution (here 3x the label image) is resampled to nearest: the same answer.
    big = np.repeat(np.repeat(depth, 3, 0), 3, 1)
    assert np.array_equal(PotholeFilter()(labels.copy(), big), out)


def test_depth_measured_is_finite_positive_depth_at_the_label_size():
    depth = np.array([[np.nan, 0.0, 5.0, np.inf], [-1.0, 2.0, 3.0, 4.0]], np.float32)
    assert depth_measured(depth, (2, 4)).tolist() == [[0, 0, 1, 0], [0, 1, 1, 1]]
    assert depth_measured(np.repeat(np.repeat(depth, 2, 0), 2, 1), (2, 4)).tolist() == [[0, 0, 1, 0], [0, 1, 1, 1]]


def test_confirmation_counts_only_blobs_that_passed_verification():
    """A blob in a stereo hole in frame 1 is no predecessor: the measured blob at that place in frame 2 is new."""
    potholes_filter = PotholeFilter(PotholeFilterConfig(min_depth_share=0.5, confirm_frames=2, confirm_radius=0.05))
    measured = np.full((H, W), 9.0, np.float32)
    hole = measured.copy()
    hole[15:30, 5:20] = np.nan
    assert potholes(potholes_filter(road((20, 24, 10, 14)), hole)) == 0
    assert potholes(potholes_filter(road((20, 24, 10, 14)), measured)) == 0
    assert potholes(potholes_filter(road((20, 24, 10, 14)), measured)) == 16


def test_reset_and_a_new_image_size_start_a_new_sequence():
    confirm = PotholeFilter(PotholeFilterConfig(min_depth_share=0, confirm_frames=2, confirm_radius=0.05))
    blob = (20, 24, 10, 14)
    confirm(road(blob))
    confirm.reset()
    assert potholes(confirm(road(blob))) == 0
    bigger = np.full((2 * H, 2 * W), L.DRIVABLE, np.uint8)
    bigger[20:24, 10:14] = L.NEGATIVE_OBSTACLE
    assert potholes(confirm(bigger.copy())) == 0, "masks of another size say nothing about this frame"
    assert potholes(confirm(bigger.copy())) == 16


@pytest.mark.parametrize("values, message", [
    ({"obstacles.confirm_frames": 0}, "obstacles.confirm_frames must be 1 (off) to 10, got 0"),
    ({"obstacles.confirm_frames": 11}, "obstacles.confirm_frames must be 1 (off) to 10, got 11"),
    ({"obstacles.confirm_radius": -0.1}, "obstacles.confirm_radius must be 0 to 0.25 of the image width, got -0.1"),
    ({"obstacles.confirm_frames": 1.5}, "obstacles.confirm_frames must be an integer, got 1.5 (double)"),
    ({"obstacles.min_depth_share": 1.5}, "obstacles.min_depth_share must be 0 (off) to 1, got 1.5"),
])
def test_a_wrong_parameter_is_one_line_naming_it_and_its_value(values, message):
    with pytest.raises(ValueError) as info:
        PerceptionConfig.from_flat(values)
    assert str(info.value) == message


class ScriptedEngine:
    """Stands in for a model: returns the next scripted label image's one-hot logits."""

    def __init__(self, frames: list[np.ndarray], modalities: tuple[str, ...] = ("rgb",)) -> None:
        from road_seg_core.engines.base import InferenceEngine, ModelMeta
        from road_seg_core.models.config import ModelConfig

        config = ModelConfig(modalities=modalities, input_size=(64, 96))
        frames_ = iter(frames)

        class Engine(InferenceEngine):
            backend = "scripted"

            def _forward(self, inputs):
                labels = next(frames_)
                return np.eye(L.NUM_CLASSES, dtype=np.float32)[labels].transpose(2, 0, 1)[None]

        self.engine = Engine(ModelMeta.from_config(config), "cpu", "fp32")


def test_the_pipeline_confirms_across_frames_and_reset_starts_over():
    from road_seg_core.frames import SensorFrame
    from road_seg_core.pipeline import SegmentationPipeline

    h, w = 64, 96
    blob = np.full((h, w), L.DRIVABLE, np.uint8)
    blob[40:44, 30:36] = L.NEGATIVE_OBSTACLE
    engine = ScriptedEngine([blob] * 4).engine
    pipeline = SegmentationPipeline(engine, obstacles=PotholeFilterConfig(confirm_frames=2))
    frame = SensorFrame(rgb=np.zeros((2 * h, 2 * w, 3), np.uint8))
    first, second = (pipeline.run(frame).masks for _ in range(2))
    assert potholes(first.labels) == 0 and not first.obstacle.any()
    assert potholes(second.labels) == 4 * 24 and second.obstacle.any()  # 24 px, upsampled 2x each way
    pipeline.reset()
    assert potholes(pipeline.run(frame).masks.labels) == 0
    assert potholes(pipeline.run(frame).masks.labels) == 96


def test_the_pipeline_verifies_potholes_against_the_frames_depth():
    """A model fed depth: its pothole blob is published where the depth camera measured it, dropped in a stereo
    hole, and passes unchecked when the frame has no depth (sensor down)."""
    from road_seg_core.frames import SensorFrame
    from road_seg_core.pipeline import SegmentationPipeline

    h, w = 64, 96
    blob = np.full((h, w), L.DRIVABLE, np.uint8)
    blob[40:44, 30:36] = L.NEGATIVE_OBSTACLE
    engine = ScriptedEngine([blob] * 3, modalities=("rgb", "depth")).engine
    pipeline = SegmentationPipeline(engine)  # the node's default: min_depth_share 0.5
    rgb = np.zeros((2 * h, 2 * w, 3), np.uint8)
    depth = np.full((2 * h, 2 * w), 8.0, np.float32)
    holed = depth.copy()
    holed[80:88, 60:72] = np.nan  # the blob's pixels at camera resolution
    assert potholes(pipeline.run(SensorFrame(rgb=rgb, depth=depth)).masks.labels) == 96
    assert potholes(pipeline.run(SensorFrame(rgb=rgb, depth=holed)).masks.labels) == 0
    assert potholes(pipeline.run(SensorFrame(rgb=rgb)).masks.labels) == 96
