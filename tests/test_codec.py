"""The f16-v1 embedding codec: exact layout, round trip, and refusal of what it cannot store."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from storage import codec, fts
from storage.codec import CODEC_ID, bytes_per_token, decode, encode, get_codec


def test_round_trip_keeps_shape_and_float16_precision() -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((37, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # ColBERT vectors are unit length

    blob = encode(vectors)
    back = decode(blob, 128)

    assert back.shape == (37, 128)
    assert back.dtype == np.float16
    np.testing.assert_allclose(back.astype(np.float32), vectors, rtol=1e-3, atol=1e-4)
    # A float16 input survives bit for bit.
    assert np.array_equal(decode(encode(back), 128), back)


def test_bytes_per_token_matches_blob_size() -> None:
    assert bytes_per_token(128) == 256
    assert bytes_per_token(96) == 192
    assert len(encode(np.zeros((5, 96), dtype=np.float32))) == 5 * bytes_per_token(96)
    with pytest.raises(ValueError):
        bytes_per_token(0)


def test_layout_is_little_endian_float16() -> None:
    # 1.0 in IEEE half precision is 0x3C00; -2.0 is 0xC000.
    assert encode(np.array([[1.0, -2.0]], dtype=np.float64)) == b"\x00\x3c\x00\xc0"
    big_endian = np.array([[1.0, -2.0]], dtype=">f4")
    assert encode(big_endian) == b"\x00\x3c\x00\xc0"
    assert decode(b"\x00\x3c\x00\xc0", 2).tolist() == [[1.0, -2.0]]


def test_empty_blob_decodes_to_zero_rows() -> None:
    assert decode(b"", 128).shape == (0, 128)


@pytest.mark.parametrize(
    "bad",
    [
        np.ones(128, dtype=np.float32),  # one vector, not a matrix
        np.ones((2, 0), dtype=np.float32),
        np.ones((2, 4), dtype=np.int64),
        np.array([[1.0, np.nan]], dtype=np.float32),
        np.array([[1e6, 0.0]], dtype=np.float32),  # overflows float16
    ],
)
def test_encode_refuses_what_it_cannot_store(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        encode(bad)


def test_decode_refuses_a_blob_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="whole number"):
        decode(b"\x00" * 255, 128)


def test_codec_registry() -> None:
    assert get_codec(CODEC_ID).encode is encode
    with pytest.raises(ValueError, match=CODEC_ID):
        get_codec("pq-v9")


@pytest.mark.parametrize("module", [codec, fts])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0
