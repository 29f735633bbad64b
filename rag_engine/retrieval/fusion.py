"""Reciprocal rank fusion: merge rankings whose scores are not comparable (MaxSim sums vs BM25)."""

from __future__ import annotations

from collections.abc import Sequence

RRF_K = 60  # Cormack et al. (2009); damps the weight of the very first ranks


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Fuse several best-first lists of ids into one, scoring each id by the sum of 1 / (k + rank).

    >>> reciprocal_rank_fusion([[1, 2, 3], [3, 1]])
    [(1, 0.03252247488101534), (3, 0.032266458495966696), (2, 0.016129032258064516)]
    """
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
