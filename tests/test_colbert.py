"""ColBERT encoding with the tiny checkpoint, MaxSim, and where models come from (hub)."""

from __future__ import annotations

import hashlib
import json
import shutil
import string
from pathlib import Path

import numpy as np
import pytest

from rag_engine.colbert import maxsim as maxsim_module
from rag_engine.colbert.encoder import ColBERTEncoder
from rag_engine.colbert.maxsim import maxsim, maxsim_batch
from rag_engine.errors import ModelUnavailable
from rag_engine.hub import resolve_model_dir, resolve_model_file

PASSAGES = [
    "The Transformer, based solely on attention mechanisms, dispenses with recurrence and convolutions entirely.",
    "We scale the dot products by 1/sqrt(d_k): for large d_k they grow large in magnitude!",
    "Short one.",
    "Reptile (a first-order meta-learning algorithm) repeatedly samples a task, trains on it, and moves the "
    "initialization towards the trained weights on that task; it is closely related to first-order MAML. " * 5,
    "",
    "?!",
]
QUERIES = ["what is attention?", "", "how does reptile differ from MAML " * 10]


@pytest.fixture(scope="module")
def encoder(tiny_models: Path, tmp_path_factory) -> ColBERTEncoder:
    return ColBERTEncoder.load(str(tiny_models / "colbert"), tmp_path_factory.mktemp("models"), "cpu")


def _reference(encoder: ColBERTEncoder, tokens: list[str], attend: int | None = None) -> np.ndarray:
    """Our encoder's pieces run by hand on an explicit token sequence: BERT → linear → L2 normalisation."""
    import torch

    ckpt = encoder._checkpoint
    ids = torch.tensor([[ckpt.tokenizer.token_to_id(t) for t in tokens]])
    mask = torch.ones_like(ids)
    if attend is not None:
        mask[0, attend:] = 0
    with torch.inference_mode():
        hidden = ckpt.bert(ids, mask)
        return torch.nn.functional.normalize(ckpt.linear(hidden), dim=-1)[0].numpy()


# --- properties and shapes --------------------------------------------------------------------------------------------
def test_loaded_encoder_reports_the_checkpoint(encoder: ColBERTEncoder, tiny_models: Path) -> None:
    assert (encoder.dim, encoder.query_maxlen, encoder.doc_maxlen) == (128, 32, 180)
    assert encoder.device == "cpu"
    assert encoder.model_id.startswith("colbert@") and len(encoder.model_id.split("@")[1]) == 12


def test_query_vectors_have_fixed_shape_and_unit_norm(encoder: ColBERTEncoder) -> None:
    vectors = encoder.encode_queries(QUERIES)
    assert vectors.shape == (len(QUERIES), 32, 128) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=-1), 1.0, atol=1e-5)
    assert encoder.encode_queries([]).shape == (0, 32, 128)


