"""A model's vocabulary through llama.cpp's public C functions: text ↔ tokens, one token's bytes or text."""

from __future__ import annotations

import ctypes
from typing import Any


class Vocab:
    """Wraps a `llama_vocab *` (from `llama_model_get_vocab`); valid while its model is loaded.

    `token_bytes` reuses one buffer: call it from one thread (the model thread).
    """

    def __init__(self, vocab: Any) -> None:
        self.ptr = vocab
        self._piece = ctypes.create_string_buffer(256)

    @classmethod
    def of_model(cls, model: Any) -> Vocab:
        import llama_cpp

        return cls(llama_cpp.llama_model_get_vocab(model))

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = False) -> list[int]:
        """Tokens of `text`; `add_special` adds the model's BOS/EOS where it wants them, `parse_special` reads
        special-token text (`<|im_start|>`) as control tokens: only ever for the chat template's own markers."""
        import llama_cpp

        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self.ptr, data, len(data), tokens, capacity, add_special, parse_special)
        if n < 0:  # cannot happen for byte-level BPE (≤ 1 token a byte), but the API allows it
            capacity = -n
            tokens = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self.ptr, data, len(data), tokens, capacity, add_special, parse_special)
        return list(tokens[:n])

    def token_bytes(self, token: int) -> bytes:
        """The bytes a generated token stands for (special tokens render as nothing)."""
        import llama_cpp

        n = llama_cpp.llama_token_to_piece(self.ptr, token, self._piece, len(self._piece), 0, False)
        if n < 0:  # longer than the buffer: grow it once
            self._piece = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.ptr, token, self._piece, len(self._piece), 0, False)
        return self._piece.raw[:n]

    def token_text(self, token: int) -> str:
        """A token's text as the vocabulary spells it (`<|im_end|>` for a special token); "" for none (-1)."""
        import llama_cpp

        if token < 0:
            return ""
        text = llama_cpp.llama_vocab_get_text(self.ptr, token)
        return text.decode("utf-8", errors="replace") if text else ""

    def is_eog(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self.ptr, token))

    @property
    def bos(self) -> int:
        import llama_cpp

        return int(llama_cpp.llama_vocab_bos(self.ptr))

    @property
    def add_bos(self) -> bool:
        """Whether the model wants a BOS token before every prompt."""
        import llama_cpp

        return bool(llama_cpp.llama_vocab_get_add_bos(self.ptr)) and self.bos >= 0

    @property
    def bos_text(self) -> str:
        import llama_cpp

        return self.token_text(llama_cpp.llama_vocab_bos(self.ptr))

    @property
    def eos_text(self) -> str:
        import llama_cpp

        return self.token_text(llama_cpp.llama_vocab_eos(self.ptr))
