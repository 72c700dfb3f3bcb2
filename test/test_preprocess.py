import cv2
import numpy as np
import pytest

from road_seg_core.depth import SgbmConfig
from road_seg_core.frames import SensorFrame, StereoIntrinsics
from road_seg_core.preprocess import MissingInputError, PreprocessConfig, Preprocessor
from road_seg_core.thermal import ThermalConfig

H, W = 64, 96
INTR = StereoIntrinsics(fx=200.0, fy=200.0, cx=96.0, cy=64.0, baseline_m=0.12, width=192, height=128)


def _frame(**kw) -> SensorFrame:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (128, 192, 3), dtype=np.uint8)
    return SensorFrame(rgb=rgb, intrinsics=INTR, **kw)


def test_shapes_dtypes_and_missing_sensors_are_zeros():
    pre = Preprocessor(("rgb", "depth", "thermal"), (H, W))
    out = pre(_frame())
    assert out["rgb"].shape == (1, 3, H, W) and out["rgb"].dtype == np.uint8
    for name in ("depth", "thermal"):
        assert out[name].shape == (1, 1, H, W) and out[name].dtype == np.float32
        assert not out[name].any()
        assert pre.last_valid_fraction[name] == 0.0


def test_invalid_depth_becomes_zero_and_valid_depth_is_kept():
    depth = np.full((128, 192), 10.0, np.float32)
    depth[:10] = np.nan
    depth[10:20] = np.inf
    depth[20:30] = 0.0
    depth[30:40] = 100.0  # beyond max_depth
    out = Preprocessor(("rgb", "depth"), (H, W), PreprocessConfig(max_depth_m=40.0))(_frame(depth=depth))["depth"][0, 0]
    assert np.isfinite(out).all()
    assert (out[:20] == 0).all()  # rows 0..39 of 128 -> 0..19 of 64
    np.testing.assert_allclose(out[21:], 10.0)


def test_depth_at_the_input_size_is_sanitised_in_a_copy():
    """Invalid pixels are zeroed in place in the resized copy; at the input size there is no resize, and the
    sensor's own array (a message buffer on the car, read-only) must not be written."""
    depth = np.full((H, W), 7.0, np.float32)
    depth[:5] = np.nan
    depth.flags.writeable = False
    frame = SensorFrame(rgb=np.zeros((H, W, 3), np.uint8), depth=depth, intrinsics=INTR.scaled(W, H))
    out = Preprocessor(("rgb", "depth"), (H, W))(frame)["depth"][0, 0]
    assert (out[:5] == 0).all() and (out[5:] == 7.0).all()
    assert np.isnan(depth[:5]).all()


def test_depth_to_disparity_uses_scaled_intrinsics():
    depth = np.full((128, 192), 4.0, np.float32)
    out = Preprocessor(("rgb", "disparity"), (H, W))(_frame(depth=depth))["disparity"][0, 0]
    # fx at input width = 200 * 96/192 = 100; d = 100 * 0.12 / 4 = 3 px
    np.testing.assert_allclose(out, 3.0, rtol=1e-5)


def test_disparity_topic_is_rescaled_to_input_width():
    disp = np.full((128, 192), 8.0, np.float32)
    cfg = PreprocessConfig(depth_source="disparity")
    out = Preprocessor(("rgb", "disparity"), (H, W), cfg)(_frame(disparity=disp))
    np.testing.assert_allclose(out["disparity"][0, 0], 4.0)
    depth = Preprocessor(("rgb", "depth"), (H, W), cfg)(_frame(disparity=disp))["depth"][0, 0]
    np.testing.assert_allclose(depth, 100 * 0.12 / 4.0, rtol=1e-5)


