"""ColBERTv2 as published: checkpoint reading (BERT in torch alone, WordPiece in tokenizers alone), query/passage
encoding and MaxSim scoring, each in its own module."""

from rag_engine.colbert.encoder import ColBERTEncoder
from rag_engine.colbert.maxsim import maxsim_batch

__all__ = ["ColBERTEncoder", "maxsim_batch"]
