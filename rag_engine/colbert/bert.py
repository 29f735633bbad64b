"""BERT's encoder for inference, as transformers' `BertModel` (no pooler) computes it, from torch.nn modules alone.

Why not transformers: importing its BertModel took ~2.9 s, most of a cold `paperbot search --mode hybrid`. Each layer
is BERT's post-LayerNorm layer: self-attention through `scaled_dot_product_attention` (what transformers' default
"sdpa" attention calls, so the same kernels on CPU and GPU), exact erf GELU, no dropout. The embeddings are word +
absolute position + token type 0, then LayerNorm. Only the checkpoints ColBERT uses are accepted (`hidden_act` "gelu",
absolute positions); anything else is refused rather than computed differently.

Not `torch.nn.TransformerEncoderLayer`, though it holds the same weights: in eval mode its fused "fast path" encoded
passage batches 15-20 % slower than transformers on this CPU (an unfused masked softmax), and its other path ~5 %.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

_LAYER_MODULES = {  # transformers BertLayer's names → ours, beside the q/k/v projections (stacked into one)
    "attention.output.dense": "attention_out",
    "attention.output.LayerNorm": "attention_norm",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
    "output.LayerNorm": "output_norm",
}
_QKV = ("query", "key", "value")  # qkv's row blocks, in this order


@dataclass(frozen=True, slots=True)
class BertConfig:
    """The fields of a BERT config.json that the forward pass depends on."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float

    @classmethod
    def from_json(cls, path: Path) -> BertConfig:
        """Read config.json; ValueError for a config this module would compute differently from transformers."""
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        if raw.get("hidden_act", "gelu") != "gelu":  # "gelu" is the erf form in transformers; others are not
            raise ValueError(f"hidden_act {raw['hidden_act']!r} is not supported (only 'gelu')")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type {raw['position_embedding_type']!r} is not supported")
        try:
            config = cls(
                vocab_size=int(raw["vocab_size"]),
                hidden_size=int(raw["hidden_size"]),
                num_hidden_layers=int(raw["num_hidden_layers"]),
                num_attention_heads=int(raw["num_attention_heads"]),
                intermediate_size=int(raw["intermediate_size"]),
                # transformers' BertConfig defaults where the file is silent
                max_position_embeddings=int(raw.get("max_position_embeddings", 512)),
                type_vocab_size=int(raw.get("type_vocab_size", 2)),
                layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
            )
        except KeyError as missing:
            raise ValueError(f"no {missing.args[0]!r}") from None
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"hidden_size {config.hidden_size} does not split into {config.num_attention_heads} heads")
        return config

    def weight_names(self) -> list[str]:
        """The names BertModel (without pooler) gives its weights, without the checkpoint's `bert.` prefix."""
        names = [f"embeddings.{e}.weight" for e in ("word_embeddings", "position_embeddings", "token_type_embeddings")]
        names += ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
        for i in range(self.num_hidden_layers):
            layer = f"encoder.layer.{i}."
            for module in (*(f"attention.self.{p}" for p in _QKV), *_LAYER_MODULES):
                names += [f"{layer}{module}.weight", f"{layer}{module}.bias"]
        return names


class BertLayer(nn.Module):
    """One BERT layer: self-attention, add & LayerNorm, GELU feed-forward, add & LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        hidden, eps = config.hidden_size, config.layer_norm_eps
        self.heads = config.num_attention_heads
        self.qkv = nn.Linear(hidden, 3 * hidden)  # query, key and value in one matrix product
        self.attention_out = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=eps)
        self.intermediate = nn.Linear(hidden, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, hidden: torch.Tensor, attend: torch.Tensor | None) -> torch.Tensor:
        """`attend`: (batch, 1, 1, length) booleans, True where a key may be attended to; None for all."""
        batch, length, width = hidden.shape
        heads = self.qkv(hidden).view(batch, length, 3 * self.heads, -1).transpose(1, 2)  # (batch, 3·heads, length, d)
        query, key, value = heads.chunk(3, dim=1)
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=attend)
        hidden = self.attention_norm(hidden + self.attention_out(context.transpose(1, 2).reshape(batch, length, width)))
        return self.output_norm(hidden + self.output(F.gelu(self.intermediate(hidden))))


class BertEncoder(nn.Module):
    """(batch, length) token ids and attention mask (1 = attend) → (batch, length, hidden) last hidden states."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, hidden)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, hidden)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, hidden)
        self.embedding_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    @classmethod
    def from_hf_state(cls, config: BertConfig, state: Mapping[str, torch.Tensor]) -> BertEncoder:
        """Build from BertModel's weights (`config.weight_names()`, all present), float32, in eval mode."""
        ours: dict[str, torch.Tensor] = {
            "word_embeddings.weight": state["embeddings.word_embeddings.weight"],
            "position_embeddings.weight": state["embeddings.position_embeddings.weight"],
            "token_type_embeddings.weight": state["embeddings.token_type_embeddings.weight"],
            "embedding_norm.weight": state["embeddings.LayerNorm.weight"],
            "embedding_norm.bias": state["embeddings.LayerNorm.bias"],
        }
        for i in range(config.num_hidden_layers):
            theirs, mine = f"encoder.layer.{i}.", f"layers.{i}."
            for kind in ("weight", "bias"):
                ours[f"{mine}qkv.{kind}"] = torch.cat([state[f"{theirs}attention.self.{p}.{kind}"] for p in _QKV])
                for hf_name, name in _LAYER_MODULES.items():
                    ours[f"{mine}{name}.{kind}"] = state[f"{theirs}{hf_name}.{kind}"]
        # Not built on the meta device to skip the random init (~0.1 s for MiniLM): initialising meta tensors imports
        # torch._dynamo, 0.9 s. The loaded tensors are assigned, not copied.
        model = cls(config)
        model.load_state_dict(ours, strict=True, assign=True)
        return model.float().requires_grad_(False).eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        # Same order of additions as transformers' BertEmbeddings (word + type, then + position).
        hidden = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]
        hidden = self.embedding_norm(hidden + self.position_embeddings(positions))
        # Padded positions still get vectors (attending to the others), as in transformers: a query's [MASK]s need them.
        attend = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        for layer in self.layers:
            hidden = layer(hidden, attend)
        return hidden
