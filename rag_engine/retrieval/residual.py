"""ColBERTv2-style residual compression of token vectors: a centroid id plus `nbits` bits per dimension.

A token vector v (unit length) is stored as the id of its nearest centroid c and, per dimension, the bucket of the
residual v - c among 2**nbits buckets. Bucket cutoffs are quantiles of the training residuals, and each bucket
decodes to the median residual inside it (ColBERTv2, Santhanam et al. 2022, §3); unlike ColBERTv2's one set shared by
every dimension, cutoffs and weights are per dimension here, which costs nothing at decode time and fits residuals
whose spread differs by dimension (projected encoders). At 128 dims and 2 bits: 32 + 2 bytes per token instead of 256.

Centroids come from spherical k-means on a sample of the index's own vectors (torch matmuls: every core).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

log = logging.getLogger(__name__)

#: Largest centroid count: ids are stored as uint16.
MAX_CENTROIDS = 1 << 16
#: k-means sees at most this many sample vectors per centroid (more costs time and changes little).
SAMPLE_PER_CENTROID = 32
KMEANS_ITERATIONS = 8
#: Rows per matmul block when assigning vectors to centroids: bounds the (rows × centroids) block in memory.
ASSIGN_BLOCK = 1 << 14


@dataclass(frozen=True)
class Codebook:
    """What decoding needs: centroids (K, dim) float32 unit rows; per-dimension bucket `cutoffs` (dim, 2**nbits - 1)
    and decoded `weights` (dim, 2**nbits), both float32."""

    centroids: np.ndarray
    cutoffs: np.ndarray
    weights: np.ndarray
    nbits: int

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    def packed_bytes(self) -> int:
        """Bytes of packed residual per token."""
        return self.dim * self.nbits // 8

    @cached_property
    def table(self) -> np.ndarray:
        """(dim·nbits/8, 256, 8/nbits) float32: the residuals every byte value decodes to, per byte position."""
        per_byte = 8 // self.nbits
        values = np.arange(256)
        # field i of a byte holds dimension position·per_byte + i, from the low bits up (see _pack)
        fields = (values[:, None] >> (self.nbits * np.arange(per_byte))[None, :]) & ((1 << self.nbits) - 1)
        dims = np.arange(self.dim // per_byte)[:, None, None] * per_byte + np.arange(per_byte)[None, None, :]
        return self.weights[dims, fields[None, :, :]].astype(np.float32)


def default_centroids(n_tokens: int) -> int:
    """A power of two near 4·√n: a quarter of ColBERTv2's 16·√n, so that k-means and assignment stay within a
    minute on a 2-core CPU at 10k passages; pruning still keeps a few percent of the tokens per query."""
    if n_tokens <= 0:
        raise ValueError("no vectors to cluster")
    return int(min(MAX_CENTROIDS, max(16, 2 ** math.floor(math.log2(4 * math.sqrt(n_tokens))))))


def assign(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest (highest dot product) centroid for every row, as int64."""
    import torch

    c = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))
    out = np.empty(len(vectors), dtype=np.int64)
    with torch.inference_mode():
        for lo in range(0, len(vectors), ASSIGN_BLOCK):
            block = torch.from_numpy(np.ascontiguousarray(vectors[lo : lo + ASSIGN_BLOCK], dtype=np.float32))
            out[lo : lo + len(block)] = (block @ c.T).argmax(dim=1).numpy()
    return out


def kmeans(sample: np.ndarray, k: int, *, iterations: int = KMEANS_ITERATIONS, seed: int = 0) -> np.ndarray:
    """Spherical k-means: (k, dim) float32 unit centroids. An emptied cluster is re-seeded with a random sample row."""
    rng = np.random.default_rng(seed)
    x = _unit(np.asarray(sample, dtype=np.float32))
    if len(x) < k:
        raise ValueError(f"k-means needs at least k={k} sample vectors, got {len(x)}")
    centroids = x[rng.choice(len(x), size=k, replace=False)].copy()
    for _ in range(iterations):
        owner = assign(x, centroids)
        sums = np.zeros_like(centroids)
        _scatter_sum(sums, owner, x)
        counts = np.bincount(owner, minlength=k)
        empty = counts == 0
        sums[empty] = x[rng.choice(len(x), size=int(empty.sum()), replace=False)]
        centroids = _unit(sums)
    return centroids


def train(vectors: np.ndarray, *, nbits: int = 2, n_centroids: int | None = None, seed: int = 0) -> Codebook:
    """Fit centroids and residual buckets to (a sample of) an index's token vectors."""
    if nbits not in (1, 2, 4):
        raise ValueError(f"nbits must be 1, 2 or 4, got {nbits}")
    vectors = np.asarray(vectors)
    k = n_centroids or default_centroids(len(vectors))
    rng = np.random.default_rng(seed)
    take = min(len(vectors), k * SAMPLE_PER_CENTROID)
    sample = _unit(np.asarray(vectors[np.sort(rng.choice(len(vectors), size=take, replace=False))], np.float32))
    centroids = kmeans(sample, k, seed=seed)
    residuals = sample - centroids[assign(sample, centroids)]
    levels = 1 << nbits
    # Cutoffs at the 1/B … (B-1)/B quantiles, each bucket decoding to its median (ColBERTv2's bucket_weights).
    cutoffs = np.quantile(residuals, np.arange(1, levels) / levels, axis=0).T.astype(np.float32)
    weights = np.quantile(residuals, (np.arange(levels) + 0.5) / levels, axis=0).T.astype(np.float32)
    return Codebook(centroids=centroids, cutoffs=np.ascontiguousarray(cutoffs), weights=np.ascontiguousarray(weights),
                    nbits=nbits)


def compress(book: Codebook, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) vectors → centroid ids (n,) uint16 and packed residual buckets (n, dim·nbits/8) uint8."""
    x = _unit(np.asarray(vectors, dtype=np.float32))
    codes = assign(x, book.centroids)
    residuals = x - book.centroids[codes]
    buckets = np.zeros(residuals.shape, dtype=np.uint8)
    for j in range(book.cutoffs.shape[1]):  # B - 1 comparisons: cheaper than searchsorted per dimension
        buckets += residuals > book.cutoffs[:, j]
    return codes.astype(np.uint16), _pack(buckets, book.nbits)


def decompress(book: Codebook, codes: np.ndarray, packed: np.ndarray) -> np.ndarray:
    """Centroid ids and packed residuals → (n, dim) float32 unit vectors."""
    table = book.table
    per_byte = 8 // book.nbits
    positions = np.arange(table.shape[0])
    residuals = table[positions, packed].reshape(len(packed), positions.size * per_byte)
    return _unit(book.centroids[codes.astype(np.int64)] + residuals)


def _pack(buckets: np.ndarray, nbits: int) -> np.ndarray:
    per_byte = 8 // nbits
    n, dim = buckets.shape
    if dim % per_byte:
        raise ValueError(f"dim {dim} is not a multiple of {per_byte}")
    fields = buckets.reshape(n, dim // per_byte, per_byte).astype(np.uint8)
    shifts = (nbits * np.arange(per_byte)).astype(np.uint8)
    return np.bitwise_or.reduce(fields << shifts, axis=2).astype(np.uint8)


def _scatter_sum(sums: np.ndarray, owner: np.ndarray, x: np.ndarray) -> None:
    import torch

    out = torch.from_numpy(sums)
    out.index_add_(0, torch.from_numpy(owner), torch.from_numpy(x))


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
