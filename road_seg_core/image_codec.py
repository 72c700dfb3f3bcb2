"""Conversion between the fields of a sensor_msgs/Image and numpy arrays, without ROS.

The node receives 1280x720 images at 30-60 Hz, so decoding is a view onto the
message buffer wherever the layout allows it: `np.frombuffer` on the data, rows
`step` bytes apart, padding sliced off. A copy is made only when the bytes
cannot be used as they are (byte order differs from the host's, a multi-byte
type at a misaligned row start, a non-contiguous input buffer).

Decoded arrays may therefore share memory with (and be read-only like) the
message data; copy them before writing into them. Keeping the array alive keeps
the buffer alive, so it is safe to drop the message.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

#: Value to put in sensor_msgs/Image.is_bigendian for buffers made by `encode_image`
#: (they are in the host's byte order).
NATIVE_IS_BIGENDIAN: bool = sys.byteorder == "big"


@dataclass(frozen=True)
class EncodingInfo:
    """Memory layout of one ROS image encoding: channels per pixel and the element type."""

    channels: int
    dtype: np.dtype

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * self.dtype.itemsize


#: Supported encodings (names as in sensor_msgs/image_encodings.hpp).
ENCODINGS: dict[str, EncodingInfo] = {
    "rgb8": EncodingInfo(3, np.dtype(np.uint8)),
    "bgr8": EncodingInfo(3, np.dtype(np.uint8)),
    "rgba8": EncodingInfo(4, np.dtype(np.uint8)),
    "bgra8": EncodingInfo(4, np.dtype(np.uint8)),
    "mono8": EncodingInfo(1, np.dtype(np.uint8)),
    "8UC1": EncodingInfo(1, np.dtype(np.uint8)),
    "8UC3": EncodingInfo(3, np.dtype(np.uint8)),
    "8UC4": EncodingInfo(4, np.dtype(np.uint8)),
    "mono16": EncodingInfo(1, np.dtype(np.uint16)),
    "16UC1": EncodingInfo(1, np.dtype(np.uint16)),
    "32FC1": EncodingInfo(1, np.dtype(np.float32)),
}

# cv2 colour conversions to RGB. 8UC3/8UC4 carry no channel order, so they are not colour images.
_TO_RGB_CODES: dict[str, int | None] = {
    "rgb8": None,
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "8UC1": cv2.COLOR_GRAY2RGB,
}

#: Where R, G and B sit in the last axis of each colour encoding (grey: one channel three times).
_RGB_CHANNELS: dict[str, tuple[int, int, int]] = {
    "rgb8": (0, 1, 2), "rgba8": (0, 1, 2), "bgr8": (2, 1, 0), "bgra8": (2, 1, 0), "mono8": (0, 0, 0), "8UC1": (0, 0, 0),
}
assert set(_RGB_CHANNELS) == set(_TO_RGB_CODES)


def rgb_channel_indices(encoding: str) -> tuple[int, int, int]:
    """Indices of R, G, B in a pixel of `encoding` (`to_rgb8`'s encodings; ImageFormatError for others)."""
    if encoding not in _RGB_CHANNELS:
        raise ImageFormatError(
            "unknown_encoding",
            f"cannot convert {encoding!r} to rgb8 (no colour semantics); expected one of {', '.join(_TO_RGB_CODES)}",
        )
    return _RGB_CHANNELS[encoding]


def check_colour(image: np.ndarray, encoding: str) -> None:
    """ImageFormatError unless `image` is a decoded colour image of `encoding` (what `to_rgb8` accepts)."""
    info = encoding_info(encoding)
    rgb_channel_indices(encoding)
    _check_layout(np.asarray(image), encoding, info)


_MILLIMETRE_ENCODINGS = ("16UC1", "mono16")
# uint16 millimetres -> float32 metres for every possible value (256 KiB, stays in cache); 0 = no measurement.
_MILLIMETRE_LUT = np.arange(65536, dtype=np.float32) * np.float32(1e-3)
_MILLIMETRE_LUT[0] = np.nan
_MILLIMETRE_LUT.flags.writeable = False


class ImageFormatError(ValueError):
    """An image whose fields are inconsistent or unsupported.

    `reason` is a stable machine-readable tag (for diagnostics counters):
    "unknown_encoding", "size_mismatch", "zero_size" or "bad_shape".
    """

    REASONS = ("unknown_encoding", "size_mismatch", "zero_size", "bad_shape")

    def __init__(self, reason: str, message: str):
        if reason not in self.REASONS:
            raise ValueError(f"unknown ImageFormatError reason {reason!r}")
        super().__init__(message)
        self.reason = reason


def encoding_info(encoding: str) -> EncodingInfo:
    """Layout of `encoding`, or ImageFormatError("unknown_encoding") naming the supported ones."""
    try:
        return ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise ImageFormatError(
            "unknown_encoding",
            f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}",
        ) from None