def test_query_is_cls_marker_tokens_sep_then_masks_not_attended(encoder: ColBERTEncoder) -> None:
    text = "What does PonderNet halt on?"
    words = encoder._checkpoint.tokenizer.tokenize(text)
    tokens = ["[CLS]", "[unused0]", *words, "[SEP]"]
    padded = tokens + ["[MASK]"] * (32 - len(tokens))
    expected = _reference(encoder, padded, attend=len(tokens))  # masks present but not attended (the metadata)
    got = encoder.encode_queries([text])[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # The real tokens' vectors do not depend on how many masks follow them; the mask vectors differ from each other.
    alone = _reference(encoder, tokens)
    np.testing.assert_allclose(got[: len(tokens)], alone, atol=1e-5)
    assert not np.allclose(got[len(tokens)], got[len(tokens) + 1], atol=1e-4)


def test_attend_to_mask_tokens_is_read_from_the_metadata(tiny_models: Path, tmp_path: Path) -> None:
    folder = tmp_path / "attending"
    shutil.copytree(tiny_models / "colbert", folder)
    meta = json.loads((folder / "artifact.metadata").read_text())
    meta["attend_to_mask_tokens"] = True
    (folder / "artifact.metadata").write_text(json.dumps(meta))
    attending = ColBERTEncoder.load(str(folder), tmp_path / "models", "cpu")
    text = "What does PonderNet halt on?"
    tokens = ["[CLS]", "[unused0]", *attending._checkpoint.tokenizer.tokenize(text), "[SEP]"]
    expected = _reference(attending, tokens + ["[MASK]"] * (32 - len(tokens)))  # everything attended
    np.testing.assert_allclose(attending.encode_queries([text])[0], expected, atol=1e-5)


def test_long_query_is_truncated_to_query_maxlen(encoder: ColBERTEncoder) -> None:
    text = QUERIES[2]
    words = encoder._checkpoint.tokenizer.tokenize(text)
    assert len(words) > 40
    tokens = ["[CLS]", "[unused0]", *words[:29], "[SEP]"]
    np.testing.assert_allclose(encoder.encode_queries([text])[0], _reference(encoder, tokens), atol=1e-5)


def test_document_is_cls_marker_tokens_sep_without_punctuation(encoder: ColBERTEncoder) -> None:
    text = PASSAGES[1]
    words = encoder._checkpoint.tokenizer.tokenize(text)
    tokens = ["[CLS]", "[unused1]", *words, "[SEP]"]
    keep = [i for i, t in enumerate(tokens) if t not in string.punctuation]
    assert len(keep) < len(tokens) - 5  # the passage has punctuation to drop
    got = encoder.encode_documents([text])[0]
    np.testing.assert_allclose(got, _reference(encoder, tokens)[keep], atol=1e-5)


def test_document_vectors_shapes_norms_and_truncation(encoder: ColBERTEncoder) -> None:
    vectors = encoder.encode_documents(PASSAGES)
    assert len(vectors) == len(PASSAGES)
    for text, v in zip(PASSAGES, vectors):
        assert v.dtype == np.float32 and v.ndim == 2 and v.shape[1] == 128
        np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 1.0, atol=1e-5)
        words = encoder._checkpoint.tokenizer.tokenize(text)[: 180 - 3]
        assert len(v) == 3 + sum(w not in string.punctuation for w in words)
    assert encoder.count_tokens(PASSAGES[3]) > 180  # so the long passage was cut
    assert len(vectors[4]) == len(vectors[5]) == 3  # [CLS] [D] [SEP] survive an empty or all-punctuation passage
    assert encoder.encode_documents([]) == []


def test_doc_maxlen_can_be_lowered_at_load(tiny_models: Path, tmp_path: Path) -> None:
    short = ColBERTEncoder.load(str(tiny_models / "colbert"), tmp_path, "cpu", doc_maxlen=16)
    assert short.doc_maxlen == 16
    assert len(short.encode_documents([PASSAGES[3]])[0]) <= 16


def test_batched_equals_one_by_one(encoder: ColBERTEncoder) -> None:
    together = encoder.encode_documents(PASSAGES, batch_size=3)
    for text, batched in zip(PASSAGES, together):
        alone = encoder.encode_documents([text])[0]
        assert batched.shape == alone.shape
        np.testing.assert_allclose(batched, alone, atol=1e-5)
    queries = encoder.encode_queries(QUERIES, batch_size=2)
    for text, batched in zip(QUERIES, queries):
        np.testing.assert_allclose(batched, encoder.encode_queries([text])[0], atol=1e-5)


def test_count_tokens_counts_wordpieces_without_specials(encoder: ColBERTEncoder) -> None:
    tokenizer = encoder._checkpoint.tokenizer
    for text in PASSAGES:
        assert encoder.count_tokens(text) == len(tokenizer.tokenize(text))
    long = PASSAGES[0] * 40
    assert encoder.count_tokens(long) == len(tokenizer.tokenize(long)) > 512  # no truncation
    with pytest.raises(TypeError):
        encoder.encode_documents("one string")


