"""export refuses a converted model whose vocabulary differs from its GGUF base's, naming both."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGUFWriter

from training.export import check_vocabulary, vocabulary


def _gguf(path: Path, model: str, pre: str, tokens: list[str]) -> Path:
    writer = GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model(model)
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_vocabulary_reads_type_pre_tokenizer_and_size(tmp_path: Path) -> None:
    path = _gguf(tmp_path / "a.gguf", "gpt2", "smollm", ["a", "b", "Ċ"])
    assert vocabulary(path) == {"model": "gpt2", "pre": "smollm", "tokens": 3}


def test_a_changed_vocabulary_is_refused_before_llama_cpp_meets_it(tmp_path: Path) -> None:
    base = _gguf(tmp_path / "base.gguf", "gpt2", "smollm", ["a", "b", "Ċ"])
    same = _gguf(tmp_path / "same.gguf", "gpt2", "smollm", ["a", "b", "Ċ"])
    spm = _gguf(tmp_path / "spm.gguf", "llama", "default", ["a", "b", "<0x0A>"])
    check_vocabulary(str(base), same)
    with pytest.raises(RuntimeError, match=r"spm.gguf would tokenize differently from the base base.gguf.*'llama'"):
        check_vocabulary(str(base), spm)
    check_vocabulary("HuggingFaceTB/SmolLM2-135M-Instruct", spm)  # a hub id or HF folder: nothing to compare with