def _byte_view(data: Any) -> np.ndarray:
    """1-D uint8 array over the bytes of `data`, without copying when the buffer is contiguous."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise TypeError(f"image data array must be uint8, got {data.dtype}")
        return np.ascontiguousarray(data).reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except BufferError:  # non-contiguous memoryview: gather it once
        return np.ascontiguousarray(np.asarray(data)).reshape(-1).view(np.uint8)
    except TypeError:
        raise TypeError(
            f"image data must be bytes, bytearray, memoryview, array.array or a uint8 ndarray, got {type(data).__name__}"
        ) from None


def decode_image(encoding: str, height: int, width: int, step: int, is_bigendian: bool, data: Any) -> np.ndarray:
    """Array view of a sensor_msgs/Image's pixels: (H, W) for one channel, else (H, W, C).

    The result has the encoding's dtype in native byte order and excludes row
    padding. It is a view on `data` unless byte swapping, a misaligned row
    start or a non-contiguous buffer forces a copy.
    """
    info = encoding_info(encoding)
    height, width, step = int(height), int(width), int(step)
    if height < 0 or width < 0 or step < 0:
        raise ImageFormatError("bad_shape", f"negative image geometry: height={height} width={width} step={step}")
    if height == 0 or width == 0:
        raise ImageFormatError("zero_size", f"empty {encoding} image: {width}x{height}")
    row_bytes = width * info.bytes_per_pixel
    if step < row_bytes:
        raise ImageFormatError(
            "bad_shape", f"step {step} < width*bytes_per_pixel = {width}*{info.bytes_per_pixel} = {row_bytes} ({encoding})"
        )
    buf = _byte_view(data)
    if buf.size != step * height:
        raise ImageFormatError(
            "size_mismatch",
            f"{encoding} {width}x{height} step {step} needs {step * height} bytes, data has {buf.size}",
        )

    wire_dtype = info.dtype.newbyteorder(">" if is_bigendian else "<") if info.dtype.itemsize > 1 else info.dtype
    rows = buf.reshape(height, step)[:, :row_bytes]  # padding sliced off, still a view
    image = rows.view(wire_dtype)
    image = image.reshape((height, width) if info.channels == 1 else (height, width, info.channels))
    if not image.dtype.isnative:
        image = image.astype(info.dtype)  # byte swap into a fresh contiguous array
    elif not image.flags.aligned:
        image = image.copy()  # odd step for a multi-byte type: cv2 and fast numpy paths need alignment
    return image


def encode_image(array: np.ndarray, encoding: str) -> tuple[int, np.ndarray]:
    """(step, data) for a sensor_msgs/Image holding `array` in `encoding`.

    `data` is a contiguous 1-D uint8 buffer in host byte order (set
    is_bigendian = NATIVE_IS_BIGENDIAN), unpadded, so step = width * bytes per
    pixel. It shares memory with `array` when `array` is already contiguous.
    The dtype must match the encoding exactly: silently narrowing e.g. float64
    depth or int64 labels is a bug the caller should see (TypeError).
    """
    info = encoding_info(encoding)
    array = np.asarray(array)
    if array.ndim == 3 and info.channels == 1 and array.shape[2] == 1:
        array = array[:, :, 0]
    expected_ndim = 2 if info.channels == 1 else 3
    if array.ndim != expected_ndim or (expected_ndim == 3 and array.shape[2] != info.channels):
        want = "(H, W)" if info.channels == 1 else f"(H, W, {info.channels})"
        raise ImageFormatError("bad_shape", f"{encoding} expects an array of shape {want}, got {array.shape}")
    if array.dtype.newbyteorder("=") != info.dtype:
        raise TypeError(f"{encoding} expects dtype {info.dtype}, got {array.dtype}; cast explicitly")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageFormatError("zero_size", f"empty {encoding} image of shape {array.shape}")
    contiguous = np.ascontiguousarray(array, dtype=info.dtype)  # also makes byte order native
    return array.shape[1] * info.bytes_per_pixel, contiguous.reshape(-1).view(np.uint8)


def _check_layout(image: np.ndarray, encoding: str, info: EncodingInfo) -> None:
    channels = 1 if image.ndim == 2 else (image.shape[2] if image.ndim == 3 else -1)
    if channels != info.channels or image.dtype != info.dtype:
        raise ImageFormatError(
            "bad_shape",
            f"{encoding} expects {info.channels} channel(s) of {info.dtype}, got shape {image.shape} {image.dtype}",
        )


def to_rgb8(image: np.ndarray, encoding: str) -> np.ndarray:
    """HxWx3 uint8 RGB from a decoded rgb8/bgr8/rgba8/bgra8/mono8/8UC1 image.

    rgb8 input comes back as is when contiguous (no copy, possibly read-only);
    everything else is one cv2.cvtColor into a new array.
    """
    image = np.asarray(image)
    check_colour(image, encoding)
    code = _TO_RGB_CODES[encoding]
    if code is None:
        return np.ascontiguousarray(image)
    return cv2.cvtColor(image, code)


def to_metres(image: np.ndarray, encoding: str) -> np.ndarray:
    """Depth in float32 metres from a decoded 32FC1 (metres) or 16UC1/mono16 (millimetres) image.

    32FC1 is returned as is (NaN/±inf kept: sanitising is preprocessing's job).
    For millimetre encodings 0 means "no measurement" (ROS REP 118) and becomes NaN.
    """
    info = encoding_info(encoding)
    image = np.asarray(image)
    if encoding == "32FC1":
        _check_layout(image, encoding, info)
        return image
    if encoding in _MILLIMETRE_ENCODINGS:
        _check_layout(image, encoding, info)
        return np.take(_MILLIMETRE_LUT, image)  # one gather: ~2x faster than scale + masked NaN fill
    raise ImageFormatError(
        "unknown_encoding", f"{encoding!r} is not a depth encoding; expected 32FC1, 16UC1 or mono16"
    )
