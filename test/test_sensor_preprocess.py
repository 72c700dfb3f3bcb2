"""Preprocessing on the engine's device (torch) against the OpenCV host path: same inputs, same labels.

Run here on the CPU device (the same torch ops a GPU runs); the GPU case itself is a `gpu` test.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from road_seg_core.bundled import bundled_model_path
from road_seg_core.engines import create_engine
from road_seg_core.engines.sensor_preprocess import SensorPreprocessor, area_weights, nearest_index
from road_seg_core.frames import SensorFrame
from road_seg_core.pipeline import SegmentationPipeline
from road_seg_core.preprocess import PreprocessConfig, Preprocessor
from road_seg_core.synthetic import render_scene
from road_seg_core.thermal import ThermalConfig

ALL = ("rgb", "depth", "disparity", "thermal")
TILTED = ((1.02, 0.01, -8.0), (0.0, 0.99, 5.0), (0.0, 0.0, 1.0))  # a calibrated thermal camera's homography


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scenes():
    return [render_scene(i, width=640, height=360, condition=c).frame for i, c in enumerate(("day", "night", "fog"))]


@pytest.mark.parametrize("src, dst", [((360, 640), (96, 160)), ((360, 640), (192, 320)), ((128, 192), (64, 96)),
                                      ((48, 64), (64, 96))])
def test_resize_tables_are_opencv_area_and_nearest(src, dst):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
    expected = cv2.resize(image, dst[::-1], interpolation=cv2.INTER_AREA).astype(np.float64)
    rows, cols = area_weights(src[0], dst[0]), area_weights(src[1], dst[1])
    ours = np.einsum("hH,HWc,wW->hwc", rows, image.astype(np.float64), cols, optimize=True)
    tolerance = 0.5 + 1e-6 if dst[0] <= src[0] else 1.0  # OpenCV rounds to uint8 (and enlarges in fixed point)
    assert np.abs(ours - expected).max() <= tolerance
    depth = rng.random(src, dtype=np.float32)
    nearest = cv2.resize(depth, dst[::-1], interpolation=cv2.INTER_NEAREST_EXACT)
    np.testing.assert_array_equal(depth[np.ix_(nearest_index(src[0], dst[0]), nearest_index(src[1], dst[1]))],
                                  nearest)


@pytest.mark.parametrize("config", [PreprocessConfig(), PreprocessConfig(thermal=ThermalConfig(mode="fixed")),
                                    PreprocessConfig(thermal=ThermalConfig(homography=TILTED)),
                                    PreprocessConfig(depth_source="disparity", min_depth_m=1.0, max_depth_m=25.0)],
                         ids=["default", "fixed-thermal", "tilted-thermal", "disparity-source"])
def test_device_inputs_equal_the_host_inputs(scenes, config):
    size = (96, 160)
    host, device = Preprocessor(ALL, size, config), SensorPreprocessor(ALL, size, config, "cpu")
    for frame in scenes:
        expected, actual = host(frame), device(frame)
        assert set(actual) == set(ALL) and all(t.dtype == torch.float32 for t in actual.values())
        for name in ALL:
            a, b = expected[name].astype(np.float32), actual[name].numpy()
            assert a.shape == b.shape, name
            assert np.abs(a - b).max() <= _tolerance(name, config, a), name
            assert np.array_equal(a > 0, b > 0) or name == "rgb", f"{name}: validity differs"


def test_device_colour_in_the_cameras_channel_order_equals_rgb(scenes):
    """BGRA (a ZED's left image) is uploaded as it is and its planes picked on the device: same input as RGB."""
    device = SensorPreprocessor(("rgb",), (96, 160), None, "cpu")
    rgb = scenes[0].rgb
    bgra = SensorFrame.from_colour(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA), "bgra8")
    torch.testing.assert_close(device(bgra)["rgb"], device(SensorFrame(rgb=rgb))["rgb"], rtol=0, atol=0)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    torch.testing.assert_close(device(SensorFrame.from_colour(grey, "mono8"))["rgb"],
                               device(SensorFrame(rgb=cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)))["rgb"], rtol=0, atol=0)


def _tolerance(name: str, config: PreprocessConfig, host: np.ndarray) -> float:
    if name == "rgb":
        # OpenCV rounds colour to uint8 and blends bilinear in 11-bit fixed point (weights off by up to 2^-12 each
        # way, a quarter of a grey level over a 255 step in two dimensions); the device blends in float.
        return 0.5 + 0.26
    if name == "thermal":
        # The host warps the 16-bit counts with OpenCV (5-bit fixed-point bilinear positions, 1/32 px, and results
        # rounded to whole counts): off by up to a 1/32 share of one pixel step, where torch interpolates in float.
        return 1.0 / 32
    return 1e-4 * max(1.0, float(np.abs(host).max()))


