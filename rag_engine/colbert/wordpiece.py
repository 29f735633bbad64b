"""A checkpoint's BERT WordPiece tokenizer, read with the `tokenizers` library alone (transformers' import is ~3 s).

tokenizer.json is used as it is when the folder has it; otherwise the pipeline BertTokenizer builds is assembled from
vocab.txt and tokenizer_config.json (do_lower_case, strip_accents, tokenize_chinese_chars).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece as WordPieceModel

from rag_engine.errors import ModelUnavailable

_SPECIALS = {  # transformers' names for them, and BERT's defaults
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "mask_token": "[MASK]",
    "unk_token": "[UNK]",
}


@dataclass(frozen=True, slots=True)
class WordPiece:
    """The tokenizer and its special tokens' ids. Only read after loading, so one can serve several threads."""

    tokenizer: Tokenizer  # without truncation or padding
    cls_id: int
    sep_id: int
    pad_id: int
    mask_id: int
    unk_id: int

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` without [CLS]/[SEP]."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def tokenize(self, text: str) -> list[str]:
        """Word pieces of `text` without [CLS]/[SEP], as strings."""
        return self.tokenizer.encode(text, add_special_tokens=False).tokens


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _content(token: str | dict[str, Any]) -> str:
    """A special token's text: transformers saves it as a string or, an AddedToken, as a dict."""
    return str(token["content"] if isinstance(token, dict) else token)


def _from_vocab(vocab: Path, config: dict[str, Any], specials: dict[str, str]) -> Tokenizer:
    """What transformers' BertTokenizer builds from a vocabulary file and its settings."""
    tokenizer = Tokenizer(WordPieceModel.from_file(str(vocab), unk_token=specials["unk_token"]))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
        strip_accents=config.get("strip_accents"),  # None: follows lowercase, as in the original BERT
        lowercase=bool(config.get("do_lower_case", True)),
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.add_special_tokens(list(specials.values()))  # never split, lower-cased or broken into pieces
    return tokenizer


def load_wordpiece(folder: Path) -> WordPiece:
    """The tokenizer of checkpoint `folder`; ModelUnavailable when it has none or lacks a special token."""
    config = _read_json(folder / "tokenizer_config.json")
    names = {**config, **_read_json(folder / "special_tokens_map.json")}
    specials = {key: _content(names.get(key) or default) for key, default in _SPECIALS.items()}
    if (folder / "tokenizer.json").is_file():
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    elif (folder / "vocab.txt").is_file():
        tokenizer = _from_vocab(folder / "vocab.txt", config, specials)
    else:
        raise ModelUnavailable(f"{folder}: needs a WordPiece tokenizer, tokenizer.json or vocab.txt.")
    tokenizer.no_truncation()
    tokenizer.no_padding()
    found = {key: tokenizer.token_to_id(token) for key, token in specials.items()}
    lacking = [specials[key] for key, i in found.items() if i is None]
    if lacking:
        raise ModelUnavailable(f"{folder}: the tokenizer has no {', '.join(lacking)}.")
    ids = {key: i for key, i in found.items() if i is not None}
    return WordPiece(
        tokenizer,
        cls_id=ids["cls_token"],
        sep_id=ids["sep_token"],
        pad_id=ids["pad_token"],
        mask_id=ids["mask_token"],
        unk_id=ids["unk_token"],
    )
