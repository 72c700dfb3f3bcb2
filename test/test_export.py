"""ONNX export and the onnxruntime backend: graph validity, self-describing metadata, parity with PyTorch."""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
import torch

from road_seg_core.checkpoint import load_checkpoint, load_model
from road_seg_core.engines import create_engine
from road_seg_core.engines.base import EngineError
from road_seg_core.export import (
    METADATA_KEY,
    OUTPUT_NAME,
    ExportError,
    cached_onnx,
    export_onnx,
    read_onnx_info,
    sensor_like_inputs,
    sha256_file,
)
from tiny_models import TINY, save_calibrated
from road_seg_cli import main as cli


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and spinning thread pools crawl on a shared CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_calibrated(tmp_path_factory.mktemp("export") / "tiny.pt")


@pytest.fixture(scope="module")
def static_onnx(ckpt, tmp_path_factory):
    """Exported through the `road-seg export` command line, as a user would."""
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    assert cli.main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def dynamic_onnx(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny_dynamic.onnx"
    report = export_onnx(ckpt, out, dynamic=True)
    assert report is not None and report.ok and report.batch == 2
    return out


def _torch_logits(ckpt, inputs: dict[str, np.ndarray]) -> np.ndarray:
    model, _ = load_model(ckpt)
    with torch.inference_mode():
        return model({m: torch.from_numpy(x) for m, x in inputs.items()}).numpy()


def _assert_parity(actual: np.ndarray, reference: np.ndarray) -> None:
    assert np.abs(reference).max() > 1.0, "reference logits too small for a meaningful comparison"
    assert actual.shape == reference.shape
    assert np.abs(actual - reference).max() <= 1e-4 + 1e-4 * np.abs(reference).max()
    assert np.mean(actual.argmax(1) == reference.argmax(1)) >= 0.999


def test_export_is_a_valid_graph_with_named_sensor_inputs(static_onnx, capsys):
    model = onnx.load(str(static_onnx))
    onnx.checker.check_model(model, full_check=True)
    h, w = TINY.input_size
    inputs = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert inputs == {"rgb": [1, 3, h, w], "depth": [1, 1, h, w], "thermal": [1, 1, h, w]}
    assert [o.name for o in model.graph.output] == [OUTPUT_NAME]
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in model.graph.input)


def test_metadata_makes_the_file_self_describing(ckpt, static_onnx):
    checkpoint = load_checkpoint(ckpt)
    info = read_onnx_info(static_onnx)
    assert info.config == checkpoint.config
    assert info.modalities == ("rgb", "depth", "thermal")
    assert info.class_names == checkpoint.config.class_names
    assert info.input_size == TINY.input_size and not info.dynamic
    assert info.checkpoint_sha256 == sha256_file(ckpt)
    assert info.provenance["purpose"] == "export tests"  # the checkpoint's provenance travels on
    assert info.provenance["exported_from"] == str(ckpt.resolve())
    raw = {p.key: p.value for p in onnx.load(str(static_onnx)).metadata_props}
    meta = json.loads(raw[METADATA_KEY])
    assert meta["norms"]["rgb"]["scale"] == 255.0 and meta["norms"]["depth"]["mean"] == [0.5]
    assert meta["class_names"] == list(checkpoint.config.class_names)


def test_onnxruntime_matches_torch_on_cpu(ckpt, static_onnx):
    inputs = sensor_like_inputs(TINY.modalities, TINY.input_size, batch=1, seed=11)
    engine = create_engine(static_onnx, backend="onnxruntime", device="cpu", threads=1)
    assert engine.backend == "onnxruntime" and engine.device == "cpu" and engine.fixed_input_size
    _assert_parity(engine.infer(inputs), _torch_logits(ckpt, inputs))


def test_onnxruntime_engine_behaves_like_the_torch_engine(ckpt, static_onnx):
    ort_engine = create_engine(static_onnx, backend="onnxruntime", device="cpu", threads=1)
    torch_engine = create_engine(ckpt, backend="torch", device="cpu")
    assert ort_engine.meta == torch_engine.meta
    inputs = sensor_like_inputs(TINY.modalities, TINY.input_size, batch=2, seed=12)
    inputs["rgb"] = inputs["rgb"].round().astype(np.uint8)  # what the preprocessor produces
    without_thermal = {m: x for m, x in inputs.items() if m != "thermal"}  # sensor down -> zeros
    for batch in (inputs, without_thermal):
        labels = ort_engine.infer_labels(batch)
        assert labels.dtype == np.uint8 and labels.shape == (2, *TINY.input_size)
        assert np.mean(labels == torch_engine.infer_labels(batch)) >= 0.999
    with pytest.raises(ValueError, match="only"):
        ort_engine.infer(sensor_like_inputs(TINY.modalities, (96, 128), batch=1, seed=0))