def test_missing_sensors_float_thermal_holes_and_stereo_on_the_host(scenes):
    frame = scenes[0]
    thermal = frame.thermal.astype(np.float32)
    thermal[100:140, 200:260] = np.nan  # a dead region of a float thermal image
    holes = SensorFrame(rgb=frame.rgb, thermal=thermal, intrinsics=frame.intrinsics)
    size = (96, 160)
    expected = Preprocessor(("rgb", "depth", "thermal"), size)(holes)
    actual = SensorPreprocessor(("rgb", "depth", "thermal"), size, device="cpu")(holes)
    assert not actual["depth"].any()  # no depth sensor: zeros, as on the host
    np.testing.assert_allclose(actual["thermal"].numpy(), expected["thermal"], atol=1e-4)
    assert (actual["thermal"] == 0).sum() == (expected["thermal"] == 0).sum() > 0
    stereo = SensorPreprocessor(("rgb", "disparity"), size, PreprocessConfig(depth_source="stereo"), "cpu")
    assert stereo.host_modalities == ("disparity",)  # SGBM stays on the CPU
    np.testing.assert_array_equal(stereo(frame)["disparity"].numpy(),
                                  Preprocessor(("rgb", "disparity"), size, PreprocessConfig(depth_source="stereo"))(
                                      frame)["disparity"])


def test_derived_height_input_is_computed_on_the_host_and_uploaded(scenes):
    modalities = ("rgb", "depth", "height")
    host, device = Preprocessor(modalities, (96, 160)), SensorPreprocessor(modalities, (96, 160), device="cpu")
    assert device.host_modalities == ("height",)
    for frame in scenes:  # the same sequence: the road-plane trackers behind both see the same frames
        expected, actual = host(frame), device(frame)
        np.testing.assert_array_equal(actual["height"].numpy(), expected["height"])
        assert actual["height"].any()
    device.reset()


def test_bundled_model_labels_are_the_same_with_preprocessing_on_the_engine(tmp_path):
    """The demo model at its 192x320 on 1280x720 scenes: host (OpenCV) vs engine-side (torch) preprocessing,
    through the torch engine and through onnxruntime fed by address."""
    checkpoint = bundled_model_path()
    torch_engine = create_engine(checkpoint, backend="torch", device="cpu")
    ort_engine = create_engine(checkpoint, backend="onnxruntime", device="cpu", threads=1, cache_dir=tmp_path)
    host = SegmentationPipeline(torch_engine, preprocess_on="host")
    on_engine = SegmentationPipeline(torch_engine, preprocess_on="engine")
    on_ort = SegmentationPipeline(ort_engine, preprocess_on="engine")
    assert not host.on_device and on_engine.on_device and on_ort.on_device
    assert not SegmentationPipeline(torch_engine).on_device  # auto on a CPU: the host path (it is faster there)
    for seed, condition in ((0, "day"), (1, "night"), (2, "fog")):
        frame = render_scene(seed, width=1280, height=720, condition=condition).frame
        expected = host.run(frame).masks.labels
        for pipeline in (on_engine, on_ort):
            labels = pipeline.run(frame).masks.labels
            assert labels.shape == expected.shape == (720, 1280)
            assert np.mean(labels == expected) >= 0.998, condition


def test_preprocess_on_is_checked():
    engine = create_engine(bundled_model_path(), backend="torch", device="cpu")
    with pytest.raises(ValueError, match="preprocess_on"):
        SegmentationPipeline(engine, preprocess_on="gpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_preprocessing_matches_the_host_and_feeds_the_engine(scenes):
    device = SensorPreprocessor(ALL, (96, 160), device="cuda")
    host = Preprocessor(ALL, (96, 160))
    for frame in scenes:
        actual, expected = device(frame), host(frame)
        for name in ALL:
            assert actual[name].is_cuda
            assert np.abs(actual[name].cpu().numpy() - expected[name]).max() <= (0.5 + 1e-4 if name == "rgb"
                                                                                   else 1e-3), name
    engine = create_engine(bundled_model_path(), backend="torch", device="cuda")
    assert engine.sensor_device.startswith("cuda") and SegmentationPipeline(engine).on_device
    frame = render_scene(0, width=1280, height=720, condition="day").frame
    reference = SegmentationPipeline(engine, preprocess_on="host").run(frame).masks.labels
    assert np.mean(SegmentationPipeline(engine).run(frame).masks.labels == reference) >= 0.995
