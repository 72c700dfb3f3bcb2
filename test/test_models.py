"""FusionSegNet: shapes for every encoder/fusion/modality subset, input handling, gating, config, export."""
from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from torchvision import models as tvm

from road_seg_core import labels
from road_seg_core.models import ENCODERS, ModelConfig, OrderedInputs, build_model, count_parameters
from road_seg_core.models.encoders import STAGE_STRIDES, build_encoder
from road_seg_core.models.fusion import AddFusion, GatedFusion

SIZE = (64, 96)


def tiny(**overrides) -> ModelConfig:
    """Small, fast config at 64x96 (tests only care about wiring, not accuracy)."""
    options = dict(encoder="mobilenet_v3_small", width_mult=0.5, decoder_channels=16, input_size=SIZE)
    options.update(overrides)
    return ModelConfig(**options)


def random_inputs(modalities, batch=2, size=SIZE, seed=0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    scale = {"rgb": 255.0, "depth": 30.0, "disparity": 50.0, "thermal": 1.0}
    channels = {"rgb": 3, "depth": 1, "disparity": 1, "thermal": 1}
    out = {}
    for m in modalities:
        x = torch.rand((batch, channels[m], *size), generator=generator) * scale[m]
        if channels[m] == 1:
            x = x * (torch.rand(x.shape, generator=generator) > 0.2)  # some "no data" pixels
        out[m] = x
    return out


def calibrated(model: torch.nn.Module, modalities, batches: int = 2) -> torch.nn.Module:
    """Give BatchNorm realistic running statistics so eval-mode logits are not all ~0."""
    model.train()
    with torch.no_grad():
        for seed in range(batches):
            model(random_inputs(modalities, seed=seed))
    return model.eval()


@pytest.mark.parametrize("fusion", ["add", "gated"])
@pytest.mark.parametrize("encoder", [e for e in ENCODERS if e != "resnet50"])
def test_output_shape_for_each_encoder_and_fusion(encoder, fusion):
    config = tiny(encoder=encoder, fusion=fusion, modalities=("rgb", "depth", "thermal"))
    model = build_model(config).eval()
    with torch.no_grad():
        logits = model(random_inputs(config.modalities))
    assert logits.shape == (2, labels.NUM_CLASSES, *SIZE)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_resnet50_bottleneck_channels_and_output():
    config = tiny(encoder="resnet50", modalities=("rgb", "disparity"))
    model = build_model(config).eval()
    assert model.stage_channels == (256, 512, 1024, 2048)
    with torch.no_grad():
        logits = model(random_inputs(config.modalities, batch=1))
    assert logits.shape == (1, labels.NUM_CLASSES, *SIZE)


@pytest.mark.parametrize("modalities", [
    ("rgb",), ("thermal",), ("depth", "thermal"), ("rgb", "disparity"), ("thermal", "rgb", "depth"),
    ("rgb", "depth", "thermal"),
])
def test_modality_subsets(modalities):
    config = tiny(modalities=modalities, num_classes=3, class_names=("a", "b", "c"))
    model = build_model(config).eval()
    assert model.modalities == modalities
    assert len(model.fusions) == (4 if len(modalities) > 1 else 0)
    with torch.no_grad():
        logits = model(random_inputs(modalities, batch=1))
    assert logits.shape == (1, 3, *SIZE)


@pytest.mark.parametrize("encoder", ["resnet18", "mobilenet_v3_small", "mobilenet_v3_large"])
@pytest.mark.parametrize("width_mult", [0.5, 1.0])
def test_encoder_stages_sit_at_strides_4_to_32(encoder, width_mult):
    stream = build_encoder(encoder, in_channels=1, width_mult=width_mult)
    features = stream(torch.zeros(1, 1, 64, 96))
    assert [(64 // f.shape[2], 96 // f.shape[3]) for f in features] == [(s, s) for s in STAGE_STRIDES]
    assert tuple(f.shape[1] for f in features) == stream.channels


def test_non_square_and_larger_inputs_than_configured():
    model = build_model(tiny(modalities=("rgb", "thermal"))).eval()
    with torch.no_grad():
        logits = model(random_inputs(("rgb", "thermal"), batch=1, size=(96, 32)))
    assert logits.shape == (1, 4, 96, 32)


def test_size_not_multiple_of_32_is_rejected():
    model = build_model(tiny(modalities=("rgb",))).eval()
    with pytest.raises(ValueError, match="multiple of 32"):
        model({"rgb": torch.zeros(1, 3, 60, 96)})
    with pytest.raises(ValueError, match="multiple of 32"):
        tiny(input_size=(100, 96)).validate()


def test_bad_inputs_are_rejected_with_clear_messages():
    model = build_model(tiny(modalities=("rgb", "depth"))).eval()
    with pytest.raises(ValueError, match="not modalities"):
        model({"rgb": torch.zeros(1, 3, 64, 96), "lidar": torch.zeros(1, 1, 64, 96)})
    with pytest.raises(ValueError, match="no input"):
        model({})
    with pytest.raises(ValueError, match=r"depth must be \(B, 1, H, W\)"):
        model({"rgb": torch.zeros(1, 3, 64, 96), "depth": torch.zeros(1, 3, 64, 96)})
    with pytest.raises(ValueError, match="batch/size"):
        model({"rgb": torch.zeros(1, 3, 64, 96), "depth": torch.zeros(1, 1, 32, 96)})


def test_missing_modality_is_fed_as_zeros():
    config = tiny(modalities=("rgb", "depth", "thermal"))
    model = calibrated(build_model(config), config.modalities)
    inputs = random_inputs(config.modalities)
    without_thermal = {k: v for k, v in inputs.items() if k != "thermal"}
    with torch.no_grad():
        absent = model(without_thermal)
        zeros = model({**without_thermal, "thermal": torch.zeros_like(inputs["thermal"])})
        present = model(inputs)
    torch.testing.assert_close(absent, zeros)
    assert not torch.allclose(absent, present)  # thermal does matter when it has data


def test_primary_modality_may_be_missing_too():
    config = tiny(modalities=("thermal", "rgb"))
    model = build_model(config).eval()
    with torch.no_grad():
        logits = model({"rgb": torch.full((1, 3, *SIZE), 128, dtype=torch.uint8)})
    assert logits.shape == (1, 4, *SIZE) and torch.isfinite(logits).all()


def test_invalid_values_are_masked_like_no_data():
    """Negative or NaN depth (an unsanitised hole) must act exactly like 0 = no measurement."""
    config = tiny(modalities=("rgb", "depth"))
    model = calibrated(build_model(config), config.modalities)
    inputs = random_inputs(config.modalities, batch=1)
    holes = torch.zeros_like(inputs["depth"], dtype=torch.bool)
    holes[..., 10:30, 20:60] = True
    clean = inputs["depth"].masked_fill(holes, 0.0)
    dirty = inputs["depth"].masked_fill(holes, float("nan"))
    dirty[..., 10:20, 20:60] = -3.0
    with torch.no_grad():
        expected = model({"rgb": inputs["rgb"], "depth": clean})
        actual = model({"rgb": inputs["rgb"], "depth": dirty})
    torch.testing.assert_close(actual, expected)


def test_uint8_rgb_equals_float_rgb():
    model = build_model(tiny(modalities=("rgb",))).eval()
    rgb = torch.randint(0, 256, (1, 3, *SIZE), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(model({"rgb": rgb}), model({"rgb": rgb.float()}))


@pytest.mark.parametrize("fusion, invalid_stream_matters", [("gated", False), ("add", True)])
def test_fully_invalid_modality_contributes_nothing_only_with_gated_fusion(fusion, invalid_stream_matters):
    """With gating, a dead depth sensor's stream (whatever its weights) cannot change the output."""
    config = tiny(modalities=("rgb", "depth"), fusion=fusion)
    model = calibrated(build_model(config), config.modalities)
    rgb = random_inputs(("rgb",), batch=1)["rgb"]
    dead_depth = torch.full((1, 1, *SIZE), -1.0)  # every pixel invalid
    with torch.no_grad():
        before = model({"rgb": rgb, "depth": dead_depth})
        for parameter in model.encoders["depth"].parameters():
            parameter.add_(torch.randn_like(parameter))
        after = model({"rgb": rgb, "depth": dead_depth})
        absent = model({"rgb": rgb})
    assert torch.allclose(before, after, atol=1e-5) != invalid_stream_matters
    torch.testing.assert_close(after, absent)


def test_gated_fusion_ignores_invalid_features_and_is_a_weighted_average():
    torch.manual_seed(0)
    fusion = GatedFusion(channels=8, has_validity=[False, True])
    rgb, depth = torch.randn(2, 8, 6, 10), torch.randn(2, 8, 6, 10)
    valid = torch.ones(2, 1, 6, 10)
    valid[..., :3, :] = 0.0  # top half of the depth map has no data
    fused = fusion([rgb, depth], [None, valid])
    fused_other = fusion([rgb, depth * 100 + 7], [None, valid])
    # Where depth is invalid only rgb counts, exactly; elsewhere fused values lie between the two inputs.
    torch.testing.assert_close(fused[..., :3, :], rgb[..., :3, :])
    torch.testing.assert_close(fused_other[..., :3, :], rgb[..., :3, :])
    low, high = torch.minimum(rgb, depth), torch.maximum(rgb, depth)
    assert ((fused >= low - 1e-5) & (fused <= high + 1e-5)).all()
    assert not torch.allclose(fused[..., 3:, :], rgb[..., 3:, :])


def test_add_fusion_is_the_sum():
    a, b, c = torch.randn(3, 1, 4, 2, 2)
    torch.testing.assert_close(AddFusion(3)([a, b, c], [None, None, None]), a + b + c)


def test_ordered_inputs_wrapper_matches_dict_forward():
    config = tiny(modalities=("rgb", "depth", "thermal"))
    model = calibrated(build_model(config), config.modalities)
    inputs = random_inputs(config.modalities, batch=1)
    wrapper = OrderedInputs(model).eval()
    assert wrapper.input_names == ["rgb", "depth", "thermal"] and wrapper.output_names == ["logits"]
    with torch.no_grad():
        torch.testing.assert_close(wrapper(*(inputs[m] for m in config.modalities)), model(inputs))
    with pytest.raises(ValueError, match="expected 3 inputs"):
        wrapper(inputs["rgb"])


def test_all_parameters_receive_gradients():
    """Unused parameters would break DistributedDataParallel and waste memory."""
    config = tiny(modalities=("rgb", "depth", "thermal"))
    model = build_model(config).train()
    logits = model(random_inputs(config.modalities))
    target = torch.randint(0, 4, (2, *SIZE))
    torch.nn.functional.cross_entropy(logits, target).backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert without_grad == []


def test_default_config_is_a_small_cpu_model():
    model = build_model(ModelConfig())
    assert 0.3e6 < count_parameters(model) < 2e6  # a few MB in fp32
    assert ModelConfig().modalities == ("rgb", "depth", "thermal")


def test_config_dict_round_trip_through_json():
    config = tiny(modalities=("rgb", "disparity"), fusion="add", norms={"disparity": {"scale": 96.0}})
    restored = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert restored.norms["disparity"].scale == 96.0 and restored.norms["disparity"].mean == (0.0,)
    assert restored.norms["rgb"].mean == (0.485, 0.456, 0.406)


def test_config_validation_lists_every_problem():
    with pytest.raises(ValueError) as info:
        ModelConfig(modalities=("depth", "disparity", "sonar"), encoder="vgg16", fusion="concat").validate()
    message = str(info.value)
    for fragment in ("sonar", "depth/disparity", "vgg16", "concat"):
        assert fragment in message
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"encoder": "resnet18", "encodr_weights": {}})
    with pytest.raises(ValueError, match="class_names has 4"):
        tiny(num_classes=5).validate()
    with pytest.raises(ValueError, match="needs 3 mean/std"):
        tiny(norms={"rgb": {"scale": 255.0, "mean": [0.5], "std": [0.5]}}).validate()
    with pytest.raises(ValueError, match="encoder_weights names modalities"):
        tiny(modalities=("rgb",), encoder_weights={"thermal": "x.pth"}).validate()


def test_replace_modalities_keeps_config_valid():
    config = dataclasses.replace(tiny(), modalities=("thermal",))
    assert set(config.norms) == {"thermal"}
    config.validate()


def test_local_encoder_weights_are_loaded_and_adapted(tmp_path):
    reference = tvm.mobilenet_v3_small(weights=None, width_mult=0.5)
    path = tmp_path / "mnv3s.pth"
    torch.save(reference.state_dict(), path)
    config = tiny(modalities=("rgb", "thermal"), encoder_weights={"rgb": str(path), "thermal": str(path)})
    model = build_model(config)
    first_rgb = model.encoders["rgb"].stages[0][0][0].weight
    first_thermal = model.encoders["thermal"].stages[0][0][0].weight
    original = reference.features[0][0].weight
    torch.testing.assert_close(first_rgb, original)
    # Grey input replicated on 3 channels gives the same response: the 1-channel filter is the channel sum.
    torch.testing.assert_close(first_thermal, original.sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.encoders["thermal"].stages[2][0].block[0][0].weight,
                               reference.features[4].block[0][0].weight)
    # Checkpoint loading skips these files: the trained weights replace them.
    build_model(dataclasses.replace(config, encoder_weights={"rgb": str(tmp_path / "gone.pth")}),
                load_encoder_weights=False)


def test_encoder_weights_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.pth"
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_model(tiny(modalities=("rgb",), encoder_weights={"rgb": str(missing)}))
    wrong = tmp_path / "wrong_width.pth"
    torch.save(tvm.mobilenet_v3_small(weights=None, width_mult=1.0).state_dict(), wrong)
    with pytest.raises(ValueError, match="wrong_width.pth.*width_mult"):
        build_model(tiny(modalities=("rgb",), encoder_weights={"rgb": str(wrong)}))


@pytest.mark.parametrize("detail_channels", [0, 8])
def test_onnx_export_matches_torch(tmp_path, detail_channels):
    """The exporter relies on this: opset 17 legacy export of the ordered-input wrapper, same logits in ORT
    (also with the detail head, whose pixel shuffle becomes DepthToSpace)."""
    ort = pytest.importorskip("onnxruntime")
    config = tiny(modalities=("rgb", "depth", "thermal"), detail_channels=detail_channels)
    model = calibrated(build_model(config), config.modalities)
    if detail_channels:  # a head that changes the logits (it starts at zero)
        torch.nn.init.normal_(model.detail.classifier.weight, std=0.5)
    wrapper = OrderedInputs(model).eval()
    inputs = random_inputs(config.modalities, batch=1, seed=5)
    ordered = tuple(inputs[m] for m in config.modalities)
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():  # torch deprecates the TorchScript-based exporter; onnxscript is not a dep
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(wrapper, ordered, str(path), input_names=wrapper.input_names,
                          output_names=wrapper.output_names, opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(None, {m: inputs[m].numpy() for m in config.modalities})
    with torch.no_grad():
        torch_logits = wrapper(*ordered).numpy()
    assert onnx_logits.shape == (1, 4, *SIZE)
    np.testing.assert_allclose(onnx_logits, torch_logits, rtol=1e-4, atol=1e-4)
    assert np.abs(torch_logits).max() > 0.1  # compared something non-trivial
    if detail_channels:
        torch.nn.init.zeros_(model.detail.classifier.weight)
        with torch.no_grad():
            without_head = wrapper(*ordered).numpy()
        assert np.abs(without_head - torch_logits).max() > 0.1 * np.abs(torch_logits).max()  # the head is in the graph
