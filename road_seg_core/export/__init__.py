"""A checkpoint as a self-describing ONNX file, and the cache of exports and TensorRT engines.

`onnx_format` (file format: I/O names, metadata), `exporter` (torch -> ONNX,
checked by onnx.checker and against PyTorch), `engine_cache` (cache directory
and keys). The command line (`road-seg export`) lives outside this package.
"""
from road_seg_core.export.engine_cache import (
    ENV_CACHE_DIR,
    cache_dir,
    cached_onnx,
    engine_filename,
    engine_key,
    sha256_file,
    sidecar_path,
)
from road_seg_core.export.exporter import ParityReport, check_parity, compare_logits, export_onnx, sensor_like_inputs
from road_seg_core.export.onnx_format import (
    DEFAULT_OPSET,
    METADATA_KEY,
    ONNX_FORMAT_VERSION,
    OUTPUT_NAME,
    ExportError,
    OnnxInfo,
    onnx_metadata,
    read_onnx_info,
)

__all__ = ["DEFAULT_OPSET", "ENV_CACHE_DIR", "METADATA_KEY", "ONNX_FORMAT_VERSION", "OUTPUT_NAME", "ExportError",
           "OnnxInfo", "ParityReport", "cache_dir", "cached_onnx", "check_parity", "compare_logits",
           "engine_filename", "engine_key", "export_onnx", "onnx_metadata", "read_onnx_info", "sensor_like_inputs",
           "sha256_file", "sidecar_path"]
