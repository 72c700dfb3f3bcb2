"""Shared fixtures: isolated ROS 2 domains, process launching, tiny checkpoints."""
from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

# Discovery stays on this machine; every test that starts ROS processes takes its own domain id.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
# ROAD_SEG_TEST_DOMAIN_BASE pins the first id, so parallel runs on one machine can be given disjoint ranges.
_domains = itertools.count(int(os.environ.get("ROAD_SEG_TEST_DOMAIN_BASE", (os.getpid() * 7) % 60 + 10)))


@pytest.fixture
def ros_domain(monkeypatch) -> int:
    """A ROS_DOMAIN_ID no other test in this run uses (set in the environment for child processes)."""
    domain = next(_domains) % 200 + 1
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    return domain


@pytest.fixture(scope="session")
def bin_dir() -> str:
    """Where the console scripts (perception_node, sim_sensors, road-seg) are installed."""
    return str(Path(sys.executable).parent)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A small random-weight tri-modal checkpoint (rgb + depth + thermal, 96x160 input)."""
    from road_seg_core.checkpoint import save_checkpoint
    from road_seg_core.models import ModelConfig, build_model

    cfg = ModelConfig(modalities=("rgb", "depth", "thermal"), encoder="mobilenet_v3_small", width_mult=0.5,
                      decoder_channels=16, input_size=(96, 160))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, build_model(cfg), cfg, provenance={"purpose": "tests"})
    return path
