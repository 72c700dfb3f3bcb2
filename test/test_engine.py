"""Inference engines: the shared numpy contract (base class), the torch backend and the backend registry."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import road_seg_core.engines as engines
from road_seg_core.checkpoint import CheckpointError, save_checkpoint
from road_seg_core.engines import EngineError, InferenceEngine, ModelMeta, create_engine, register_backend
from road_seg_core.engines.torch_engine import TorchEngine
from road_seg_core.models import ModelConfig, build_model

SIZE = (64, 96)
CONFIG = ModelConfig(modalities=("rgb", "depth", "thermal"), encoder="mobilenet_v3_small", width_mult=0.5,
                     decoder_channels=16, input_size=SIZE)


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(CONFIG).train()
    with torch.no_grad():  # realistic BN statistics so logits are not all ~0 in eval mode
        for _ in range(2):
            model({"rgb": torch.rand(2, 3, *SIZE) * 255, "depth": torch.rand(2, 1, *SIZE) * 30,
                   "thermal": torch.rand(2, 1, *SIZE)})
    path = tmp_path_factory.mktemp("engine") / "model.pt"
    save_checkpoint(path, model, CONFIG)
    return path


@pytest.fixture(scope="module")
def engine(checkpoint_path):
    return create_engine(checkpoint_path, backend="torch", device="cpu")


def frame(batch=2, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    depth = (rng.random((batch, 1, *SIZE)) * 30).astype(np.float32)
    depth[rng.random(depth.shape) < 0.2] = 0.0
    return {"rgb": rng.integers(0, 256, (batch, 3, *SIZE), dtype=np.uint8),
            "depth": depth,
            "thermal": rng.random((batch, 1, *SIZE), dtype=np.float32)}


class RecordingEngine(InferenceEngine):
    """Minimal backend: records what `_forward` receives, returns logits favouring class 2."""

    backend = "recording"

    def __init__(self, fixed_input_size=False, accepts_uint8=False):
        super().__init__(ModelMeta.from_config(CONFIG), "cpu", "fp32")
        self.fixed_input_size = fixed_input_size
        self.accepts_uint8 = accepts_uint8
        self.calls: list[dict[str, np.ndarray]] = []

    def _forward(self, inputs):
        self.calls.append(inputs)
        batch, _, height, width = inputs["rgb"].shape
        logits = np.zeros((batch, 4, height, width), np.float32)
        logits[:, 2] = 1.0
        return logits


def test_engine_metadata(engine):
    assert engine.backend == "torch" and engine.device == "cpu" and engine.precision == "fp32"
    assert engine.meta.modalities == ("rgb", "depth", "thermal")
    assert engine.meta.input_size == SIZE and engine.meta.num_classes == 4
    assert engine.meta.config == CONFIG


def test_infer_matches_the_torch_model(engine, checkpoint_path):
    from road_seg_core.checkpoint import load_model

    model, _ = load_model(checkpoint_path)
    inputs = frame()
    logits = engine.infer(inputs)
    assert logits.shape == (2, 4, *SIZE) and logits.dtype == np.float32
    with torch.no_grad():
        expected = model({k: torch.from_numpy(v) for k, v in inputs.items()}).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(logits).max() > 0.1


def test_infer_labels_is_the_argmax(engine):
    inputs = frame()
    labels = engine.infer_labels(inputs)
    assert labels.shape == (2, *SIZE) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, engine.infer(inputs).argmax(axis=1))


def test_labels_and_logits_come_from_one_run(engine):
    """The torch engine on numpy and on tensor inputs, and the base class's default, agree with `infer`."""
    inputs = frame()
    logits = engine.infer(inputs)
    tensors = {k: torch.from_numpy(v.astype(np.float32)) for k, v in inputs.items()}
    for labels, got in (engine.infer_labels_and_logits(inputs), engine.infer_labels_and_logits_on_device(tensors),
                        InferenceEngine.infer_labels_and_logits(engine, inputs)):
        assert labels.dtype == np.uint8 and got.dtype == np.float32 and got.shape == (2, 4, *SIZE)
        np.testing.assert_array_equal(labels, logits.argmax(axis=1))
        np.testing.assert_allclose(got, logits, rtol=1e-5, atol=1e-5)


def test_missing_modality_is_fed_as_zeros(engine):
    inputs = frame(batch=1)
    without_depth = {k: v for k, v in inputs.items() if k != "depth"}
    np.testing.assert_array_equal(engine.infer(without_depth),
                                  engine.infer({**without_depth, "depth": np.zeros_like(inputs["depth"])}))


