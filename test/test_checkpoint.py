"""Checkpoints: round trip, self-description, atomic writes and one clear error per way a file can be wrong."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from road_seg_core.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_model,
    save_checkpoint,
    state_dict_mismatch,
)
from road_seg_core.models import ModelConfig, build_model

SIZE = (64, 96)


def tiny(**overrides) -> ModelConfig:
    options = dict(modalities=("rgb", "depth"), encoder="mobilenet_v3_small", width_mult=0.5,
                   decoder_channels=16, input_size=SIZE)
    options.update(overrides)
    return ModelConfig(**options)


@pytest.fixture(scope="module")
def trained():
    """A model whose weights and BN statistics differ from a fresh build, with its config."""
    torch.manual_seed(0)
    config = tiny()
    model = build_model(config).train()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
        model({"rgb": torch.rand(2, 3, *SIZE) * 255, "depth": torch.rand(2, 1, *SIZE) * 20})
    return model.eval(), config


@pytest.fixture()
def saved(tmp_path, trained):
    model, config = trained
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, config, provenance={"dataset": "synthetic", "epochs": 3})
    return path


def inputs(batch=1):
    generator = torch.Generator().manual_seed(3)
    return {"rgb": torch.rand((batch, 3, *SIZE), generator=generator) * 255,
            "depth": torch.rand((batch, 1, *SIZE), generator=generator) * 30}


def rewrite(path, **changes):
    """Load a checkpoint's raw dict, change top-level entries, save it back."""
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)
    return payload


def test_round_trip_gives_identical_logits(saved, trained):
    model, config = trained
    loaded, checkpoint = load_model(saved)
    assert not loaded.training
    assert checkpoint.config == config
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs()), model(inputs()), rtol=0, atol=0)


def test_checkpoint_is_self_describing(saved, trained):
    _, config = trained
    raw = torch.load(saved, weights_only=True)
    assert raw["format"] == FORMAT and raw["format_version"] == FORMAT_VERSION
    assert raw["class_names"] == list(config.class_names)
    assert raw["modalities"] == ["rgb", "depth"] and raw["input_size"] == [64, 96]
    assert raw["norms"]["depth"] == {"scale": 40.0, "mean": [0.5], "std": [0.5]}
    provenance = load_checkpoint(saved).provenance
    assert provenance["dataset"] == "synthetic" and provenance["epochs"] == 3
    assert provenance["torch_version"] == torch.__version__ and provenance["created_utc"].endswith("+00:00")


def test_state_dict_and_module_save_the_same(tmp_path, trained):
    model, config = trained
    save_checkpoint(tmp_path / "a.pt", model, config)
    save_checkpoint(tmp_path / "b.pt", model.state_dict(), config)
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    assert a.state_dict.keys() == b.state_dict.keys()
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)


def test_save_is_atomic_and_overwrites(tmp_path, trained):
    model, config = trained
    path = tmp_path / "nested" / "model.pt"
    save_checkpoint(path, model, config, provenance={"epochs": 1})
    save_checkpoint(path, model, config, provenance={"epochs": 2})
    assert load_checkpoint(path).provenance["epochs"] == 2
    assert os.listdir(path.parent) == ["model.pt"]  # no temporary files left behind


def test_saved_file_follows_umask_not_0600(tmp_path, trained):
    model, config = trained
    previous = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "m.pt", model, config)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "m.pt").st_mode) == 0o644


def test_failed_save_leaves_previous_file_intact(tmp_path, trained):
    model, config = trained
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, config, provenance={"epochs": 1})
    with pytest.raises(TypeError, match=r"provenance\['bad'\]"):
        save_checkpoint(path, model, config, provenance={"bad": object()})
    assert load_checkpoint(path).provenance["epochs"] == 1
    assert os.listdir(tmp_path) == ["model.pt"]


def test_provenance_numpy_and_torch_scalars_become_plain(tmp_path, trained):
    model, config = trained
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, config, provenance={
        "metrics": {"miou": np.float32(0.5), "iou": [np.float64(0.25), torch.tensor(0.75)]},
        "epochs": np.int64(7), "classes": ("a", "b"), "out_dir": tmp_path})
    provenance = load_checkpoint(path).provenance
    assert provenance["metrics"] == {"miou": 0.5, "iou": [0.25, 0.75]}
    assert type(provenance["epochs"]) is int and provenance["classes"] == ["a", "b"]
    assert provenance["out_dir"] == str(tmp_path)


