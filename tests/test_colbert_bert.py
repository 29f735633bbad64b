"""The torch-only BERT and the tokenizers-only WordPiece against transformers' BertModel and AutoTokenizer."""

from __future__ import annotations

import json
import shutil
import string
import subprocess
import sys
from pathlib import Path

import pytest

from rag_engine.colbert.checkpoint import load_checkpoint
from rag_engine.colbert.encoder import ColBERTEncoder
from rag_engine.colbert.wordpiece import load_wordpiece
from tests.conftest import REPO

# Bit for bit equal here (torch 2.13, transformers 5.25: the same kernels in the same order); the tolerances leave room
# for other versions' kernels. At [PAD] positions (dropped from passages, never in queries) MiniLM's states are
# touchier: transformers' own eager and sdpa attention differ there by 2.4e-5.
HIDDEN_ATOL = 1e-5
PAD_ATOL = 1e-4

TEXTS = [
    "What is multi-head attention?",
    "We scale the dot products by 1/sqrt(d_k): for large d_k they grow large in magnitude!",
    "Ünïcödé café naïve Ångström — CamelCase UPPER lower",
    "e.g. x=3.14; y≠z (α+β)² 日本語 McDonald's U.S.A.",
    "tab\tnew\nline\u200b zero-width " + "a" * 120,  # a word over WordPiece's 100 characters: [UNK]
    "[MASK] [unused0] [CLS]",
    "",
]


@pytest.fixture(params=["tiny", "minilm"])
def colbert_folder(request: pytest.FixtureRequest, tiny_models: Path) -> Path:
    if request.param == "tiny":
        return tiny_models / "colbert"
    return request.getfixturevalue("minilm_colbert")  # built once from the package registry; skipped without it


def _transformers_bert(folder: Path):  # type: ignore[no-untyped-def]
    """The checkpoint read as paperbot read it before bert.py: transformers' BertModel without the pooler."""
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig.from_pretrained(folder), add_pooling_layer=False)
    state = load_file(str(folder / "model.safetensors"))
    bert = {k[5:]: v for k, v in state.items() if k.startswith("bert.") and not k.startswith("bert.pooler.")}
    model.load_state_dict(bert, strict=False)
    return model.eval()


def test_last_hidden_state_matches_transformers(colbert_folder: Path) -> None:
    import torch

    checkpoint = load_checkpoint(colbert_folder)
    tok = checkpoint.tokenizer
    q, d = tok.token_to_id("[unused0]"), tok.token_to_id("[unused1]")
    rows = [[tok.cls_id, d, *tok.encode(t)[:40], tok.sep_id] for t in TEXTS]  # passages, padded with [PAD]
    width = max(map(len, rows))
    ids = torch.full((len(rows) + 2, width), tok.pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], attention[i, : len(row)] = torch.tensor(row), 1
    query = [tok.cls_id, q, *tok.encode(TEXTS[0]), tok.sep_id]  # a query padded with [MASK], not attended then attended
    ids[-2:] = tok.mask_id
    ids[-2:, : len(query)] = torch.tensor(query)
    attention[-2, : len(query)] = 1
    attention[-1] = 1
    assert (attention == 0).any(dim=1).sum() >= 3

    ours, theirs = checkpoint.bert, _transformers_bert(colbert_folder)
    with torch.inference_mode():  # as the encoder runs it
        got = ours(ids, attention)
        expected = theirs(input_ids=ids, attention_mask=attention).last_hidden_state
    assert got.shape == expected.shape == (*ids.shape, checkpoint.bert.config.hidden_size)
    assert got.dtype == torch.float32
    diff = (got - expected).abs().amax(dim=-1)
    padding = ids == tok.pad_id
    assert diff[~padding].max() <= HIDDEN_ATOL, diff
    assert diff[padding].max() <= PAD_ATOL, diff


@pytest.mark.parametrize("lowercase", [None, True, False], ids=["tokenizer.json", "vocab-lower", "vocab-cased"])
def test_token_ids_match_transformers(tiny_models: Path, tmp_path: Path, lowercase: bool | None) -> None:
    """tokenizer.json as it is, or vocab.txt with tokenizer_config.json's do_lower_case (no tokenizer.json)."""
    from transformers import AutoTokenizer

    folder = tiny_models / "colbert"
    if lowercase is not None:
        folder = tmp_path / "colbert"
        shutil.copytree(tiny_models / "colbert", folder)
        (folder / "tokenizer.json").unlink()
        config = json.loads((folder / "tokenizer_config.json").read_text())
        (folder / "tokenizer_config.json").write_text(json.dumps({**config, "do_lower_case": lowercase}))
    ours, theirs = load_wordpiece(folder), AutoTokenizer.from_pretrained(folder)
    for text in TEXTS:
        assert ours.encode(text) == theirs(text, add_special_tokens=False)["input_ids"], text
        assert ours.tokenize(text) == theirs.tokenize(text), text
    specials = (theirs.cls_token_id, theirs.sep_token_id, theirs.pad_token_id, theirs.mask_token_id)
    assert (ours.cls_id, ours.sep_id, ours.pad_id, ours.mask_id, ours.unk_id) == (*specials, theirs.unk_token_id)
    cased = ours.encode("Attention")
    assert (cased == ours.encode("attention")) is (lowercase is not False)


def test_encoder_rows_match_transformers(tiny_models: Path, tmp_path: Path) -> None:
    """The ids the encoder feeds BERT, queries and passages, as built from AutoTokenizer's before bert.py."""
    from transformers import AutoTokenizer

    encoder = ColBERTEncoder.load(str(tiny_models / "colbert"), tmp_path, "cpu")
    hf = AutoTokenizer.from_pretrained(tiny_models / "colbert")
    marker = hf.convert_tokens_to_ids
    for text in TEXTS:
        pieces = hf(text, add_special_tokens=False)["input_ids"]
        q = [hf.cls_token_id, marker("[unused0]"), *pieces[: encoder.query_maxlen - 3], hf.sep_token_id]
        d = [hf.cls_token_id, marker("[unused1]"), *pieces[: encoder.doc_maxlen - 3], hf.sep_token_id]
        assert encoder._ids([text], encoder._q_marker, encoder.query_maxlen) == [q], text
        assert encoder._ids([text], encoder._d_marker, encoder.doc_maxlen) == [d], text
    skip = sorted({hf.encode(c, add_special_tokens=False)[0] for c in string.punctuation})
    assert encoder._skiplist == skip


def test_loading_a_checkpoint_does_not_import_transformers(tiny_models: Path) -> None:
    probe = (
        "import sys; from pathlib import Path; from rag_engine.colbert.encoder import ColBERTEncoder; "
        "e = ColBERTEncoder.load(sys.argv[1], Path(sys.argv[2]), 'cpu'); e.encode_queries(['why?']); "
        "e.encode_documents(['because.']); "
        "print(sorted(m for m in ('torch', 'safetensors', 'tokenizers', 'transformers') if m in sys.modules))"
    )
    folder = tiny_models / "colbert"
    run = subprocess.run([sys.executable, "-c", probe, str(folder), str(folder.parent)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "['safetensors', 'tokenizers', 'torch']", run.stdout
