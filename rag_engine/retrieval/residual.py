"""ColBERTv2-style residual compression of token vectors: a centroid id plus a few bits per dimension of residual.

A token vector v (unit length) is stored as the id of its nearest centroid c (uint16) and a code for the residual
v - c, in one of two schemes:

- "pq" (what search uses): the residual, turned into the principal axes of the training residuals, is cut into
  `groups` sub-vectors of 3-4 dimensions, each stored as one byte: the nearest of 256 codewords learned for that
  sub-vector (product quantization, Jégou et al. 2011, after a PCA rotation). At 128 dims: 2 + 38 = 40 bytes per
  token, 2.5 bits per dimension. Why not per-dimension buckets: on real MiniLM colbert-ir vectors the residual holds
  half of a token's energy (cosine to its centroid 0.73 at 1,024 centroids), and 2-bit scalar buckets leave a mean
  cosine of 0.947, top-10 overlap with float16 MaxSim 0.83; 256 codewords over 3-4 dimensions fit the residual's
  joint shape (0.983 cosine at the same centroids, top-10 overlap 0.91; bench/bench_compression.py). The first
  groups take 3 dimensions, the last 4: the high-variance axes get more bits (2.67 vs 2 per dimension).
- "scalar" (ColBERTv2, Santhanam et al. 2022, §3; `train`'s default, and indexes compressed before "pq"): per
  dimension, the bucket of the residual among 2**nbits; cutoffs are quantiles of the training residuals and each
  bucket decodes to the median residual inside it, per dimension. At 128 dims and 2 bits: 2 + 32 bytes per token.

Both decode through one table: byte position p with value b decodes to table[p, b], a few residual values (`slots`
says which dimension each one is). A "pq" codebook keeps its centroids and codewords in the rotated basis: dot
products are the same there, so search rotates each query once instead of rotating every decoded vector back.

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
SCALAR, PQ = "scalar", "pq"
#: Codewords per "pq" group: one byte per group.
PQ_CODEWORDS = 256
#: Codeword k-means sees at most this many residuals per codeword, for this many rounds (38 groups to fit).
PQ_SAMPLE_PER_CODEWORD = 64
PQ_ITERATIONS = 12


@dataclass(frozen=True)
class Codebook:
    """What decoding needs: centroids (K, dim) float32 unit rows, and either ("scalar") per-dimension bucket `cutoffs`
    (dim, 2**nbits - 1) and decoded `weights` (dim, 2**nbits), or ("pq", nbits 8, empty cutoffs and weights)
    `codewords` (groups, 256, width) in the basis `x @ rotation` (rotation: (dim, dim) orthonormal), where group g
    covers `pq_layout(dim, groups)[g]` consecutive dimensions (zero-padded to `width`); all float32."""

    centroids: np.ndarray
    cutoffs: np.ndarray
    weights: np.ndarray
    nbits: int
    codewords: np.ndarray | None = None
    rotation: np.ndarray | None = None

    @property
    def scheme(self) -> str:
        return SCALAR if self.codewords is None else PQ

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    def packed_bytes(self) -> int:
        """Bytes of packed residual per token."""
        if self.codewords is not None:
            return int(self.codewords.shape[0])
        return self.dim * self.nbits // 8

    @cached_property
    def slots(self) -> np.ndarray | None:
        """(dim,) int64: where each dimension sits among the table's decoded values laid end to end (byte position
        · width + field); None when that is the dimension itself (scalar)."""
        if self.codewords is None:
            return None
        groups, _, width = self.codewords.shape
        sizes = pq_layout(self.dim, groups)
        return np.concatenate([g * width + np.arange(size) for g, size in enumerate(sizes)]).astype(np.int64)

    @cached_property
    def table(self) -> np.ndarray:
        """(byte positions, 256, values per byte) float32: the residual values every byte value decodes to. Scalar:
        (dim·nbits/8, 256, 8/nbits); pq: the codewords."""
        if self.codewords is not None:
            return np.ascontiguousarray(self.codewords, dtype=np.float32)
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


def default_groups(dim: int) -> int:
    """Byte groups of the "pq" scheme for `dim` dimensions: 38 at 128 (40 bytes per token with the centroid id).

    >>> default_groups(128), pq_layout(128, 38).tolist().count(3), pq_layout(128, 38).tolist().count(4)
    (38, 24, 14)
    """
    return max(1, dim * 19 // 64)


def pq_layout(dim: int, groups: int) -> np.ndarray:
    """Dimensions per group, as even as possible, the smaller groups first (they take the high-variance axes).

    >>> pq_layout(10, 4).tolist()
    [2, 2, 3, 3]
    """
    if not 1 <= groups <= dim:
        raise ValueError(f"groups must be between 1 and dim={dim}, got {groups}")
    base, extra = divmod(dim, groups)
    return np.array([base] * (groups - extra) + [base + 1] * extra, dtype=np.int64)


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


def train(
    vectors: np.ndarray,
    *,
    scheme: str = SCALAR,
    nbits: int = 2,
    groups: int | None = None,
    n_centroids: int | None = None,
    seed: int = 0,
) -> Codebook:
    """Fit centroids and the residual code to (a sample of) an index's token vectors: `nbits` per dimension
    ("scalar") or `groups` bytes per token ("pq", `default_groups(dim)` unless given)."""
    if scheme == PQ:
        return _train_pq(vectors, groups=groups, n_centroids=n_centroids, seed=seed)
    if scheme != SCALAR:
        raise ValueError(f"unknown residual scheme {scheme!r}; known: {PQ}, {SCALAR}")
    if nbits not in (1, 2, 4):
        raise ValueError(f"nbits must be 1, 2 or 4, got {nbits}")
    sample, centroids = _sample_and_centroids(vectors, n_centroids, seed)
    residuals = sample - centroids[assign(sample, centroids)]
    levels = 1 << nbits
    # Cutoffs at the 1/B … (B-1)/B quantiles, each bucket decoding to its median (ColBERTv2's bucket_weights).
    cutoffs = np.quantile(residuals, np.arange(1, levels) / levels, axis=0).T.astype(np.float32)
    weights = np.quantile(residuals, (np.arange(levels) + 0.5) / levels, axis=0).T.astype(np.float32)
    return Codebook(centroids=centroids, cutoffs=np.ascontiguousarray(cutoffs), weights=np.ascontiguousarray(weights),
                    nbits=nbits)


def _sample_and_centroids(vectors: np.ndarray, n_centroids: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    vectors = np.asarray(vectors)
    k = n_centroids or default_centroids(len(vectors))
    rng = np.random.default_rng(seed)
    take = min(len(vectors), k * SAMPLE_PER_CENTROID)
    sample = _unit(np.asarray(vectors[np.sort(rng.choice(len(vectors), size=take, replace=False))], np.float32))
    return sample, kmeans(sample, k, seed=seed)


def _train_pq(vectors: np.ndarray, *, groups: int | None, n_centroids: int | None, seed: int) -> Codebook:
    sample, centroids = _sample_and_centroids(vectors, n_centroids, seed)
    dim = sample.shape[1]
    sizes = pq_layout(dim, groups or default_groups(dim))
    residuals = sample - centroids[assign(sample, centroids)]
    # Principal axes of the residuals, largest variance first: they go to the first (smaller) groups.
    variances, axes = np.linalg.eigh(np.cov(residuals.T.astype(np.float64)))
    rotation = np.ascontiguousarray(axes[:, np.argsort(-variances)], dtype=np.float32)
    rotated = residuals @ rotation
    take = min(len(rotated), PQ_CODEWORDS * PQ_SAMPLE_PER_CODEWORD)
    rotated = rotated[np.random.default_rng(seed).choice(len(rotated), size=take, replace=False)]
    codewords = np.zeros((len(sizes), PQ_CODEWORDS, int(sizes.max())), dtype=np.float32)
    start = 0
    for g, size in enumerate(sizes):
        codewords[g, :, :size] = _euclidean_kmeans(rotated[:, start : start + size], PQ_CODEWORDS, seed=seed + g)
        start += size
    empty = np.zeros((dim, 0), dtype=np.float32)
    return Codebook(centroids=np.ascontiguousarray(centroids @ rotation), cutoffs=empty, weights=empty, nbits=8,
                    codewords=codewords, rotation=rotation)


def _euclidean_kmeans(x: np.ndarray, k: int, *, seed: int, iterations: int = PQ_ITERATIONS) -> np.ndarray:
    """(k, d) centroids of the rows of x (plain k-means: sub-vectors are not unit). With fewer rows than k, some
    codewords repeat (never chosen over their first copy)."""
    import torch

    rng = np.random.default_rng(seed)
    x = np.ascontiguousarray(x, dtype=np.float32)
    centroids = x[rng.choice(len(x), size=k, replace=len(x) < k)].copy()
    rows = torch.from_numpy(x)
    for _ in range(iterations):
        owner = _nearest(x, centroids)
        sums = torch.zeros((k, x.shape[1])).index_add_(0, torch.from_numpy(owner), rows).numpy()
        counts = np.bincount(owner, minlength=k)
        empty = counts == 0
        centroids = sums / np.maximum(counts, 1)[:, None]
        centroids[empty] = x[rng.choice(len(x), size=int(empty.sum()), replace=len(x) < int(empty.sum()))]
    return centroids.astype(np.float32)


def _nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest (Euclidean) centroid for every row, as int64."""
    import torch

    c = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))
    half_norms = (c * c).sum(dim=1) / 2
    out = np.empty(len(x), dtype=np.int64)
    with torch.inference_mode():
        for lo in range(0, len(x), ASSIGN_BLOCK):
            block = torch.from_numpy(np.ascontiguousarray(x[lo : lo + ASSIGN_BLOCK], dtype=np.float32))
            out[lo : lo + len(block)] = (half_norms - block @ c.T).argmin(dim=1).numpy()
    return out


