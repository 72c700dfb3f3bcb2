"""sensor_msgs/Image field <-> numpy conversion: layouts, padding, byte order, errors, zero-copy."""
from __future__ import annotations

import array

import numpy as np
import pytest

from road_seg_core.image_codec import (
    ENCODINGS,
    NATIVE_IS_BIGENDIAN,
    ImageFormatError,
    decode_image,
    encode_image,
    to_metres,
    to_rgb8,
)

H, W = 5, 7


def _random_image(encoding: str, rng: np.random.Generator, height: int = H, width: int = W) -> np.ndarray:
    info = ENCODINGS[encoding]
    shape = (height, width) if info.channels == 1 else (height, width, info.channels)
    if info.dtype == np.float32:
        return rng.normal(5.0, 3.0, shape).astype(np.float32)
    return rng.integers(0, np.iinfo(info.dtype).max, shape, endpoint=True, dtype=info.dtype)


def _padded_bytes(image: np.ndarray, pad: int, byteorder: str = "<", fill: int = 0xAB) -> tuple[int, bytes]:
    """Message data with `pad` garbage bytes after each row, in the given byte order."""
    wire = np.ascontiguousarray(image, dtype=image.dtype.newbyteorder(byteorder))
    rows = wire.reshape(image.shape[0], -1).view(np.uint8)
    padding = np.full((image.shape[0], pad), fill, dtype=np.uint8)
    step = rows.shape[1] + pad
    return step, np.concatenate([rows, padding], axis=1).tobytes()


CONTAINERS = {
    "bytes": bytes,
    "bytearray": bytearray,
    "memoryview": lambda b: memoryview(bytearray(b)),
    "array": lambda b: array.array("B", b),
    "ndarray": lambda b: np.frombuffer(b, dtype=np.uint8).copy(),
}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("container", sorted(CONTAINERS))
def test_round_trip_every_encoding_and_container(encoding, container):
    image = _random_image(encoding, np.random.default_rng(0))
    step, buf = encode_image(image, encoding)
    assert buf.dtype == np.uint8 and buf.ndim == 1 and buf.flags.c_contiguous
    assert step == W * ENCODINGS[encoding].channels * ENCODINGS[encoding].dtype.itemsize
    assert buf.size == step * H
    data = CONTAINERS[container](buf.tobytes())
    decoded = decode_image(encoding, H, W, step, NATIVE_IS_BIGENDIAN, data)
    assert decoded.dtype == ENCODINGS[encoding].dtype
    np.testing.assert_array_equal(decoded, image)


def test_encode_output_wraps_as_ros_array():
    image = _random_image("16UC1", np.random.default_rng(1))
    step, buf = encode_image(image, "16UC1")
    ros_data = array.array("B", buf.tobytes())
    np.testing.assert_array_equal(decode_image("16UC1", H, W, step, NATIVE_IS_BIGENDIAN, ros_data), image)


@pytest.mark.parametrize("container", ["bytearray", "array", "ndarray"])
def test_decode_is_zero_copy_for_native_unpadded_data(container):
    image = _random_image("bgra8", np.random.default_rng(2))
    step, buf = encode_image(image, "bgra8")
    data = CONTAINERS[container](buf.tobytes())
    decoded = decode_image("bgra8", H, W, step, False, data)
    assert np.shares_memory(decoded, np.frombuffer(data, dtype=np.uint8))


@pytest.mark.parametrize("encoding", ["rgb8", "mono8", "16UC1", "32FC1"])
def test_padded_rows_are_skipped_without_copy(encoding):
    image = _random_image(encoding, np.random.default_rng(3))
    pad = 8 if ENCODINGS[encoding].dtype.itemsize > 1 else 5
    step, data = _padded_bytes(image, pad=pad)
    data = bytearray(data)
    decoded = decode_image(encoding, H, W, step, False, data)
    np.testing.assert_array_equal(decoded, image)
    assert decoded.shape == image.shape
    assert np.shares_memory(decoded, np.frombuffer(data, dtype=np.uint8))


def test_padding_of_odd_size_for_float_copies_to_aligned_array():
    image = _random_image("32FC1", np.random.default_rng(4))
    step, data = _padded_bytes(image, pad=3)  # rows start at non-multiples of 4
    decoded = decode_image("32FC1", H, W, step, False, data)
    np.testing.assert_array_equal(decoded, image)
    assert decoded.flags.aligned