def test_load_model_accepts_a_loaded_checkpoint(saved):
    checkpoint = load_checkpoint(saved)
    assert isinstance(checkpoint, Checkpoint) and checkpoint.path == str(saved)
    model, same = load_model(checkpoint, device="cpu")
    assert same is checkpoint and next(model.parameters()).device.type == "cpu"


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="nope.pt: file not found") as info:
        load_checkpoint(path)
    assert info.value.path == str(path)
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.01])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=r"model.pt: cannot be read.*corrupt, truncated"):
        load_checkpoint(saved)


def test_random_bytes_and_text_are_rejected(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="garbage.pt: cannot be read"):
        load_checkpoint(garbage)
    text = tmp_path / "config.yaml"
    text.write_text("encoder: resnet18\n")
    with pytest.raises(CheckpointError, match="config.yaml: cannot be read") as info:
        load_checkpoint(text)
    assert "weights_only" not in str(info.value)
    text.write_text("garbage\n")
    with pytest.raises(CheckpointError, match="config.yaml: cannot be read") as info:
        load_checkpoint(text)
    # The cause torch found, not its advice to load with weights_only=False (code execution; no help here).
    message = str(info.value)
    assert "(UnpicklingError: Unsupported operand 103)" in message and "weights_only" not in message, message
    assert len(message.splitlines()) == 1, message


def test_bare_state_dict_is_not_a_checkpoint(tmp_path, trained):
    path = tmp_path / "weights.pth"
    torch.save(trained[0].state_dict(), path)
    with pytest.raises(CheckpointError, match="not a road_seg checkpoint.*bare state_dict"):
        load_checkpoint(path)


def test_other_format_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"format": "yolo", "weights": [1, 2]}, path)
    with pytest.raises(CheckpointError, match="not a road_seg checkpoint.*'yolo'"):
        load_checkpoint(path)


def test_pickled_model_is_refused_without_running_it(tmp_path, trained):
    path = tmp_path / "whole_model.pt"
    torch.save(trained[0], path)
    with pytest.raises(CheckpointError, match="pickles a Python object.*FusionSegNet"):
        load_checkpoint(path)


def test_unsupported_version(saved):
    rewrite(saved, format_version=FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError, match=f"unsupported format_version {FORMAT_VERSION + 1}"):
        load_checkpoint(saved)


def test_incomplete_checkpoint(saved):
    payload = torch.load(saved, weights_only=True)
    del payload["state_dict"]
    torch.save(payload, saved)
    with pytest.raises(CheckpointError, match=r"missing \['state_dict'\]"):
        load_checkpoint(saved)


def test_invalid_config(saved):
    payload = torch.load(saved, weights_only=True)
    rewrite(saved, config={**payload["config"], "modalities": ["rgb", "sonar"]})
    with pytest.raises(CheckpointError, match="invalid model config.*sonar"):
        load_checkpoint(saved)


def test_state_dict_mismatch_on_load(saved):
    payload = torch.load(saved, weights_only=True)
    rewrite(saved, config={**payload["config"], "decoder_channels": 24})
    checkpoint = load_checkpoint(saved)  # config itself is valid
    with pytest.raises(CheckpointError, match="model.pt: state_dict does not match.*wrong shapes.*decoder"):
        load_model(checkpoint)


def test_state_dict_missing_keys_on_load(saved):
    payload = torch.load(saved, weights_only=True)
    state = {k: v for k, v in payload["state_dict"].items() if not k.startswith("decoder.classifier")}
    rewrite(saved, state_dict=state)
    with pytest.raises(CheckpointError, match=r"missing keys \[decoder.classifier"):
        load_model(saved)


def test_save_refuses_weights_of_another_architecture(tmp_path, trained):
    model, _ = trained
    other = tiny(modalities=("rgb", "depth", "thermal"))
    with pytest.raises(CheckpointError, match="refusing to save.*missing keys.*thermal"):
        save_checkpoint(tmp_path / "m.pt", model, other)
    assert not (tmp_path / "m.pt").exists()
    assert state_dict_mismatch(trained[1], model.state_dict()) is None