def test_dynamic_export_runs_other_batches_and_sizes(ckpt, dynamic_onnx):
    model = onnx.load(str(dynamic_onnx))
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] and dims[2] and dims[3]  # symbolic batch, height, width
    engine = create_engine(dynamic_onnx, backend="onnxruntime", device="cpu", threads=1)
    assert read_onnx_info(dynamic_onnx).dynamic and not engine.fixed_input_size
    inputs = sensor_like_inputs(TINY.modalities, (96, 160), batch=3, seed=13)
    _assert_parity(engine.infer(inputs), _torch_logits(ckpt, inputs))


def test_checkpoint_is_exported_once_into_the_cache(ckpt, tmp_path):
    first = create_engine(ckpt, backend="onnxruntime", device="cpu", cache_dir=tmp_path,
                          threads=1)
    exported = list((tmp_path / "onnx").glob("*.onnx"))
    assert len(exported) == 1 and first.onnx_path == exported[0]
    mtime = exported[0].stat().st_mtime_ns
    second = create_engine(ckpt, backend="onnxruntime", device="cpu", cache_dir=tmp_path,
                          threads=1)
    assert second.onnx_path == exported[0] and exported[0].stat().st_mtime_ns == mtime
    # Retrained weights under the same file name: a new cache entry, never the stale export.
    save_calibrated(ckpt.parent / "retrained.pt", seed=1)
    os.replace(ckpt.parent / "retrained.pt", tmp_path / ckpt.name)
    third = cached_onnx(tmp_path / ckpt.name, tmp_path)
    assert third != exported[0] and read_onnx_info(third).checkpoint_sha256 == sha256_file(tmp_path / ckpt.name)


def test_bad_requests_fail_clearly(ckpt, tmp_path):
    with pytest.raises(ExportError, match="multiples of 32"):
        export_onnx(ckpt, tmp_path / "bad.onnx", input_size=(70, 96))
    assert not (tmp_path / "bad.onnx").exists()
    foreign = tmp_path / "foreign.onnx"
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    with pytest.raises(ExportError, match="no 'road_seg' metadata"):
        read_onnx_info(foreign)
    with pytest.raises(EngineError, match="no 'road_seg' metadata"):
        create_engine(foreign, backend="onnxruntime", device="cpu", threads=1)


def test_cuda_without_the_cuda_provider_is_refused(ckpt):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    with pytest.raises(EngineError, match="no CUDA provider"):
        create_engine(ckpt, backend="onnxruntime", device="cuda")


def test_onnxruntime_labels_come_from_the_graph_and_io_binding_gives_the_same(static_onnx, dynamic_onnx):
    inputs = sensor_like_inputs(TINY.modalities, TINY.input_size, batch=2, seed=14)
    for path in (static_onnx, dynamic_onnx):
        plain = create_engine(path, backend="onnxruntime", device="cpu", threads=1)
        bound = create_engine(path, backend="onnxruntime", device="cpu", threads=1, io_binding=True)
        assert not plain.io_binding and bound.io_binding  # cpu: plain runs unless asked
        assert [o.name for o in plain.session.get_outputs()] == [OUTPUT_NAME, "labels"]
        expected = plain.infer(inputs).argmax(1).astype(np.uint8)
        for engine in (plain, bound):
            labels = engine.infer_labels(inputs)
            assert labels.dtype == np.uint8 and labels.shape == (2, *TINY.input_size)
            np.testing.assert_array_equal(labels, expected)
            # Both outputs of one run (what the pothole filter's thermal check reads), from numpy and by address.
            tensors = {k: torch.from_numpy(v.astype(np.float32)) for k, v in inputs.items()}
            for both in (engine.infer_labels_and_logits(inputs), engine.infer_labels_and_logits_on_device(tensors)):
                np.testing.assert_array_equal(both[0], expected)
                np.testing.assert_allclose(both[1], plain.infer(inputs), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(bound.infer(inputs), plain.infer(inputs))
