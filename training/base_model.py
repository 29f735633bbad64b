"""The model to fine-tune: a hub id, a local HF folder, or a GGUF (dequantized by transformers), and its tokenizer.

Unsloth's `FastLanguageModel` is used when it is installed and a CUDA GPU is there (it loads HF folders, not GGUFs:
`prepare_base` writes one); plain transformers + PEFT otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "Qwen/Qwen2.5-3B-Instruct"


def is_gguf(spec: str) -> bool:
    return spec.endswith(".gguf") and Path(spec).is_file()


def unsloth_available() -> bool:
    """Unsloth installed and a CUDA GPU present (without a GPU it falls back to slow CPU paths: not worth it)."""
    try:
        import torch
    except ImportError:
        return False
    if not torch.cuda.is_available():
        return False
    try:
        import unsloth  # noqa: F401
    except Exception as error:  # unsloth raises more than ImportError when its pins do not match
        log.info("Unsloth not usable (%s): training with transformers + PEFT", error)
        return False
    return True


def prepare_base(spec: str, out: Path) -> str | Path:
    """An HF folder for `spec`: itself when it is one, else (a GGUF) the dequantized model saved as float32.

    A model loaded from a GGUF stays flagged as GGUF-quantized although its weights are plain tensors; TRL refuses to
    train it and `save_pretrained` refuses to write it, so the flags are cleared before saving.
    """
    if not is_gguf(spec):
        return spec  # a local folder or a hub id: from_pretrained takes either
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(spec)
    out = Path(out)
    if (out / "config.json").exists():
        return out
    log.info("dequantizing %s into %s", gguf, out)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def load_for_training(spec: str, *, work_dir: Path, use_unsloth: bool | None = None, max_seq_length: int = 4096,
                      lora: dict[str, Any] | None = None) -> tuple[Any, Any, bool]:
    """(model, tokenizer, unsloth_used). With Unsloth the LoRA is applied here; otherwise the trainer applies it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = prepare_base(spec, work_dir / "base-hf")
    if use_unsloth is None:
        use_unsloth = unsloth_available()
    if use_unsloth:
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(str(folder), max_seq_length=max_seq_length,
                                                             load_in_4bit=False, dtype=None)
        if lora is not None:
            model = FastLanguageModel.get_peft_model(model, **lora)
        return model, tokenizer, True
    dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, False


def lora_settings(rank: int, alpha: int | None = None, dropout: float = 0.0) -> dict[str, Any]:
    """LoRA on every linear layer of the attention and MLP blocks, as the reference recipe."""
    return {
        "r": rank,
        "lora_alpha": alpha or rank,
        "lora_dropout": dropout,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "bias": "none",
    }