def compress(book: Codebook, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) vectors → centroid ids (n,) uint16 and packed residuals (n, `book.packed_bytes()`) uint8."""
    x = _unit(np.asarray(vectors, dtype=np.float32))
    if book.rotation is not None:
        x = x @ book.rotation
    codes = assign(x, book.centroids)
    residuals = x - book.centroids[codes]
    if book.codewords is not None:
        packed = np.empty((len(x), len(book.codewords)), dtype=np.uint8)
        start = 0
        for g, size in enumerate(pq_layout(book.dim, len(book.codewords))):
            packed[:, g] = _nearest(residuals[:, start : start + size], book.codewords[g, :, :size])
            start += size
        return codes.astype(np.uint16), packed
    buckets = np.zeros(residuals.shape, dtype=np.uint8)
    for j in range(book.cutoffs.shape[1]):  # B - 1 comparisons: cheaper than searchsorted per dimension
        buckets += residuals > book.cutoffs[:, j]
    return codes.astype(np.uint16), _pack(buckets, book.nbits)


def decompress(book: Codebook, codes: np.ndarray, packed: np.ndarray) -> np.ndarray:
    """Centroid ids and packed residuals → (n, dim) float32 unit vectors (in the vectors' own basis)."""
    table = book.table
    positions = np.arange(table.shape[0])
    residuals = table[positions, packed].reshape(len(packed), positions.size * table.shape[2])
    if book.slots is not None:
        residuals = residuals[:, book.slots]
    vectors = _unit(book.centroids[codes.astype(np.int64)] + residuals)
    return vectors if book.rotation is None else vectors @ book.rotation.T


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