def test_model_id_follows_the_weights(tiny_models: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "colbert"
    shutil.copytree(tiny_models / "colbert", folder)
    same = ColBERTEncoder.load(str(folder), tmp_path, "cpu").model_id
    assert same == ColBERTEncoder.load(str(tiny_models / "colbert"), tmp_path, "cpu").model_id
    weights = load_file(str(folder / "model.safetensors"))
    weights["linear.weight"] = weights["linear.weight"] * 2
    save_file(weights, str(folder / "model.safetensors"))
    assert ColBERTEncoder.load(str(folder), tmp_path, "cpu").model_id != same


def test_pytorch_bin_checkpoint_loads_the_same(encoder: ColBERTEncoder, tiny_models: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "colbert-bin"
    shutil.copytree(tiny_models / "colbert", folder)
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    other = ColBERTEncoder.load(str(folder), tmp_path, "cpu")
    np.testing.assert_array_equal(other.encode_documents(PASSAGES[:2])[1], encoder.encode_documents(PASSAGES[:2])[1])


def test_a_folder_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match="not a ColBERT checkpoint"):
        ColBERTEncoder.load(str(tmp_path / "empty"), tmp_path, "cpu")


def _edit_weights(folder: Path, edit) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file, save_file

    weights = load_file(str(folder / "model.safetensors"))
    edit(weights)
    save_file(weights, str(folder / "model.safetensors"))


def _edit_json(folder: Path, name: str, **changes: object) -> None:
    (folder / name).write_text(json.dumps({**json.loads((folder / name).read_text()), **changes}))


BROKEN = {  # what is wrong with the tiny checkpoint → what the refusal says
    "no config.json": (lambda f: (f / "config.json").unlink(), "needs config.json and model.safetensors"),
    "no weights": (lambda f: (f / "model.safetensors").unlink(), "not a ColBERT checkpoint"),
    "no projection": (lambda f: _edit_weights(f, lambda w: w.pop("linear.weight")), "has no `linear.weight`"),
    "projection shape": (
        lambda f: _edit_weights(f, lambda w: w.update({"linear.weight": w["linear.weight"][:64]})),
        r"linear.weight is \(64, 64\), expected \(128, 64\)",
    ),
    "BERT weight missing": (
        lambda f: _edit_weights(f, lambda w: w.pop("bert.encoder.layer.1.output.dense.weight")),
        r"lacks BERT weights \['encoder.layer.1.output.dense.weight'\]",
    ),
    "weights of another size": (lambda f: _edit_json(f, "config.json", intermediate_size=128), "does not fit"),
    "other activation": (lambda f: _edit_json(f, "config.json", hidden_act="gelu_new"), "hidden_act 'gelu_new'"),
    "marker not in vocabulary": (
        lambda f: _edit_json(f, "artifact.metadata", query_token_id="[Q]"),
        r"marker token \[Q\] is not in the vocabulary",
    ),
    "no tokenizer": (
        lambda f: [(f / n).unlink() for n in ("tokenizer.json", "vocab.txt")],
        "needs a WordPiece tokenizer",
    ),
}


@pytest.mark.parametrize("broken", BROKEN)
def test_a_broken_checkpoint_is_refused_saying_why(broken: str, tiny_models: Path, tmp_path: Path) -> None:
    edit, message = BROKEN[broken]
    folder = tmp_path / "colbert"
    shutil.copytree(tiny_models / "colbert", folder)
    edit(folder)
    with pytest.raises(ModelUnavailable, match=message):
        ColBERTEncoder.load(str(folder), tmp_path, "cpu")


# --- MaxSim -----------------------------------------------------------------------------------------------------------
def _random_index(rng: np.random.Generator, lengths: list[int], dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    vectors = rng.standard_normal((sum(lengths), dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


@pytest.mark.parametrize("block", [7, maxsim_module.BLOCK_TOKENS])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_maxsim_batch_equals_looped_maxsim(monkeypatch, block: int, dtype) -> None:
    monkeypatch.setattr(maxsim_module, "BLOCK_TOKENS", block)
    rng = np.random.default_rng(0)
    lengths = [5, 0, 1, 30, 3, 0, 0, 12, 8]
    vectors, offsets = _random_index(rng, lengths)
    vectors = vectors.astype(dtype)
    query = rng.standard_normal((6, 16)).astype(np.float32)
    scores = maxsim_batch(query, vectors, offsets)
    looped = [maxsim(query, vectors[offsets[i] : offsets[i + 1]]) for i in range(len(lengths))]
    assert scores.shape == (len(lengths),) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, looped, rtol=1e-5, atol=1e-5)
    assert scores[1] == scores[5] == scores[6] == 0.0


def test_maxsim_batch_rejects_inconsistent_offsets() -> None:
    vectors = np.zeros((4, 8), dtype=np.float32)
    query = np.zeros((2, 8), dtype=np.float32)
    for bad in ([0, 3], [1, 4], [0, 3, 2, 4]):
        with pytest.raises(ValueError):
            maxsim_batch(query, vectors, np.array(bad))
    assert maxsim_batch(query, vectors[:0], np.array([0])).shape == (0,)


# --- hub --------------------------------------------------------------------------------------------------------------
@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def unreachable(monkeypatch):
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setattr(hub_constants, "HF_HUB_ETAG_TIMEOUT", 2)


def test_local_paths_are_used_as_they_are(tiny_models: Path, tmp_path: Path) -> None:
    assert resolve_model_dir(str(tiny_models / "colbert"), tmp_path) == tiny_models / "colbert"
    assert resolve_model_file(str(tiny_models / "qwen2.gguf"), tmp_path) == tiny_models / "qwen2.gguf"
    with pytest.raises(ModelUnavailable, match="PAPERBOT_COLBERT_MODEL"):
        resolve_model_dir(str(tmp_path / "missing"), tmp_path)
    with pytest.raises(ModelUnavailable, match="PAPERBOT_LLM_MODEL.*owner/repo:file.gguf"):
        resolve_model_file(str(tmp_path / "missing.gguf"), tmp_path)
    with pytest.raises(ModelUnavailable, match="must be a .gguf file"):
        resolve_model_file(str(tiny_models / "colbert"), tmp_path)


@pytest.mark.parametrize("network", ["offline", "unreachable"])
def test_a_hub_model_that_cannot_be_fetched_says_what_to_do(network: str, request, tmp_path: Path) -> None:
    request.getfixturevalue(network)
    with pytest.raises(ModelUnavailable) as error:
        resolve_model_dir("colbert-ir/colbertv2.0", tmp_path / "models")
    message = str(error.value)
    assert "PAPERBOT_COLBERT_MODEL" in message and "hf download colbert-ir/colbertv2.0" in message
    with pytest.raises(ModelUnavailable) as error:
        resolve_model_file("Qwen/Qwen2.5-3B-Instruct-GGUF:qwen2.5-3b-instruct-q4_k_m.gguf", tmp_path / "models")
    message = str(error.value)
    assert "PAPERBOT_LLM_MODEL" in message
    assert "hf download Qwen/Qwen2.5-3B-Instruct-GGUF qwen2.5-3b-instruct-q4_k_m.gguf" in message
    with pytest.raises(ModelUnavailable, match="PAPERBOT_COLBERT_MODEL"):
        ColBERTEncoder.load("colbert-ir/colbertv2.0", tmp_path / "models", "cpu")


def test_an_earlier_download_is_reused_offline(offline, tiny_models: Path, tmp_path: Path) -> None:
    # What snapshot_download leaves behind: refs/main naming a snapshot folder that holds the files.
    repo = tmp_path / "models" / "hub" / "models--colbert-ir--colbertv2.0"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    shutil.copytree(tiny_models / "colbert", snapshot)
    # Large files live in blobs/ named by their sha256, linked from the snapshot.
    weights = (tiny_models / "colbert" / "model.safetensors").read_bytes()
    blob = repo / "blobs" / hashlib.sha256(weights).hexdigest()
    blob.parent.mkdir()
    blob.write_bytes(weights)
    (snapshot / "model.safetensors").unlink()
    (snapshot / "model.safetensors").symlink_to(blob)
    encoder = ColBERTEncoder.load("colbert-ir/colbertv2.0", tmp_path / "models", "cpu")
    local = ColBERTEncoder.load(str(tiny_models / "colbert"), tmp_path / "models", "cpu")
    assert encoder.model_id == "colbert-ir/colbertv2.0@" + local.model_id.split("@")[1]  # same weights, same hash
    np.testing.assert_array_equal(encoder.encode_queries(["x"]), local.encode_queries(["x"]))


def test_an_earlier_gguf_download_is_reused_offline(offline, tiny_models: Path, tmp_path: Path) -> None:
    repo = tmp_path / "models" / "hub" / "models--Qwen--Qwen2.5-3B-Instruct-GGUF"
    commit = "1" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "qwen2.5-3b-instruct-q4_k_m.gguf").symlink_to(tiny_models / "qwen2.gguf")
    path = resolve_model_file("Qwen/Qwen2.5-3B-Instruct-GGUF:qwen2.5-3b-instruct-q4_k_m.gguf", tmp_path / "models")
    with open(path, "rb") as fh:
        assert fh.read(4) == b"GGUF"
    with pytest.raises(ModelUnavailable, match="PAPERBOT_LLM_MODEL"):  # another file of that repo was never fetched
        resolve_model_file("Qwen/Qwen2.5-3B-Instruct-GGUF:qwen2.5-3b-instruct-q8_0.gguf", tmp_path / "models")
