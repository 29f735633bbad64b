"""ColBERTv2 encoding as colbert-ai does it, for queries and passages.

Query: `[CLS] [Q] tokens… [SEP]`, truncated to `query_maxlen` and padded with `[MASK]` up to it (query augmentation);
the masks are attended to only if `attend_to_mask_tokens`; all `query_maxlen` vectors are kept.
Passage: `[CLS] [D] tokens… [SEP]`, truncated to `doc_maxlen`; punctuation tokens (string.punctuation) and padding
are dropped. Every vector is BERT's last hidden state → linear (dim × hidden) → L2-normalised.

Methods are synchronous and CPU/GPU bound: callers run them in a worker thread.
"""

from __future__ import annotations

import logging
import string
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag_engine.colbert.checkpoint import CONFIG_FILES, ColBERTCheckpoint, load_checkpoint, weights_file
from rag_engine.hub import resolve_model_dir

log = logging.getLogger(__name__)


def pick_device(device: str = "auto") -> str:
    """"cuda" when asked for ("auto" or "cuda") and present, else "cpu"."""
    import torch

    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    if device != "cpu" and torch.cuda.is_available():
        return "cuda" if device == "auto" else device
    if device.startswith("cuda"):
        log.warning("CUDA was asked for but is not available: encoding on the CPU")
    return "cpu"


