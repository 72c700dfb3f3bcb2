"""The "height" input end to end: declared by a checkpoint, computed by the pipeline, exported to ONNX; models
without it (the previous bundled model, older checkpoints) load and run exactly as before."""
import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from road_seg_core import labels as L
from road_seg_core import synthetic
from road_seg_core.bundled import bundled_model_path
from road_seg_core.checkpoint import load_checkpoint
from road_seg_core.engines import create_engine
from road_seg_core.pipeline import SegmentationPipeline
from road_seg_core.road_plane import HEIGHT_DATUM_M
from tiny_models import TINY, save_calibrated

REPO = Path(__file__).resolve().parents[1]
#: The bundled model before the height input (rgb + depth + thermal); the demo config fine-tunes from it.
PREVIOUS_BUNDLED = REPO / "road_seg_training" / "configs" / "demo_init.pt"
HEIGHT_TINY = dataclasses.replace(TINY, modalities=("rgb", "depth", "thermal", "height"))


@pytest.fixture(scope="module")
def scene():
    return synthetic.render_scene(3, width=192, height=108)


def _inputs_seen(pipeline: SegmentationPipeline, scene) -> dict[str, np.ndarray]:
    return pipeline.preprocessor(scene.frame)


@pytest.mark.parametrize("path", [PREVIOUS_BUNDLED, None], ids=["previous-bundled", "bundled"])
def test_bundled_models_old_and_new_load_and_run(path, scene):
    path = path or bundled_model_path()
    ckpt = load_checkpoint(path)
    engine = create_engine(path)
    pipeline = SegmentationPipeline(engine)
    inputs = _inputs_seen(pipeline, scene)
    assert set(inputs) == set(ckpt.config.modalities)
    result = pipeline.run(scene.frame)
    assert result.masks.labels.shape == scene.labels.shape
    if "height" in ckpt.config.modalities:
        assert pipeline.preprocessor.road_plane.last_status == "fit"


def test_previous_bundled_model_is_the_old_three_sensor_format():
    config = load_checkpoint(PREVIOUS_BUNDLED).config
    assert config.modalities == ("rgb", "depth", "thermal") and "height" not in config.norms


def test_a_height_checkpoint_round_trips_and_the_pipeline_feeds_it_the_road_residual(tmp_path, scene):
    path = save_calibrated(tmp_path / "height.pt", HEIGHT_TINY)
    ckpt = load_checkpoint(path)
    assert ckpt.config.modalities[-1] == "height" and ckpt.config.norms["height"].mean == (1.0,)
    pipeline = SegmentationPipeline(create_engine(path))
    height = pipeline.preprocessor(scene.frame)["height"][0, 0]
    assert height.shape == tuple(HEIGHT_TINY.input_size)
    h, w = height.shape
    labels = cv2.resize(scene.labels, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    road = (labels == L.DRIVABLE) & (height > 0)
    assert road.sum() > 100
    assert abs(float(np.median(height[road])) - HEIGHT_DATUM_M) < 0.05  # the road is at height 0
    above = (labels == L.POSITIVE_OBSTACLE) & (height > 0)
    if above.any():
        assert float(np.median(height[above])) > HEIGHT_DATUM_M + 0.05
    pipeline.preprocessor.reset()  # both backends fit the plane afresh (no tracking from the call above)
    torch_labels = pipeline.run(scene.frame).masks.labels
    onnx = SegmentationPipeline(create_engine(path, backend="onnxruntime", cache_dir=tmp_path / "cache"))
    agreement = (onnx.run(scene.frame).masks.labels == torch_labels).mean()
    assert agreement > 0.99


def test_until_camera_info_arrives_a_height_model_still_gets_every_frame():
    """A replay or a driver that starts its camera_info late costs the height input, not the frames."""
    import functools

    from road_seg_core.input_plan import plan_inputs
    from road_seg_core.node_config import PerceptionConfig
    from road_seg_core.reception import Reception
    from road_seg_ros.bench_stages import received_messages
    from road_seg_ros.conversions import image_to_array

    engine = create_engine(bundled_model_path())
    cfg = PerceptionConfig()
    plan = plan_inputs(tuple(engine.meta.modalities), cfg)
    assert "height" in engine.meta.modalities and plan.needs_camera_info and not plan.requires_camera_info
    reception = Reception(plan, cfg, functools.partial(image_to_array, use_cv_bridge=False))
    pipeline = SegmentationPipeline(engine)
    messages = received_messages((180, 320), frames=2)
    fractions = []
    for index, msgs in enumerate(messages):
        if index == 1:  # camera_info arrives after the first frame
            reception.receive_camera_info("left_info", msgs.left_info)
            reception.receive_camera_info("right_info", msgs.right_info)
        matched = []
        for key in plan.keys:
            matched += reception.receive(key, getattr(msgs, key), 1_000_000_000 + index * 100_000_000)
        assert len(matched) == 1
        frame = reception.assemble(matched[0])
        assert (frame.intrinsics is None) == (index == 0)
        assert pipeline.run(frame).masks.labels.shape == (180, 320)
        fractions.append(pipeline.preprocessor.last_valid_fraction["height"])
    assert fractions[0] == 0.0 and fractions[1] > 0.5
