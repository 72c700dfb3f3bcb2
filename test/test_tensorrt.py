"""TensorRT backend: cache keys and clear errors everywhere; builds and torch parity where CUDA and TensorRT exist."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
import torch

from road_seg_core.engines import create_engine
from road_seg_core.engines.base import EngineError
from road_seg_core.engines.tensorrt_build import calibration_shapes, precision_flags, profile_shapes
from road_seg_core.engines.tensorrt_engine import set_input_shape
from road_seg_core.export.engine_cache import engine_filename, engine_key, sidecar_path
from road_seg_core.export.exporter import sensor_like_inputs
from tiny_models import TINY, save_calibrated

BASE = dict(onnx_sha256="ab" * 32, trt_version="10.3.0", gpu="NVIDIA H100 80GB HBM3", compute_capability="9.0",
            precision="fp16", max_batch=1)


def test_every_key_component_changes_the_engine_file_name():
    base = engine_filename("model", engine_key(**BASE))
    assert base.endswith(".engine") and "fp16" in base and "sm90" in base and "trt10.3.0" in base
    changes = {"onnx_sha256": "cd" * 32, "trt_version": "10.4.0", "gpu": "Orin", "compute_capability": "8.7",
               "precision": "int8", "max_batch": 4, "extra": "calib:1234"}
    names = {engine_filename("model", engine_key(**{**BASE, k: v})) for k, v in changes.items()}
    assert base not in names and len(names) == len(changes)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        engine_key(**{**BASE, "precision": "fp8"})


def test_missing_tensorrt_is_a_clear_error(tmp_path, monkeypatch):
    ckpt = save_calibrated(tmp_path / "tiny.pt")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError, as on a machine without it
    with pytest.raises(EngineError, match="TensorRT"):
        create_engine(ckpt, backend="tensorrt", device="cuda", cache_dir=tmp_path)
    assert not (tmp_path / "onnx").exists(), "no export work before the environment is known to be usable"


# -- on a CUDA machine with TensorRT --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trt_env(tmp_path_factory):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT tests need a CUDA device")
    root = tmp_path_factory.mktemp("trt")
    return save_calibrated(root / "tiny.pt"), root / "cache"


@pytest.mark.gpu
@pytest.mark.parametrize("precision, min_agreement, rtol", [("fp32", 0.999, 1e-3), ("fp16", 0.99, 3e-2)])
def test_tensorrt_matches_torch(trt_env, precision, min_agreement, rtol):
    ckpt, cache = trt_env
    engine = create_engine(ckpt, backend="tensorrt", device="cuda", precision=precision, cache_dir=cache)
    reference = create_engine(ckpt, backend="torch", device="cpu")
    assert engine.precision == precision and engine.meta == reference.meta
    inputs = sensor_like_inputs(TINY.modalities, TINY.input_size, batch=2, seed=21)
    inputs["rgb"] = inputs["rgb"].round().astype(np.uint8)  # uploaded as uint8, cast on the GPU
    expected = reference.infer(inputs)
    actual = engine.infer(inputs)
    assert np.abs(expected).max() > 1.0
    assert np.abs(actual - expected).max() <= rtol * np.abs(expected).max()
    assert np.mean(actual.argmax(1) == expected.argmax(1)) >= min_agreement
    assert np.mean(engine.infer_labels(inputs) == reference.infer_labels(inputs)) >= min_agreement
    # Labels with logits (the pothole filter's thermal check), from numpy and from tensors on the GPU.
    tensors = {k: torch.from_numpy(v.astype(np.float32)).cuda() for k, v in inputs.items()}
    for labels, logits in (engine.infer_labels_and_logits(inputs), engine.infer_labels_and_logits_on_device(tensors)):
        assert logits.dtype == np.float32 and np.abs(logits - expected).max() <= rtol * np.abs(expected).max()
        np.testing.assert_array_equal(labels, logits.argmax(1))


@pytest.mark.gpu
def test_engine_is_built_once_and_stale_engines_are_refused(trt_env):
    ckpt, cache = trt_env
    create_engine(ckpt, backend="tensorrt", device="cuda", precision="fp32", cache_dir=cache)
    engines = sorted((cache / "tensorrt").glob("*fp32*.engine"))
    assert len(engines) == 1
    mtime = engines[0].stat().st_mtime_ns
    again = create_engine(ckpt, backend="tensorrt", device="cuda", precision="fp32", cache_dir=cache)
    assert again.key["precision"] == "fp32" and engines[0].stat().st_mtime_ns == mtime
    direct = create_engine(engines[0], backend="tensorrt", device="cuda")  # a bare .engine with its sidecar
    assert direct.meta == again.meta
    sidecar = json.loads(sidecar_path(engines[0]).read_text())
    sidecar["key"]["tensorrt"] = "0.0.1"
    stale = engines[0].with_name("stale.engine")
    stale.write_bytes(engines[0].read_bytes())
    sidecar_path(stale).write_text(json.dumps(sidecar))
    with pytest.raises(EngineError, match="stale"):
        create_engine(stale, backend="tensorrt", device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_batch_profile_engines_run_batches_and_calibrate_at_batch_one(trt_env, precision):
    ckpt, cache = trt_env
    try:
        engine = create_engine(ckpt, backend="tensorrt", device="cuda", precision=precision, cache_dir=cache,
                               max_batch=2)
    except EngineError as exc:
        if "ModelOpt" in str(exc):
            pytest.skip(f"TensorRT 11 {precision} needs NVIDIA ModelOpt, absent here")
        raise
    reference = create_engine(ckpt, backend="torch", device="cpu")
    for batch in (1, 2, 3):  # 3 > max_batch: run sample by sample
        inputs = sensor_like_inputs(TINY.modalities, TINY.input_size, batch=batch, seed=30 + batch)
        agreement = np.mean(engine.infer_labels(inputs) == reference.infer_labels(inputs))
        assert agreement >= (0.99 if precision == "fp16" else 0.9)


# -- build settings, checked without TensorRT -----------------------------------------------------------------------
def test_profile_is_tuned_for_batch_one_and_calibration_runs_at_batch_one():
    assert profile_shapes(3, (192, 320), max_batch=1) == ((1, 3, 192, 320),) * 3
    low, opt, high = profile_shapes(1, (192, 320), max_batch=4)
    assert low == opt == (1, 1, 192, 320) and high == (4, 1, 192, 320)  # the node runs batch 1
    # INT8 with max_batch > 1: the calibrator hands one-frame buffers, so TensorRT must calibrate at batch 1
    assert calibration_shapes(3, (192, 320)) == ((1, 3, 192, 320),) * 3


def test_fp32_clears_tf32_and_reduced_precision_sets_its_flags():
    for strongly_typed in (False, True):
        assert precision_flags("fp32", strongly_typed) == ((), ("TF32",))
    assert precision_flags("fp16", False) == (("FP16",), ())
    assert precision_flags("int8", False) == (("FP16", "INT8"), ())
    assert precision_flags("fp16", True) == ((), ())  # TensorRT 11: precision is in the graph's types
    with pytest.raises(EngineError, match="precision"):
        precision_flags("fp8", False)


def test_a_refused_input_shape_is_an_error_not_a_stale_shape(tmp_path):
    class Context:  # IExecutionContext.set_input_shape(name, shape) -> bool
        def set_input_shape(self, name, shape):
            return shape[0] <= 2

    set_input_shape(Context(), "rgb", (2, 3, 64, 96), tmp_path / "m.engine")
    with pytest.raises(EngineError, match=r"refused input shape \(3, 3, 64, 96\) for 'rgb'"):
        set_input_shape(Context(), "rgb", (3, 3, 64, 96), tmp_path / "m.engine")


def test_tensorrt_is_imported_after_torch():
    """A fresh interpreter where `import tensorrt` records whether torch was already loaded (and then fails,
    as on a machine without TensorRT)."""
    code = textwrap.dedent("""
        import importlib.abc, sys
        seen = []
        class Probe(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "tensorrt":
                    seen.append("torch" in sys.modules)
                    raise ImportError("no tensorrt here")
        sys.meta_path.insert(0, Probe())
        from road_seg_core.engines.base import EngineError
        from road_seg_core.engines.tensorrt_build import require_tensorrt
        assert "torch" not in sys.modules, "the module must not import torch itself at import time"
        try:
            require_tensorrt("cuda")
        except EngineError:
            pass
        print(seen)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[True]"


def test_fp16_on_tensorrt_11_needs_modelopt_autocast_only(tmp_path, monkeypatch):
    import onnx

    from road_seg_core.engines import tensorrt_build

    source = tmp_path / "in.onnx"
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(source))
    calls = []
    autocast = types.ModuleType("modelopt.onnx.autocast")

    def convert_to_mixed_precision(onnx_path, low_precision_type="fp16", keep_io_types=False, **_):
        calls.append((onnx_path, low_precision_type, keep_io_types))
        return onnx.load(onnx_path)

    autocast.convert_to_mixed_precision = convert_to_mixed_precision
    for name, module in (("modelopt", types.ModuleType("modelopt")), ("modelopt.onnx", types.ModuleType("m.o")),
                         ("modelopt.onnx.autocast", autocast), ("modelopt.onnx.quantization", None)):
        monkeypatch.setitem(sys.modules, name, module)  # quantization unimportable: fp16 must not need it
    out = tensorrt_build._convert_for_strong_typing(source, "fp16", None, tmp_path / "out.fp16.onnx")
    assert out.is_file() and calls == [(str(source), "fp16", True)]
    with pytest.raises(EngineError) as error:
        tensorrt_build._convert_for_strong_typing(source, "int8", [{"x": np.zeros(1, np.float32)}],
                                                   tmp_path / "out.int8.onnx")
    assert "without its [onnx] extra" in str(error.value) and "nvidia-modelopt[onnx]'" not in str(error.value)