def test_uint8_and_float_rgb_agree_and_float64_is_accepted(engine):
    inputs = frame(batch=1)
    as_float = {**inputs, "rgb": inputs["rgb"].astype(np.float32)}
    as_double = {k: v.astype(np.float64) for k, v in inputs.items()}
    reference = engine.infer(inputs)
    np.testing.assert_allclose(engine.infer(as_float), reference, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(engine.infer(as_double), reference, rtol=1e-6, atol=1e-6)


def test_read_only_and_strided_inputs(engine):
    inputs = frame(batch=1)
    reference = engine.infer(inputs)
    read_only = {k: v.copy() for k, v in inputs.items()}
    for array in read_only.values():
        array.flags.writeable = False
    nhwc = np.ascontiguousarray(inputs["rgb"].transpose(0, 2, 3, 1))  # e.g. straight from an image buffer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(engine.infer(read_only), reference)
        np.testing.assert_array_equal(engine.infer({**inputs, "rgb": nhwc.transpose(0, 3, 1, 2)}), reference)


def test_warmup_runs_zero_frames():
    fake = RecordingEngine()
    fake.warmup(iterations=3)
    assert len(fake.calls) == 3
    assert all(set(call) == {"rgb", "depth", "thermal"} for call in fake.calls)
    assert all(not a.any() and a.shape[2:] == SIZE for call in fake.calls for a in call.values())


def test_warmup_on_torch_engine(engine):
    engine.warmup(iterations=1)


def test_base_fills_missing_modalities_in_model_order():
    fake = RecordingEngine()
    fake.infer({"thermal": np.ones((2, 1, 32, 64), np.float32)})
    (call,) = fake.calls
    assert list(call) == ["rgb", "depth", "thermal"]
    assert call["rgb"].shape == (2, 3, 32, 64) and call["rgb"].dtype == np.float32 and not call["rgb"].any()
    assert call["depth"].shape == (2, 1, 32, 64) and call["thermal"].all()


def test_base_converts_uint8_rgb_unless_backend_takes_it():
    rgb = np.full((1, 3, *SIZE), 200, np.uint8)
    converting, passthrough = RecordingEngine(), RecordingEngine(accepts_uint8=True)
    converting.infer({"rgb": rgb})
    passthrough.infer({"rgb": rgb})
    assert converting.calls[0]["rgb"].dtype == np.float32 and converting.calls[0]["rgb"].max() == 200.0
    assert passthrough.calls[0]["rgb"].dtype == np.uint8


def test_base_default_infer_labels():
    assert (RecordingEngine().infer_labels({"rgb": np.zeros((1, 3, *SIZE), np.float32)}) == 2).all()


def test_fixed_input_size_engines_reject_other_sizes():
    fixed = RecordingEngine(fixed_input_size=True)
    fixed.infer({"rgb": np.zeros((1, 3, *SIZE), np.float32)})
    with pytest.raises(ValueError, match="runs at 64x96 only, got 96x96"):
        fixed.infer({"rgb": np.zeros((1, 3, 96, 96), np.float32)})


@pytest.mark.parametrize("inputs, message", [
    ({"lidar": np.zeros((1, 1, *SIZE), np.float32)}, r"\['lidar'\] are not modalities"),
    ({}, "no input given"),
    ({"rgb": np.zeros((3, *SIZE), np.float32)}, r"rgb must be \(B, 3, H, W\)"),
    ({"depth": np.zeros((1, 3, *SIZE), np.float32)}, r"depth must be \(B, 1, H, W\)"),
    ({"rgb": np.zeros((1, 3, *SIZE), np.float32), "depth": np.zeros((2, 1, *SIZE), np.float32)}, "batch/size"),
    ({"rgb": np.zeros((1, 3, 60, 96), np.float32)}, "multiples of 32"),
    ({"depth": np.zeros((1, 1, *SIZE), np.uint16)}, "depth must be float32"),
    ({"rgb": np.zeros((1, 3, *SIZE), np.int32)}, "rgb must be float32 or uint8"),
])
def test_bad_inputs_are_rejected(engine, inputs, message):
    with pytest.raises(ValueError, match=message):
        engine.infer(inputs)


def test_fp16_on_cpu_is_an_error(checkpoint_path):
    with pytest.raises(EngineError, match="fp16 inference needs a CUDA device"):
        create_engine(checkpoint_path, device="cpu", fp16=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is absent")
def test_cuda_requested_without_cuda(checkpoint_path):
    with pytest.raises(EngineError, match="'cuda' requested but CUDA is not available"):
        create_engine(checkpoint_path, device="cuda")


def test_invalid_device_string(checkpoint_path):
    with pytest.raises(EngineError, match="invalid torch device 'gpu0'"):
        create_engine(checkpoint_path, device="gpu0")
    with pytest.raises(EngineError, match="supports cpu and cuda"):
        create_engine(checkpoint_path, device="meta")


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="absent.pt: file not found"):
        create_engine(tmp_path / "absent.pt")


def test_unknown_backend_lists_the_known_ones(checkpoint_path):
    with pytest.raises(ValueError, match="unknown inference backend 'tensorflow'; known: .*torch"):
        create_engine(checkpoint_path, backend="tensorflow")


def test_registered_backends_are_created_by_name(monkeypatch, checkpoint_path):
    monkeypatch.setattr(engines.Backends, "IMPORTERS", dict(engines.Backends.IMPORTERS))
    received = {}

    def factory(path, device="cpu", **opts):
        received.update(path=path, device=device, **opts)
        return RecordingEngine()

    register_backend("recording", lambda: factory)
    engine = create_engine(checkpoint_path, backend="recording", device="cuda", workspace_mb=64)
    assert isinstance(engine, RecordingEngine)
    assert received == {"path": checkpoint_path, "device": "cuda", "workspace_mb": 64}
    assert "recording" in engines.available_backends()
    with pytest.raises(ValueError, match="already registered"):
        register_backend("recording", lambda: factory)
    register_backend("recording", lambda: factory, replace=True)


def test_lazy_backend_that_cannot_import_fails_only_when_used(monkeypatch, checkpoint_path):
    monkeypatch.setattr(engines.Backends, "IMPORTERS", dict(engines.Backends.IMPORTERS))

    def importer():
        from road_seg_core.engines import not_a_module_here  # noqa: F401 (absent on purpose)

    register_backend("fake_trt", importer)  # registering imports nothing
    with pytest.raises(EngineError, match="backend 'fake_trt' is not usable here"):
        create_engine(checkpoint_path, backend="fake_trt")
    with pytest.raises(ValueError, match="importer function"):
        register_backend("bad", "road_seg_core.engines.torch_engine:create_torch_engine")


def test_torch_engine_accepts_a_model_directly():
    model = build_model(CONFIG)
    engine = TorchEngine(model, ModelMeta.from_config(CONFIG))
    assert not engine.model.training
    assert engine.infer({"rgb": np.zeros((1, 3, *SIZE), np.uint8)}).shape == (1, 4, *SIZE)


def test_engine_is_a_context_manager(engine):
    with engine as same:
        assert same is engine
    assert "TorchEngine(backend='torch'" in repr(engine)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_agrees_with_cpu(engine, checkpoint_path):
    gpu = create_engine(checkpoint_path, device="cuda")
    assert gpu.precision == "fp16" and gpu.device.startswith("cuda")
    assert gpu.model.encoders["rgb"].stages[0][0][0].weight.is_contiguous(memory_format=torch.channels_last)
    inputs = frame(batch=2)
    np.testing.assert_allclose(gpu.infer(inputs), engine.infer(inputs), atol=0.05, rtol=0.05)
    assert (gpu.infer_labels(inputs) == engine.infer_labels(inputs)).mean() > 0.99


def test_auto_device_with_a_gpu_and_cpu_only_onnxruntime_runs_on_the_cpu(monkeypatch, caplog, checkpoint_path,
                                                                           tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU visible to torch
    assert engines.resolve_auto_device("auto", "torch") == "cuda"
    with caplog.at_level("WARNING", logger="road_seg_core.engines"):
        engine = create_engine(checkpoint_path, backend="onnxruntime", device="auto", cache_dir=tmp_path,
                               threads=1)
    assert engine.device == "cpu"
    lines = [r.getMessage() for r in caplog.records if r.name == "road_seg_core.engines"]
    assert len(lines) == 1 and "no CUDA provider" in lines[0] and "cpu" in lines[0]
    with pytest.raises(EngineError, match="no CUDA provider"):  # asked for cuda explicitly: still an error
        create_engine(checkpoint_path, backend="onnxruntime", device="cuda", cache_dir=tmp_path)
