"""MaxSim, ColBERT's late-interaction score: for each query vector its best dot product with a passage's vectors,
summed over the query. Brute force over every token: the exact reference that pruning or compression is checked against.
"""

from __future__ import annotations

import numpy as np

#: Token rows scored at once by `maxsim_batch`: bounds the (tokens × query) similarity block to ~16 MiB at q = 32.
BLOCK_TOKENS = 1 << 17


def maxsim(query: np.ndarray, doc: np.ndarray) -> float:
    """Score one passage: Σ_i max_j ⟨query_i, doc_j⟩.

    query: (q, d) and doc: (t, d), any float dtype. A passage without vectors scores 0.

    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> d = np.array([[0.6, 0.8], [1.0, 0.0]])
    >>> round(maxsim(q, d), 6)  # query 0 best matches doc row 1 (1.0), query 1 best matches doc row 0 (0.8)
    1.8
    >>> maxsim(q, np.zeros((0, 2)))
    0.0
    """
    if doc.shape[0] == 0:
        return 0.0
    sims = np.asarray(query, dtype=np.float32) @ np.asarray(doc, dtype=np.float32).T
    return float(sims.max(axis=1).sum())


def maxsim_batch(query: np.ndarray, vectors: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Score many passages stored back to back.

    query: (q, d); vectors: (N_tokens, d), passage i's rows being vectors[offsets[i]:offsets[i+1]];
    offsets: (n_docs + 1,), non-decreasing, offsets[0] == 0 and offsets[-1] == N_tokens.
    Returns (n_docs,) float32 scores; a passage with no rows scores 0. float16 vectors are scored in float32.

    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    >>> vectors = np.array([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]], dtype=np.float16)
    >>> [round(float(s), 3) for s in maxsim_batch(q, vectors, np.array([0, 2, 2, 3]))]
    [1.8, 0.0, 1.0]
    """
    import torch

    offsets = np.asarray(offsets, dtype=np.int64)
    n_docs = len(offsets) - 1
    if n_docs < 0 or offsets[0] != 0 or offsets[-1] != len(vectors) or np.any(np.diff(offsets) < 0):
        raise ValueError(f"offsets must rise from 0 to {len(vectors)}")
    scores = np.zeros(n_docs, dtype=np.float32)
    if n_docs == 0 or len(vectors) == 0:
        return scores
    # torch rather than numpy: its float16 → float32 conversion and matmul use every core (numpy's cast is serial).
    q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32))
    rows = torch.from_numpy(np.ascontiguousarray(vectors))
    lengths = np.diff(offsets)
    with torch.inference_mode():
        doc = 0
        while doc < n_docs:
            # Whole passages per block, about BLOCK_TOKENS rows (at least one passage).
            end = int(np.searchsorted(offsets, offsets[doc] + BLOCK_TOKENS, side="right")) - 1
            end = min(max(end, doc + 1), n_docs)
            lo, hi = int(offsets[doc]), int(offsets[end])
            if hi > lo:
                sims = rows[lo:hi].float() @ q.T  # (rows, q)
                owner = torch.from_numpy(np.repeat(np.arange(end - doc), lengths[doc:end]))
                best = torch.full((end - doc, q.shape[0]), float("-inf"))
                best.scatter_reduce_(0, owner[:, None].expand_as(sims), sims, reduce="amax")
                best[torch.from_numpy(lengths[doc:end] == 0)] = 0.0  # a passage without rows scores 0
                scores[doc:end] = best.sum(dim=1).numpy()
            doc = end
    return scores
