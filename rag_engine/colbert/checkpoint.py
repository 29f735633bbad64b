"""Reading a ColBERT checkpoint in the colbert-ir layout (as colbert-ir/colbertv2.0 is published).

The layout: `config.json` (a BERT config, architectures `HF_ColBERT`), weights in `model.safetensors` or
`pytorch_model.bin` holding `bert.*` plus `linear.weight` (dim × hidden, no bias), the tokenizer files, and
`artifact.metadata`, colbert-ai's JSON config (markers, query/doc lengths, dim, punctuation masking).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag_engine.errors import ModelUnavailable

if TYPE_CHECKING:
    import torch

    from rag_engine.colbert.bert import BertEncoder
    from rag_engine.colbert.wordpiece import WordPiece

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: Files of a checkpoint repository worth downloading, weights aside (no TensorFlow/Flax/ONNX copies).
CONFIG_FILES = [
    "config.json",
    "artifact.metadata",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
]
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Keys in the weights that BERT without its pooler does not use.
_IGNORED_KEYS = ("bert.pooler.", "bert.embeddings.position_ids")


@dataclass(frozen=True, slots=True)
class ColBERTSettings:
    """What artifact.metadata says about encoding (colbert-ai's defaults where a key is missing)."""

    query_maxlen: int = 32
    doc_maxlen: int = 180
    dim: int = 128
    mask_punctuation: bool = True
    attend_to_mask_tokens: bool = False
    query_marker: str = "[unused0]"  # the token that stands for [Q]
    doc_marker: str = "[unused1]"  # the token that stands for [D]

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ColBERTSettings:
        meta = metadata.get("config", metadata)  # colbert-ai reads both the flat and the nested form
        defaults = cls()
        return cls(
            query_maxlen=int(meta.get("query_maxlen", defaults.query_maxlen)),
            doc_maxlen=int(meta.get("doc_maxlen", defaults.doc_maxlen)),
            dim=int(meta.get("dim", defaults.dim)),
            mask_punctuation=bool(meta.get("mask_punctuation", defaults.mask_punctuation)),
            attend_to_mask_tokens=bool(meta.get("attend_to_mask_tokens", defaults.attend_to_mask_tokens)),
            query_marker=str(meta.get("query_token_id", defaults.query_marker)),
            doc_marker=str(meta.get("doc_token_id", defaults.doc_marker)),
        )


@dataclass(frozen=True, slots=True)
class ColBERTCheckpoint:
    """A loaded checkpoint: BERT, its projection and tokenizer, on the CPU in float32."""

    folder: Path
    model_id: str
    settings: ColBERTSettings
    bert: BertEncoder
    linear: torch.nn.Linear  # (hidden → dim, no bias)
    tokenizer: WordPiece


def weights_file(folder: Path) -> Path | None:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def weights_digest(path: Path) -> str:
    """sha256 of the weights, so that an index notices a changed checkpoint behind the same name."""
    blob = path.resolve()
    if _SHA256.fullmatch(blob.name):  # the Hugging Face cache names each LFS blob by its sha256 already
        return blob.name
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_settings(folder: Path) -> ColBERTSettings:
    path = folder / "artifact.metadata"
    if not path.is_file():
        log.warning("%s has no artifact.metadata: using colbert-ai's defaults", folder)
        return ColBERTSettings()
    return ColBERTSettings.from_metadata(json.loads(path.read_text(encoding="utf-8")))


def _load_state_dict(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint(folder: Path, *, label: str | None = None) -> ColBERTCheckpoint:
    """Read `folder` (colbert-ir layout). `label` names the model in `model_id` (default: the folder's name).

    Imports torch, safetensors and tokenizers, not transformers (seconds of a cold start; see bert.py).
    """
    import torch

    from rag_engine.colbert.bert import BertConfig, BertEncoder
    from rag_engine.colbert.wordpiece import load_wordpiece

    folder = Path(folder)
    weights = weights_file(folder)
    if weights is None or not (folder / "config.json").is_file():
        raise ModelUnavailable(
            f"{folder} is not a ColBERT checkpoint: it needs config.json and {' or '.join(WEIGHT_FILES)}."
        )
    settings = read_settings(folder)
    try:
        config = BertConfig.from_json(folder / "config.json")
    except ValueError as error:
        raise ModelUnavailable(f"{folder / 'config.json'}: {error}: not a BERT config this encoder runs.") from None
    state = _load_state_dict(weights)
    if "linear.weight" not in state:
        raise ModelUnavailable(f"{weights} has no `linear.weight`: not a ColBERT checkpoint (colbert-ir layout).")

    prefix = "bert."
    bert_state = {
        k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and not k.startswith(_IGNORED_KEYS)
    }
    expected = config.weight_names()
    missing = [k for k in expected if k not in bert_state]
    if missing:
        raise ModelUnavailable(f"{weights} lacks BERT weights {missing[:5]}: not a ColBERT checkpoint.")
    unexpected = sorted(set(bert_state) - set(expected) - {"embeddings.token_type_ids"})  # a buffer, not a weight
    if unexpected:
        log.warning("%s: ignoring unexpected weights %s", weights, unexpected[:5])
    try:
        bert = BertEncoder.from_hf_state(config, bert_state)
    except RuntimeError as error:  # torch's size mismatch: weights of another shape than config.json says
        raise ModelUnavailable(f"{weights} does not fit its config.json: {str(error).strip()[:300]}") from None

    projection = state["linear.weight"]
    if projection.shape != (settings.dim, config.hidden_size):
        raise ModelUnavailable(
            f"{weights}: linear.weight is {tuple(projection.shape)}, expected ({settings.dim}, {config.hidden_size})."
        )
    linear = torch.nn.Linear(config.hidden_size, settings.dim, bias=False)
    with torch.no_grad():
        linear.weight.copy_(projection)
    linear.eval()

    tokenizer = load_wordpiece(folder)
    for marker in (settings.query_marker, settings.doc_marker):
        if tokenizer.token_to_id(marker) in (None, tokenizer.unk_id):
            raise ModelUnavailable(f"{folder}: the marker token {marker} is not in the vocabulary.")

    model_id = f"{label or folder.name}@{weights_digest(weights)[:12]}"
    return ColBERTCheckpoint(folder, model_id, settings, bert, linear, tokenizer)
