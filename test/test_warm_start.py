"""Warm start: a new network (extra "height" modality, other input size) starts from a trained checkpoint."""
import dataclasses

import pytest
import torch

from road_seg_core.checkpoint import save_checkpoint
from road_seg_core.models import build_model
from tiny_models import TINY, calibrated_model
from road_seg_training.warm_start import warm_start


def test_matching_tensors_are_copied_and_a_new_stream_borrows_the_depth_stream(tmp_path):
    source = calibrated_model(TINY)
    path = tmp_path / "old.pt"
    save_checkpoint(path, source, TINY)
    config = dataclasses.replace(TINY, modalities=("rgb", "depth", "thermal", "height"), input_size=(96, 128))
    model = build_model(config, load_encoder_weights=False)
    counts = warm_start(model, str(path), {"height": "depth"})
    assert counts["fresh"] == 0 and counts["copied"] == len(model.state_dict())
    old, new = source.state_dict(), model.state_dict()
    for key, value in old.items():
        assert torch.equal(new[key], value), key
    for key, value in new.items():
        if key.startswith("encoders.height."):
            assert torch.equal(value, old[key.replace("encoders.height.", "encoders.depth.")])
    assert torch.equal(new["fusions.0.gates.3.weight"], old["fusions.0.gates.1.weight"])  # height's gate <- depth's
    # Without init_streams the new stream and its gates start fresh; everything else still loads.
    fresh = build_model(config, load_encoder_weights=False)
    counts = warm_start(fresh, str(path))
    assert counts["fresh"] == sum(1 for k in fresh.state_dict() if k.startswith("encoders.height.")
                                  or ".gates.3." in k)


def test_bad_sources_are_one_clear_error(tmp_path):
    model = build_model(TINY, load_encoder_weights=False)
    with pytest.raises(ValueError, match="init_from: .*file not found"):
        warm_start(model, str(tmp_path / "missing.pt"))
    path = tmp_path / "old.pt"
    save_checkpoint(path, model, TINY)
    with pytest.raises(ValueError, match="init_streams copies \\['disparity'\\]"):
        warm_start(model, str(path), {"height": "disparity"})
