"""Which pothole blobs are published (depth verification, temporal confirmation): hand-made label images with known
answers, and the pipeline's use."""
import numpy as np
import pytest

from road_seg_core import labels as L
from road_seg_core.node_config import PerceptionConfig
from road_seg_core.pothole_filter import PotholeFilter, PotholeFilterConfig, class_probability, depth_measured

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
    assert confirm.counts == {"blobs": 6, "without_depth": 0, "kept_on_thermal": 0, "unconfirmed": 4, "published": 2}


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


def confident(labels: np.ndarray, pothole: float) -> np.ndarray:
    """Logits (K, H, W) that give every pothole pixel of `labels` the probability `pothole` and the rest a
    confident argmax of their own class."""
    logits = np.where(np.eye(L.NUM_CLASSES, dtype=bool)[labels].transpose(2, 0, 1), 6.0, 0.0).astype(np.float32)
    # pothole logit l, the K-1 others 0: p = e^l / (e^l + K - 1)
    logits[L.NEGATIVE_OBSTACLE][labels == L.NEGATIVE_OBSTACLE] = np.log(pothole * (L.NUM_CLASSES - 1) / (1 - pothole))
    return logits


def test_class_probability_is_the_softmax_and_stable_for_large_logits():
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 4, (L.NUM_CLASSES, 50)).astype(np.float32)
    softmax = np.exp(logits) / np.exp(logits).sum(0)
    np.testing.assert_allclose(class_probability(logits.copy(), 2), softmax[2], rtol=1e-5)
    huge = np.array([[1000.0, -1000.0], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(class_probability(huge, 0), [1.0, 0.0], atol=1e-6)
    probability = class_probability(confident(road((20, 24, 10, 14)), 0.8)[:, 21:22, 11], L.NEGATIVE_OBSTACLE)
    np.testing.assert_allclose(probability, [0.8], rtol=1e-5)


def test_thermal_corroborates_blobs_in_stereo_holes_only_with_a_cold_spot_and_a_confident_network():
    """Four blobs, all in a stereo hole: cold and confident (kept), cold but unsure, confident but as warm as the
    road, cold and confident but outside the thermal camera's view (thermal 0); and a measured blob, kept."""
    blobs = [(20, 24, 6, 10), (20, 24, 22, 26), (20, 24, 38, 42), (20, 24, 54, 58), (30, 34, 70, 74)]
    labels = road(*blobs)
    depth = np.full((H, W), 9.0, np.float32)
    depth[15:30, :64] = np.nan
    thermal = np.full((H, W), 0.90, np.float32)
    thermal[20:24, 6:10] = thermal[20:24, 22:26] = thermal[20:24, 54:58] = 0.89  # 0.01 colder than around
    thermal[:, 50:] = 0.0  # the thermal view ends at column 50
    logits = confident(labels, 0.8)
    logits[L.NEGATIVE_OBSTACLE, 20:24, 22:26] = np.log(1.5 * (L.NUM_CLASSES - 1))  # the second blob: p = 0.6
    check = PotholeFilter(PotholeFilterConfig(min_depth_share=0.5, thermal_contrast=0.005, thermal_probability=0.7))
    out = check(labels.copy(), depth, thermal, logits)
    assert [potholes(out[y0:y1, x0:x1]) for y0, y1, x0, x1 in blobs] == [16, 0, 0, 0, 16]
    # A smaller contrast than asked is no evidence; without thermal or logits (or with the check off) nothing is.
    strict = PotholeFilter(PotholeFilterConfig(min_depth_share=0.5, thermal_contrast=0.02))
    assert potholes(strict(labels.copy(), depth, thermal, logits)) == 16
    assert potholes(PotholeFilter()(labels.copy(), depth, None, logits)) == 16
    assert potholes(PotholeFilter()(labels.copy(), depth, thermal, None)) == 16
    off = PotholeFilter(PotholeFilterConfig(thermal_contrast=0))
    assert not off.config.corroborates and potholes(off(labels.copy(), depth, thermal, logits)) == 16
    # What each check did, for /diagnostics: 5 blobs, 4 without depth, 1 of them kept on thermal, 2 published.
    assert check.counts == {"blobs": 5, "without_depth": 4, "kept_on_thermal": 1, "unconfirmed": 0, "published": 2}


@pytest.mark.parametrize("values, message", [
    ({"obstacles.confirm_frames": 0}, "obstacles.confirm_frames must be 1 (off) to 10, got 0"),
    ({"obstacles.confirm_frames": 11}, "obstacles.confirm_frames must be 1 (off) to 10, got 11"),
    ({"obstacles.confirm_radius": -0.1}, "obstacles.confirm_radius must be 0 to 0.25 of the image width, got -0.1"),
    ({"obstacles.confirm_frames": 1.5}, "obstacles.confirm_frames must be an integer, got 1.5 (double)"),
    ({"obstacles.min_depth_share": 1.5}, "obstacles.min_depth_share must be 0 (off) to 1, got 1.5"),
    ({"obstacles.thermal_contrast": -0.01},
     "obstacles.thermal_contrast must be 0 (off) to 0.5 of the thermal range, got -0.01"),
    ({"obstacles.thermal_probability": 2.0}, "obstacles.thermal_probability must be 0 to 1, got 2"),
])
def test_a_wrong_parameter_is_one_line_naming_it_and_its_value(values, message):
    with pytest.raises(ValueError) as info:
        PerceptionConfig.from_flat(values)
    assert str(info.value) == message


class ScriptedEngine:
    """Stands in for a model: returns the next scripted label image's one-hot logits (times `scale`: how sure)."""

    def __init__(self, frames: list[np.ndarray], modalities: tuple[str, ...] = ("rgb",), scale: float = 1.0) -> None:
        from road_seg_core.engines.base import InferenceEngine, ModelMeta
        from road_seg_core.models.config import ModelConfig

        config = ModelConfig(modalities=modalities, input_size=(64, 96))
        frames_ = iter(frames)

        class Engine(InferenceEngine):
            backend = "scripted"

            def _forward(self, inputs):
                labels = next(frames_)
                return scale * np.eye(L.NUM_CLASSES, dtype=np.float32)[labels].transpose(2, 0, 1)[None]

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


def test_the_pipeline_keeps_a_pothole_in_a_stereo_hole_that_thermal_shows_colder():
    """A model fed depth and thermal, its pothole blob in a stereo hole: dropped while the thermal camera sees
    warm road there, published where the spot is colder; the same frames with the check off drop both."""
    from road_seg_core.frames import SensorFrame
    from road_seg_core.pipeline import SegmentationPipeline

    h, w = 64, 96
    blob = np.full((h, w), L.DRIVABLE, np.uint8)
    blob[40:44, 30:36] = L.NEGATIVE_OBSTACLE
    rgb = np.zeros((2 * h, 2 * w, 3), np.uint8)
    depth = np.full((2 * h, 2 * w), 8.0, np.float32)
    depth[70:100, 40:90] = np.nan  # a stereo hole around the blob (rows 80:88, columns 60:72 at camera size)
    warm = np.linspace(7000, 9000, 2 * h * 2 * w).reshape(2 * h, 2 * w).astype(np.uint16)
    cold = warm.copy()
    cold[80:88, 60:72] -= 200  # a tenth of the span colder than the road around it
    frames = [SensorFrame(rgb=rgb, depth=depth, thermal=t) for t in (warm, cold)]
    for config, published in ((PotholeFilterConfig(), [0, 96]), (PotholeFilterConfig(thermal_contrast=0), [0, 0])):
        engine = ScriptedEngine([blob] * 2, modalities=("rgb", "depth", "thermal"), scale=8.0).engine
        pipeline = SegmentationPipeline(engine, obstacles=config)
        assert [potholes(pipeline.run(f).masks.labels) for f in frames] == published


def test_the_bundled_model_publishes_night_potholes_in_stereo_holes_only_with_thermal_corroboration():
    """Selection drive 8010 at 640x360, its night frames 15-20: the potholes lie in stereo holes, so the depth check
    alone drops every blob; with thermal corroboration (the default) each frame publishes them, mostly on true
    pothole pixels."""
    from road_seg_core.bundled import bundled_model_path
    from road_seg_core.engines import create_engine
    from road_seg_core.pipeline import SegmentationPipeline
    from road_seg_training.evaluate import synthetic_scenes

    engine = create_engine(bundled_model_path(), backend="torch", device="cpu", threads=1)
    default = SegmentationPipeline(engine)
    depth_only = SegmentationPipeline(engine, obstacles=PotholeFilterConfig(thermal_contrast=0))
    for i, scene in enumerate(synthetic_scenes(45, 8010, 640, 360, ("day", "night", "fog"), drive=True)):
        published, dropped = (potholes_of(p.run(scene.frame).masks.labels) for p in (default, depth_only))
        if i < 15:
            continue
        truth = potholes_of(scene.labels)
        assert scene.condition == "night" and truth.sum() > 200
        assert not dropped.any(), i
        assert published.sum() > 50 and (published & truth).sum() >= 0.8 * published.sum(), i
        if i == 20:
            break


def potholes_of(labels: np.ndarray) -> np.ndarray:
    return labels == L.NEGATIVE_OBSTACLE