def test_stereo_source_runs_sgbm_on_the_pair():
    rng = np.random.default_rng(1)
    texture = rng.integers(0, 255, (128, 200), dtype=np.uint8)
    left = np.repeat(texture[:, 0:192][..., None], 3, axis=2)
    right = np.repeat(texture[:, 8:200][..., None], 3, axis=2)  # constant 8 px disparity at full res
    cfg = PreprocessConfig(depth_source="stereo", sgbm=SgbmConfig(num_disparities=16, block_size=5))
    frame = SensorFrame(rgb=np.ascontiguousarray(left), right_rgb=np.ascontiguousarray(right), intrinsics=INTR)
    out = Preprocessor(("rgb", "disparity"), (H, W), cfg)(frame)["disparity"][0, 0]
    valid = out > 0
    assert valid.mean() > 0.5
    assert abs(np.median(out[valid]) - 4.0) < 0.5  # 8 px at 192 wide -> 4 px at 96 wide


def test_depth_disparity_conversion_without_intrinsics_is_a_clear_error():
    frame = SensorFrame(rgb=np.zeros((128, 192, 3), np.uint8), depth=np.ones((128, 192), np.float32))
    with pytest.raises(MissingInputError, match="intrinsics"):
        Preprocessor(("rgb", "disparity"), (H, W))(frame)


def test_thermal_is_warped_by_the_homography():
    thermal = np.full((64, 96), 8000, np.uint16)  # half the left resolution
    thermal[:, 48:] = 9000
    cfg = PreprocessConfig(thermal=ThermalConfig(mode="fixed", fixed_range=(7000.0, 9000.0),
                                                 homography=((2.0, 0, 0), (0, 2.0, 0), (0, 0, 1.0))))
    out = Preprocessor(("rgb", "thermal"), (H, W), cfg)(_frame(thermal=thermal))["thermal"][0, 0]
    assert (out[2:-2, 2:46] > 0).all() and (out[2:-2, 2:46] < out[2:-2, 50:94].min()).all()
    cfg_shift = PreprocessConfig(thermal=ThermalConfig(mode="fixed", fixed_range=(7000.0, 9000.0),
                                                       homography=((2.0, 0, 96), (0, 2.0, 0), (0, 0, 1.0))))
    shifted = Preprocessor(("rgb", "thermal"), (H, W), cfg_shift)(_frame(thermal=thermal))["thermal"][0, 0]
    assert (shifted[:, :47] == 0).all()  # the thermal view now starts at half the left width


def test_bad_depth_source_is_refused():
    with pytest.raises(ValueError, match="depth_source"):
        PreprocessConfig(depth_source="lidar")


def test_colour_is_box_filtered_by_a_whole_factor_then_bilinear():
    from road_seg_core.preprocess import resize_colour

    rng = np.random.default_rng(2)
    base = cv2.resize((rng.random((90, 160, 3)) * 255).astype(np.uint8), (1280, 720), interpolation=cv2.INTER_CUBIC)
    fast = resize_colour(base, (256, 448)).astype(np.int16)
    one_step = cv2.resize(base, (448, 256), interpolation=cv2.INTER_AREA).astype(np.int16)
    assert fast.shape == one_step.shape == (256, 448, 3)
    assert np.abs(fast - one_step).mean() < 1.5 and np.percentile(np.abs(fast - one_step), 99) < 12
    # Below a factor of 2 (training's renders at twice the input size) it is cv2's INTER_AREA exactly.
    small = base[:504, :896]
    np.testing.assert_array_equal(resize_colour(small, (256, 448)),
                                  cv2.resize(small, (448, 256), interpolation=cv2.INTER_AREA))
    # A fine stripe pattern (aliasing bait) averages out instead of turning into coarse stripes.
    stripes = np.zeros((720, 1280, 3), np.uint8)
    stripes[:, ::2] = 255
    assert resize_colour(stripes, (256, 448)).std() < 10