@pytest.mark.parametrize("encoding", ["16UC1", "mono16", "32FC1"])
@pytest.mark.parametrize("pad", [0, 4])
def test_big_endian_is_converted_to_native(encoding, pad):
    image = _random_image(encoding, np.random.default_rng(5))
    step, data = _padded_bytes(image, pad=pad, byteorder=">")
    decoded = decode_image(encoding, H, W, step, True, data)
    assert decoded.dtype.isnative and decoded.dtype == ENCODINGS[encoding].dtype
    np.testing.assert_array_equal(decoded, image)
    # The same bytes read as little-endian are different numbers: the flag is honoured, not ignored.
    assert not np.array_equal(decode_image(encoding, H, W, step, False, data), image)


def test_big_endian_flag_is_irrelevant_for_8_bit():
    image = _random_image("rgb8", np.random.default_rng(6))
    step, buf = encode_image(image, "rgb8")
    np.testing.assert_array_equal(decode_image("rgb8", H, W, step, True, buf.tobytes()), image)


def test_known_pixel_values():
    data = np.array([1, 0, 0, 1], dtype="<u2").tobytes()  # bytes 01 00 00 00 00 00 01 00
    decoded = decode_image("16UC1", 2, 2, 4, False, data)
    np.testing.assert_array_equal(decoded, [[1, 0], [0, 1]])
    np.testing.assert_array_equal(decode_image("16UC1", 2, 2, 4, True, data), [[256, 0], [0, 256]])


@pytest.mark.parametrize("delta", [-1, 1, -W * 3])
def test_wrong_data_length(delta):
    image = _random_image("rgb8", np.random.default_rng(7))
    step, buf = encode_image(image, "rgb8")
    data = bytes(buf.size + delta) if delta > 0 else buf.tobytes()[:delta]
    with pytest.raises(ImageFormatError) as err:
        decode_image("rgb8", H, W, step, False, data)
    assert err.value.reason == "size_mismatch"
    assert str(buf.size) in str(err.value)


def test_step_shorter_than_row():
    with pytest.raises(ImageFormatError) as err:
        decode_image("rgb8", H, W, W * 3 - 1, False, bytes((W * 3 - 1) * H))
    assert err.value.reason == "bad_shape"


@pytest.mark.parametrize("height,width", [(0, W), (H, 0), (0, 0)])
def test_zero_size(height, width):
    with pytest.raises(ImageFormatError) as err:
        decode_image("mono8", height, width, width, False, b"")
    assert err.value.reason == "zero_size"
    with pytest.raises(ImageFormatError) as err:
        encode_image(np.zeros((height, width), np.uint8), "mono8")
    assert err.value.reason == "zero_size"


@pytest.mark.parametrize("encoding", ["yuv422", "bayer_rggb8", "RGB8", ""])
def test_unknown_encoding(encoding):
    with pytest.raises(ImageFormatError) as err:
        decode_image(encoding, H, W, W, False, bytes(H * W))
    assert err.value.reason == "unknown_encoding"
    assert "bgra8" in str(err.value)  # tells the user what is supported
    with pytest.raises(ImageFormatError):
        encode_image(np.zeros((H, W), np.uint8), encoding)


def test_image_format_error_is_a_value_error():
    assert issubclass(ImageFormatError, ValueError)


def test_decode_rejects_non_uint8_array():
    with pytest.raises(TypeError):
        decode_image("mono16", H, W, W * 2, False, np.zeros(H * W, np.uint16))


def test_non_contiguous_memoryview_is_accepted():
    image = _random_image("mono8", np.random.default_rng(8))
    doubled = np.repeat(image.reshape(-1), 2).tobytes()
    view = memoryview(doubled)[::2]
    np.testing.assert_array_equal(decode_image("mono8", H, W, W, False, view), image)


def test_encode_non_contiguous_and_single_channel_3d():
    base = _random_image("bgr8", np.random.default_rng(9), height=H, width=2 * W)
    sliced = base[:, ::2]
    step, buf = encode_image(sliced, "bgr8")
    assert buf.flags.c_contiguous and step == W * 3
    np.testing.assert_array_equal(decode_image("bgr8", H, W, step, NATIVE_IS_BIGENDIAN, buf), sliced)
    mono = _random_image("mono8", np.random.default_rng(10))
    step, buf = encode_image(mono[:, :, None], "mono8")
    np.testing.assert_array_equal(buf.reshape(H, W), mono)


