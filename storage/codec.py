"""Token-embedding codecs: how an (n_tokens, dim) matrix becomes a blob and back.

`f16-v1` stores float16, little-endian, row-major: 2·dim bytes per token. Each index records the codec its vectors
were written with; a compressed codec (residual quantization, later) is added beside it as another `Codec` in `CODECS`.

>>> import numpy as np
>>> blob = encode(np.ones((3, 128), dtype=np.float32))
>>> len(blob) == 3 * bytes_per_token(128) == 768
True
>>> decode(blob, 128).shape, decode(blob, 128).dtype
((3, 128), dtype('float16'))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CODEC_ID = "f16-v1"

# Explicit byte order, so a file written on one machine reads the same on any other.
_WIRE = np.dtype("<f2")


def bytes_per_token(dim: int) -> int:
    """Bytes one token vector takes in a blob (256 for dim 128)."""
    if dim <= 0:
        raise ValueError(f"dim must be positive, got {dim}")
    return _WIRE.itemsize * dim


def encode(vectors: np.ndarray) -> bytes:
    """(n, dim) float array → float16 little-endian bytes. Refuses values float16 cannot hold (inf/NaN)."""
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"expected an (n_tokens, dim) matrix, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"expected floating-point vectors, got {array.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, as a ValueError
        wire = array.astype(_WIRE, copy=False)
    if not np.isfinite(wire).all():
        raise ValueError("embedding holds values that are not finite in float16 (NaN, inf or |x| > 65504)")
    return wire.tobytes()


def decode(blob: bytes | bytearray | memoryview, dim: int) -> np.ndarray:
    """Bytes → (n, dim) float16 array: a read-only view of `blob` (no copy on little-endian machines)."""
    size = bytes_per_token(dim)
    if len(blob) % size:
        raise ValueError(f"blob of {len(blob)} bytes is not a whole number of {dim}-dim float16 vectors")
    return np.frombuffer(blob, dtype=_WIRE).reshape(-1, dim).astype(np.float16, copy=False)


@dataclass(frozen=True, slots=True)
class Codec:
    """One way of writing token vectors; chosen per index by its `codec` column."""

    id: str
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes, int], np.ndarray]
    bytes_per_token: Callable[[int], int]


CODECS: dict[str, Codec] = {CODEC_ID: Codec(CODEC_ID, encode, decode, bytes_per_token)}


def get_codec(codec_id: str) -> Codec:
    """The codec named `codec_id`; a ValueError lists the known ones."""
    try:
        return CODECS[codec_id]
    except KeyError:
        raise ValueError(f"unknown embedding codec {codec_id!r}; known: {', '.join(sorted(CODECS))}") from None
