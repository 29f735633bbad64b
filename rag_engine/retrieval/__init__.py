"""Ranking passages for a question: ColBERT late interaction, SQLite FTS5 BM25, and their fusion."""

from rag_engine.retrieval.compressed_scorer import CompressedScorer
from rag_engine.retrieval.fusion import reciprocal_rank_fusion
from rag_engine.retrieval.scorer import BruteForceScorer, Scorer
from rag_engine.retrieval.search import Retriever

__all__ = ["BruteForceScorer", "CompressedScorer", "Retriever", "Scorer", "reciprocal_rank_fusion"]