@pytest.mark.parametrize("encoding", ["bgra8", "bgr8", "rgba8", "rgb8", "mono8"])
@pytest.mark.parametrize("sensor", [(720, 1280), (96, 144)], ids=["box+bilinear", "area"])
def test_colour_in_the_cameras_channel_order_gives_the_input_of_rgb(encoding, sensor):
    """A frame from the node keeps the camera's pixels (BGRA on a ZED); the model input is the same as from RGB."""
    from road_seg_core.image_codec import to_rgb8

    rng = np.random.default_rng(3)
    channels = {"bgra8": 4, "rgba8": 4, "bgr8": 3, "rgb8": 3, "mono8": 1}[encoding]
    pixels = rng.integers(0, 256, sensor + ((channels,) if channels > 1 else ()), dtype=np.uint8)
    pre = Preprocessor(("rgb",), (64, 96))
    raw = SensorFrame.from_colour(pixels, encoding)
    assert raw.size == sensor
    fed = pre(raw)["rgb"]
    assert "_rgb" not in raw.__dict__ or raw.__dict__["_rgb"] is None  # no full-size RGB image was made
    np.testing.assert_array_equal(fed, pre(SensorFrame(rgb=to_rgb8(pixels, encoding)))["rgb"])
    np.testing.assert_array_equal(raw.rgb, to_rgb8(pixels, encoding))  # made on first read, then kept
    assert raw.rgb is raw.rgb


def test_a_frame_needs_its_left_image():
    with pytest.raises(ValueError, match="needs its left image"):
        SensorFrame(rgb=None)


def test_the_node_runs_opencv_on_the_threads_it_is_given():
    from road_seg_core.node_config import PerceptionConfig

    before = cv2.getNumThreads()
    try:
        config = PerceptionConfig().preprocess_config()
        assert config.opencv_threads == 1  # the node's default: least CPU per frame
        Preprocessor(("rgb",), (32, 64), config)
        assert cv2.getNumThreads() == 1
        cv2.setNumThreads(before)
        Preprocessor(("rgb",), (32, 64))  # 0 (training's default) leaves OpenCV alone
        assert cv2.getNumThreads() == before
        with pytest.raises(ValueError, match="preprocess_threads must be >= 0"):
            PerceptionConfig(preprocess_threads=-1)
    finally:
        cv2.setNumThreads(before)


def test_the_fast_host_path_gives_the_bundled_model_the_labels_of_the_reference_path():
    """At 1280x720 the fast paths (whole-factor box + bilinear colour, counts warped before normalising, the road
    plane tracked from the previous frame) label what the one-step reference path labels, within resize tolerance."""
    from road_seg_core.bundled import bundled_model_path
    from road_seg_core.engines import create_engine
    from road_seg_core.road_plane import RoadPlaneTracker
    from road_seg_core.synthetic import SceneStream
    from road_seg_core.thermal import normalize_thermal, resize_homography, warp_to_left

    engine = create_engine(bundled_model_path(), backend="onnxruntime")
    meta = engine.meta
    h, w = meta.input_size
    fast = Preprocessor(tuple(meta.modalities), (h, w))
    for index, scene in zip(range(3), SceneStream(11, width=1280, height=720, conditions=("day",))):
        frame = scene.frame
        ours = fast(frame)
        reference = dict(ours)
        reference["rgb"] = np.ascontiguousarray(
            cv2.resize(frame.rgb, (w, h), interpolation=cv2.INTER_AREA).transpose(2, 0, 1))[None]
        if "thermal" in reference:
            to_input = resize_homography(frame.size, (h, w)) @ fast.config.thermal.homography_matrix
            reference["thermal"] = warp_to_left(normalize_thermal(frame.thermal), to_input, (h, w))[None, None]
        if "height" in reference:  # a fresh RANSAC fit of this frame alone
            intr = frame.intrinsics.scaled(w, h)
            code = RoadPlaneTracker().height_input(fast.depth_m(frame), intr.fx, intr.fy, intr.cx, intr.cy)
            reference["height"] = code[None, None]
        assert np.abs(ours["rgb"].astype(int) - reference["rgb"]).mean() < 2.0
        agreement = (engine.infer_labels(ours)[0] == engine.infer_labels(reference)[0]).mean()
        assert agreement > 0.99, (index, agreement)
