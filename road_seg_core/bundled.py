"""Where the bundled demo model lives once installed (a few MB, trained on synthetic scenes)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

BUNDLED_MODEL_NAME = "demo_model.pt"


def bundled_model_path() -> Path:
    """Path of the bundled checkpoint; raises FileNotFoundError naming how to rebuild it."""
    path = Path(str(resources.files("road_seg_core") / "data" / BUNDLED_MODEL_NAME))
    if not path.is_file():
        raise FileNotFoundError(f"bundled model not found at {path}; rebuild it with "
                                "the five stages in road_seg_training/configs/demo_stage2.yaml (see README)")
    return path


def resolve_model(path: str | Path | None) -> Path:
    """The checkpoint to load: `path` if given, else the bundled model."""
    return Path(path) if path else bundled_model_path()
