"""The ColBERT encoder as a shared service: loaded once, on first use, and used by one caller at a time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from rag_engine.colbert.encoder import ColBERTEncoder
from rag_engine.settings import EngineSettings

log = logging.getLogger(__name__)

#: Special tokens ColBERT adds to every passage ([CLS], [D], [SEP]); a chunk's own tokens must leave room for them.
DOC_SPECIAL_TOKENS = 3


class EncoderService:
    """Owns the encoder. Encoding runs in a worker thread; the lock keeps two uploads from fighting over the cores."""

    def __init__(self, settings: EngineSettings) -> None:
        self._settings = settings
        self._encoder: ColBERTEncoder | None = None
        self._load_lock = asyncio.Lock()
        self._use_lock = asyncio.Lock()

    async def get(self) -> ColBERTEncoder:
        async with self._load_lock:
            if self._encoder is None:
                s = self._settings
                self._encoder = await asyncio.to_thread(
                    ColBERTEncoder.load, s.colbert_model, s.models_dir, s.device, doc_maxlen=s.chunk_tokens
                )
                log.info("ColBERT encoder %s loaded", self._encoder.model_id)
            return self._encoder

    @property
    def loaded(self) -> ColBERTEncoder | None:
        return self._encoder

    async def chunk_token_limit(self) -> int:
        encoder = await self.get()
        return min(self._settings.chunk_tokens, encoder.doc_maxlen) - DOC_SPECIAL_TOKENS

    async def encode_query(self, text: str) -> np.ndarray:
        encoder = await self.get()
        async with self._use_lock:
            vectors = await asyncio.to_thread(encoder.encode_queries, [text])
        return vectors[0]

    async def encode_documents(
        self, texts: Sequence[str], on_batch: Callable[[int, int], Awaitable[None]] | None = None
    ) -> list[np.ndarray]:
        """Encode in batches, reporting (done, total) between batches so callers can show progress."""
        encoder = await self.get()
        batch = self._settings.encode_batch_size * 4  # several model batches per thread hop
        out: list[np.ndarray] = []
        for start in range(0, len(texts), batch):
            part = list(texts[start : start + batch])
            async with self._use_lock:
                out.extend(
                    await asyncio.to_thread(encoder.encode_documents, part, batch_size=self._settings.encode_batch_size)
                )
            if on_batch is not None:
                await on_batch(len(out), len(texts))
        return out
