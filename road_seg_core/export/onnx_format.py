"""The road_seg ONNX format: graph I/O names and the self-description stored in ``metadata_props``.

The ONNX graph takes the raw sensor tensors named after the checkpoint's
modalities (``rgb`` (B,3,H,W) 0..255, ``depth`` metres, ``disparity`` pixels,
``thermal`` (0, 1]; 0 = no data) and returns ``logits`` (B,K,H,W): the
normalisation and validity masking are part of the network, so a runtime needs
no glue code. Everything the checkpoint knows (model config, classes,
normalisation, input size, provenance) is stored as JSON under `METADATA_KEY`,
so the file alone is enough to build an engine and feed it (`read_onnx_info`).
This module reads and describes files; it never runs torch.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from road_seg_core.models.config import MODALITY_CHANNELS, ModelConfig

#: metadata_props key holding the JSON description of an exported model.
METADATA_KEY = "road_seg"
ONNX_FORMAT = "road_seg_onnx"
#: Bump when the exported graph or its metadata change meaning; it is part of the ONNX cache key.
ONNX_FORMAT_VERSION = 1
#: Opset 17 is what TensorRT 8.6+ and onnxruntime 1.14+ parse fully (LayerNorm-free graph, bilinear Resize).
DEFAULT_OPSET = 17
#: The oldest opset whose graph matches PyTorch: at 9 and 10 the bilinear Resize rounds differently (the parity
#: check then fails: label agreement 96.7 % on the bundled model), at 7 `where` has no export.
MIN_OPSET = 11
OUTPUT_NAME = "logits"
#: Output added at load time by `with_labels_output`: uint8 class ids (B, H, W).
LABELS_NAME = "labels"

_UNITS = {"rgb": "RGB 0..255", "depth": "metres, 0 = no data", "disparity": "pixels at input width, 0 = no data",
          "thermal": "(0, 1], 0 = no data",
          "height": "metres above a datum 1 m below the fitted road plane, 0 = no data"}


class ExportError(RuntimeError):
    """An export failed, its result does not match PyTorch, or a file is not a road_seg ONNX export."""


@dataclass(frozen=True)
class OnnxInfo:
    """What an exported ONNX file says about itself (from its metadata_props)."""

    config: ModelConfig  # input_size is the exported size
    dynamic: bool  # batch and spatial axes are symbolic
    provenance: dict[str, Any] = field(default_factory=dict)
    checkpoint_sha256: str = ""
    opset: int = DEFAULT_OPSET

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.config.modalities)

    @property
    def input_size(self) -> tuple[int, int]:
        return (int(self.config.input_size[0]), int(self.config.input_size[1]))

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.config.class_names)


def onnx_metadata(config: ModelConfig, dynamic: bool, provenance: Mapping[str, Any], checkpoint_sha256: str,
                  opset: int) -> dict[str, Any]:
    """The JSON stored under `METADATA_KEY`: enough to rebuild the model's contract without the checkpoint."""
    return {
        "format": ONNX_FORMAT,
        "format_version": ONNX_FORMAT_VERSION,
        "config": config.to_dict(),
        # Duplicated from the config so a viewer (Netron, onnx.load) shows what the file is at a glance.
        "modalities": list(config.modalities),
        "class_names": list(config.class_names),
        "input_size": [int(v) for v in config.input_size],
        "norms": {name: norm.to_dict() for name, norm in config.norms.items()},
        "inputs": {m: {"shape": ["B" if dynamic else 1, MODALITY_CHANNELS[m],
                                 "H" if dynamic else int(config.input_size[0]),
                                 "W" if dynamic else int(config.input_size[1])],
                       "units": _UNITS[m]} for m in config.modalities},
        "output": {"name": OUTPUT_NAME, "shape": ["B", config.num_classes, "H", "W"], "units": "logits"},
        "dynamic": bool(dynamic),
        "opset": int(opset),
        "checkpoint_sha256": checkpoint_sha256,
        "provenance": dict(provenance),
    }


def read_onnx_info(path: str | os.PathLike) -> OnnxInfo:
    """Parse the road_seg metadata of an ONNX file (without loading its weights into a runtime)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ExportError(f"{path}: cannot be read as ONNX ({type(exc).__name__}: {exc})") from exc
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ExportError(f"{path}: no '{METADATA_KEY}' metadata; export it with `road-seg export` so the file "
                          "carries its modalities, classes and input size")
    try:
        meta = json.loads(props[METADATA_KEY])
        if meta.get("format") != ONNX_FORMAT:
            raise ValueError(f"format is {meta.get('format')!r}, expected {ONNX_FORMAT!r}")
        if int(meta.get("format_version", -1)) > ONNX_FORMAT_VERSION:
            raise ValueError(f"format_version {meta['format_version']} is newer than this road_seg "
                             f"({ONNX_FORMAT_VERSION})")
        config = ModelConfig.from_dict(meta["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{path}: invalid road_seg metadata: {exc}") from exc
    graph_inputs = [i.name for i in model.graph.input]
    if graph_inputs != list(config.modalities):
        raise ExportError(f"{path}: graph inputs {graph_inputs} do not match the metadata's modalities "
                          f"{list(config.modalities)}")
    return OnnxInfo(config=config, dynamic=bool(meta.get("dynamic", False)),
                    provenance=dict(meta.get("provenance") or {}),
                    checkpoint_sha256=str(meta.get("checkpoint_sha256", "")), opset=int(meta.get("opset", 0)))


def with_labels_output(model: Any) -> Any:
    """A copy of an exported graph (onnx.ModelProto) with a second output `LABELS_NAME`: the argmax over the
    classes as uint8 (B, H, W), taken inside the graph, so a runtime on a GPU sends back H*W bytes, not the
    logits. Runtimes compute only the outputs asked for: asking for `OUTPUT_NAME` alone costs nothing extra.
    """
    import onnx
    from onnx import TensorProto, helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    if [o.name for o in graph.output] != [OUTPUT_NAME]:
        raise ExportError(f"expected the single output {OUTPUT_NAME!r}, got {[o.name for o in graph.output]}")
    dims = [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    shape = [dims[0], dims[2], dims[3]] if len(dims) == 4 else None
    graph.node.extend([
        helper.make_node("ArgMax", [OUTPUT_NAME], [f"{LABELS_NAME}_int64"], axis=1, keepdims=0),
        helper.make_node("Cast", [f"{LABELS_NAME}_int64"], [LABELS_NAME], to=TensorProto.UINT8),
    ])
    graph.output.append(helper.make_tensor_value_info(LABELS_NAME, TensorProto.UINT8, shape))
    return out
