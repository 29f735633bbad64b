"""The tiny models are real formats: llama.cpp's tokenizer tests pass, the GGUFs load and agree with transformers,
and the ColBERT folder reads as the colbert-ir layout with a vocabulary that covers real text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REAL_PDFS
from training.tiny_models import COLBERT_METADATA, build_colbert, read_tokenizer_tests


@pytest.fixture(scope="module")
def qwen_tokenizer(tiny_models: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_models / "qwen2")


@pytest.fixture(scope="module")
def f16_llama(tiny_models: Path):
    import llama_cpp

    llm = llama_cpp.Llama(
        str(tiny_models / "qwen2-f16.gguf"), n_gpu_layers=0, n_ctx=512, logits_all=True, verbose=False, seed=0
    )
    yield llm
    llm.close()


def _chat_prompt(tokenizer) -> str:
    messages = [{"role": "user", "content": "Why does the Transformer scale dot products by 1/sqrt(d_k)? Be brief."}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _real_text(limit: int = 6000) -> str:
    import pymupdf

    pdf = sorted(REAL_PDFS.glob("*.pdf"))[0]
    with pymupdf.open(pdf) as doc:
        text = "\n".join(page.get_text() for page in doc)
    return text[:limit]


# --- Qwen2 tokenizer --------------------------------------------------------------------------------------------------
def test_qwen_tokenizer_passes_llama_cpp_test_vectors(tiny_models: Path, qwen_tokenizer) -> None:
    cases = read_tokenizer_tests(tiny_models / "qwen2-tokenizer-tests")
    assert len(cases) > 40
    for text, expected in cases:
        assert qwen_tokenizer.encode(text, add_special_tokens=False) == expected, repr(text)


def test_qwen_tokenizer_round_trips_and_knows_chatml(qwen_tokenizer) -> None:
    text = "Attention(Q, K, V) = softmax(QKᵀ/√d_k)·V — naïve café, 日本語 🦙"
    assert qwen_tokenizer.decode(qwen_tokenizer.encode(text, add_special_tokens=False)) == text
    assert qwen_tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        151643,
        151644,
        151645,
    ]
    prompt = _chat_prompt(qwen_tokenizer)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert qwen_tokenizer.eos_token == "<|im_end|>"


# --- GGUF -------------------------------------------------------------------------------------------------------------
def test_gguf_tokenizes_like_transformers(f16_llama, qwen_tokenizer) -> None:
    for text in (_real_text(), _chat_prompt(qwen_tokenizer)):
        ours = qwen_tokenizer.encode(text, add_special_tokens=False)
        assert f16_llama.tokenize(text.encode("utf-8"), add_bos=False, special=True) == ours


def test_gguf_carries_the_vocabulary_and_chat_template(f16_llama, qwen_tokenizer) -> None:
    meta = f16_llama.metadata
    assert meta["general.architecture"] == "qwen2"
    assert meta["tokenizer.ggml.pre"] == "qwen2"
    assert meta["tokenizer.chat_template"] == qwen_tokenizer.chat_template
    assert f16_llama.n_vocab() == 151936
    assert f16_llama.token_eos() == 151645


def test_f16_gguf_logits_match_transformers_fp32(tiny_models: Path, f16_llama, qwen_tokenizer) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    ids = qwen_tokenizer.encode(_chat_prompt(qwen_tokenizer), add_special_tokens=False)
    f16_llama.reset()
    f16_llama.eval(ids)
    theirs = np.asarray(f16_llama.scores[: len(ids)], dtype=np.float32)
    model = AutoModelForCausalLM.from_pretrained(tiny_models / "qwen2", dtype=torch.float32).eval()
    with torch.inference_mode():
        ours = model(torch.tensor([ids])).logits[0].numpy()
    assert ours.shape == theirs.shape
    # F16 weights against fp32: 0.0012 seen here (logit std 0.32); a wrong tensor mapping is off by ~1.
    assert np.abs(ours - theirs).max() < 0.01
    # Random weights leave near-ties among 151,936 logits: llama.cpp's pick must be a top choice of ours too.
    picked = ours[np.arange(len(ids)), theirs.argmax(-1)]
    assert (picked >= ours.max(-1) - 0.01).all()


def test_q4_k_m_gguf_is_quantized_and_close_to_f16(tiny_models: Path, f16_llama, qwen_tokenizer) -> None:
    import llama_cpp

    q4_path, f16_path = tiny_models / "qwen2.gguf", tiny_models / "qwen2-f16.gguf"
    assert q4_path.stat().st_size < 0.6 * f16_path.stat().st_size
    q4 = llama_cpp.Llama(str(q4_path), n_gpu_layers=0, n_ctx=512, logits_all=True, verbose=False, seed=0)
    try:
        assert q4.metadata["general.file_type"] == str(llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M)
        ids = qwen_tokenizer.encode(_chat_prompt(qwen_tokenizer), add_special_tokens=False)
        q4.eval(ids)
        f16_llama.reset()
        f16_llama.eval(ids)
        a = np.asarray(q4.scores[: len(ids)]).ravel()
        b = np.asarray(f16_llama.scores[: len(ids)]).ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.9  # 4-bit noise, not a different model
    finally:
        q4.close()


# --- ColBERT ----------------------------------------------------------------------------------------------------------
def test_colbert_folder_is_in_the_colbert_ir_layout(tiny_models: Path) -> None:
    from safetensors import safe_open

    folder = tiny_models / "colbert"
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["HF_ColBERT"] and config["model_type"] == "bert"
    metadata = json.loads((folder / "artifact.metadata").read_text())
    assert metadata["query_maxlen"] == 32 and metadata["doc_maxlen"] == 180 and metadata["dim"] == 128
    assert metadata["attend_to_mask_tokens"] is False and metadata["mask_punctuation"] is True
    with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
        keys = set(weights.keys())
        assert weights.get_tensor("linear.weight").shape == (128, config["hidden_size"])
    assert "linear.bias" not in keys
    assert keys - {"linear.weight"} and all(k.startswith("bert.") for k in keys - {"linear.weight"})
    vocab = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == len(set(vocab)) == config["vocab_size"]
    assert vocab.index("[unused0]") == 1 and vocab.index("[unused1]") == 2


def test_colbert_tokenizer_covers_real_text(tiny_models: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models / "colbert")
    assert len(tokenizer) == tokenizer.vocab_size  # else PyLate resizes the embeddings
    assert tokenizer.convert_tokens_to_ids(["[unused0]", "[unused1]", "[MASK]"]) == [1, 2, 103]
    text = _real_text(20000)
    words = [w for w in re.findall(r"[A-Za-z0-9]+(?:[-'][A-Za-z0-9]+)*", text)]
    assert len(words) > 2000
    ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids


def test_colbert_build_is_deterministic(tiny_models: Path, tmp_path: Path) -> None:
    build_colbert(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "vocab.txt", "artifact.metadata", "config.json"):
        assert (tmp_path / "again" / name).read_bytes() == (tiny_models / "colbert" / name).read_bytes(), name
    assert json.loads((tmp_path / "again" / "artifact.metadata").read_text())["dim"] == COLBERT_METADATA["dim"]