class ColBERTEncoder:
    """A loaded ColBERT checkpoint that turns text into token vectors. Safe to call from several threads."""

    def __init__(self, checkpoint: ColBERTCheckpoint, device: str = "cpu", *, doc_maxlen: int | None = None) -> None:
        import torch

        self._checkpoint = checkpoint
        settings = checkpoint.settings
        self._device = torch.device(device)
        # float16 on a GPU, as colbert-ai serves it; float32 on the CPU, where half precision is slow.
        self._dtype = torch.float16 if self._device.type == "cuda" else torch.float32
        self._bert = checkpoint.bert.to(self._device, self._dtype)
        self._linear = checkpoint.linear.to(self._device, self._dtype)

        max_positions = checkpoint.bert.config.max_position_embeddings
        self._query_maxlen = settings.query_maxlen
        self._doc_maxlen = min(doc_maxlen or settings.doc_maxlen, max_positions)
        if self._query_maxlen < 4 or self._doc_maxlen < 4:
            raise ValueError("query_maxlen and doc_maxlen must leave room for [CLS], the marker and [SEP]")

        tok = checkpoint.tokenizer  # only read from here on, so shared by the threads that encode
        self._tokenizer = tok
        self._cls, self._sep = tok.cls_id, tok.sep_id
        self._pad, self._mask = tok.pad_id, tok.mask_id
        self._q_marker = tok.token_to_id(settings.query_marker)
        self._d_marker = tok.token_to_id(settings.doc_marker)
        # colbert-ai: the first token of each punctuation character, dropped from passages.
        self._skiplist = (
            sorted({tok.encode(c)[0] for c in string.punctuation}) if settings.mask_punctuation else []
        )
        self._lock = threading.Lock()  # one forward pass at a time: they share the cores anyway

    # --- construction ------------------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls, spec: str, models_dir: Path, device: str = "auto", *, doc_maxlen: int | None = None
    ) -> ColBERTEncoder:
        """Load a local checkpoint folder or a Hugging Face repo id (downloaded once into `models_dir`).

        `doc_maxlen` replaces the checkpoint's passage length, as colbert-ai lets an index choose it (capped by
        BERT's position embeddings); the chunker keeps passages within it.
        """
        started = time.perf_counter()
        folder = resolve_model_dir(spec, models_dir, allow_patterns=CONFIG_FILES + ["model.safetensors"])
        if weights_file(folder) is None:  # an older repository: PyTorch pickle weights only
            folder = resolve_model_dir(spec, models_dir, allow_patterns=CONFIG_FILES + ["pytorch_model.bin"])
        label = spec if not Path(spec).expanduser().exists() else None
        checkpoint = load_checkpoint(folder, label=label)
        encoder = cls(checkpoint, pick_device(device), doc_maxlen=doc_maxlen)
        log.info(
            "loaded ColBERT %s on %s in %.1f s", checkpoint.model_id, encoder.device, time.perf_counter() - started
        )
        return encoder

    # --- what callers read -------------------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        """The checkpoint's name and a short hash of its weights: stored with an index, compared on reopening."""
        return self._checkpoint.model_id

    @property
    def dim(self) -> int:
        return self._checkpoint.settings.dim

    @property
    def query_maxlen(self) -> int:
        return self._query_maxlen

    @property
    def doc_maxlen(self) -> int:
        return self._doc_maxlen

    @property
    def device(self) -> str:
        return str(self._device)

    def count_tokens(self, text: str) -> int:
        """WordPiece tokens of `text`, without [CLS]/[D]/[SEP] (what the chunker measures)."""
        return len(self._tokenizer.encode(text))

    # --- encoding ----------------------------------------------------------------------------------------------------
    def _ids(self, texts: Sequence[str], marker: int, maxlen: int) -> list[list[int]]:
        """`[CLS] marker tokens[:maxlen-3] [SEP]` per text (colbert-ai: truncate to maxlen-1, insert the marker)."""
        encoded = self._tokenizer.encode_batch(list(texts))
        return [[self._cls, marker, *ids[: maxlen - 3], self._sep] for ids in encoded]

    def _forward(self, ids, attention):
        """(batch, length) ids → (batch, length, dim) projected vectors, float32, L2-normalised."""
        import torch

        hidden = self._bert(ids, attention)
        vectors = self._linear(hidden).float()
        return torch.nn.functional.normalize(vectors, p=2, dim=-1)

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(n, query_maxlen, dim) float32: every query padded with [MASK] to query_maxlen; all vectors kept."""
        import torch

        texts = _as_list(texts)
        out = np.zeros((len(texts), self._query_maxlen, self.dim), dtype=np.float32)
        if not texts:
            return out
        rows = self._ids(texts, self._q_marker, self._query_maxlen)
        ids = torch.full((len(rows), self._query_maxlen), self._mask, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            attention[i, : len(row)] = 1
        if self._checkpoint.settings.attend_to_mask_tokens:
            attention.fill_(1)
        with self._lock, torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                part = slice(start, start + batch_size)
                vectors = self._forward(ids[part].to(self._device), attention[part].to(self._device))
                out[part] = vectors.cpu().numpy()
        return out

    def encode_documents(self, texts: Sequence[str], batch_size: int = 32) -> list[np.ndarray]:
        """One (n_tokens_i, dim) float32 array per passage: [CLS], [D], its tokens and [SEP], minus punctuation."""
        import torch

        texts = _as_list(texts)
        rows = self._ids(texts, self._d_marker, self._doc_maxlen)
        out: list[np.ndarray] = [np.zeros((0, self.dim), dtype=np.float32)] * len(rows)
        # Longest first, so each batch pads little and an out-of-memory shows up on the first batch.
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]), reverse=True)
        skip = torch.tensor(self._skiplist, dtype=torch.long)
        with self._lock, torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                width = len(rows[batch[0]])
                ids = torch.full((len(batch), width), self._pad, dtype=torch.long)
                attention = torch.zeros_like(ids)
                for j, i in enumerate(batch):
                    ids[j, : len(rows[i])] = torch.tensor(rows[i])
                    attention[j, : len(rows[i])] = 1
                keep = attention.bool() & ~torch.isin(ids, skip)
                vectors = self._forward(ids.to(self._device), attention.to(self._device)).cpu()
                for j, i in enumerate(batch):
                    out[i] = vectors[j][keep[j]].numpy()
        return out


def _as_list(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("pass a list of texts, not one string")
    return list(texts)