def test_encode_converts_foreign_byte_order():
    image = _random_image("32FC1", np.random.default_rng(11))
    step, buf = encode_image(image.astype(image.dtype.newbyteorder()), "32FC1")
    np.testing.assert_array_equal(decode_image("32FC1", H, W, step, NATIVE_IS_BIGENDIAN, buf), image)


@pytest.mark.parametrize("encoding,shape", [("rgb8", (H, W)), ("rgb8", (H, W, 4)), ("mono8", (H, W, 3)), ("mono8", (W,))])
def test_encode_bad_shape(encoding, shape):
    with pytest.raises(ImageFormatError) as err:
        encode_image(np.zeros(shape, np.uint8), encoding)
    assert err.value.reason == "bad_shape"


@pytest.mark.parametrize("encoding,dtype", [("32FC1", np.float64), ("mono8", np.int64), ("16UC1", np.uint8)])
def test_encode_refuses_silent_casts(encoding, dtype):
    with pytest.raises(TypeError):
        encode_image(np.zeros((H, W), dtype), encoding)


PIXEL_RGB = np.array([10, 20, 30], np.uint8)


@pytest.mark.parametrize(
    "encoding,pixel",
    [
        ("rgb8", [10, 20, 30]),
        ("bgr8", [30, 20, 10]),
        ("rgba8", [10, 20, 30, 99]),
        ("bgra8", [30, 20, 10, 99]),
    ],
)
def test_to_rgb8_channel_order(encoding, pixel):
    image = np.broadcast_to(np.array(pixel, np.uint8), (H, W, len(pixel))).copy()
    step, data = _padded_bytes(image, pad=6)  # through a padded message, as it comes off the wire
    rgb = to_rgb8(decode_image(encoding, H, W, step, False, data), encoding)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, np.broadcast_to(PIXEL_RGB, (H, W, 3)))


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_to_rgb8_grey_is_replicated(encoding):
    grey = _random_image(encoding, np.random.default_rng(12))
    rgb = to_rgb8(grey, encoding)
    assert rgb.shape == (H, W, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], grey)


@pytest.mark.parametrize("encoding", ["8UC3", "16UC1", "32FC1"])
def test_to_rgb8_rejects_non_colour_encodings(encoding):
    with pytest.raises(ImageFormatError) as err:
        to_rgb8(_random_image(encoding, np.random.default_rng(13)), encoding)
    assert err.value.reason == "unknown_encoding"


def test_to_rgb8_rejects_layout_not_matching_encoding():
    with pytest.raises(ImageFormatError) as err:
        to_rgb8(np.zeros((H, W, 3), np.uint8), "bgra8")
    assert err.value.reason == "bad_shape"


def test_to_metres_float_passthrough_keeps_invalid_markers():
    depth = np.array([[1.5, np.nan], [np.inf, -np.inf]], np.float32)
    out = to_metres(depth, "32FC1")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, depth)


@pytest.mark.parametrize("encoding", ["16UC1", "mono16"])
def test_to_metres_millimetres(encoding):
    depth_mm = np.array([[1500, 0], [65535, 1]], np.uint16)
    out = to_metres(depth_mm, encoding)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[[0, 1, 1], [0, 0, 1]], [1.5, 65.535, 0.001], rtol=1e-6)
    assert np.isnan(out[0, 1])


def test_to_metres_from_big_endian_message():
    depth_mm = np.array([[1000, 2500, 0]], np.uint16)
    step, data = _padded_bytes(depth_mm, pad=2, byteorder=">")
    out = to_metres(decode_image("16UC1", 1, 3, step, True, data), "16UC1")
    np.testing.assert_allclose(out[0, :2], [1.0, 2.5])
    assert np.isnan(out[0, 2])


@pytest.mark.parametrize("encoding", ["mono8", "rgb8", "yuv422"])
def test_to_metres_rejects_non_depth(encoding):
    with pytest.raises(ImageFormatError) as err:
        to_metres(np.zeros((H, W), np.uint8), encoding)
    assert err.value.reason == "unknown_encoding"


def test_to_metres_rejects_dtype_not_matching_encoding():
    with pytest.raises(ImageFormatError) as err:
        to_metres(np.zeros((H, W), np.float64), "32FC1")
    assert err.value.reason == "bad_shape"
