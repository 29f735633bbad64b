"""Our ColBERT encoder and MaxSim against PyLate, an independent implementation, on the same tiny checkpoint.

PyLate runs in its own environment (tests/parity_env.sh builds it once, ~1 min from the package registry), because
its pins (transformers <= 5.3.0, and a CUDA torch through its index dependencies) must not touch .venv. It writes its
vectors and scores to an .npz that this test compares with ours.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rag_engine.colbert.encoder import ColBERTEncoder
from rag_engine.colbert.maxsim import maxsim_batch
from tests.conftest import REAL_PDFS, REPO

# Same checkpoint, same torch: PyLate's vectors agreed with ours to 6e-8 here (queries bit for bit). The tolerance
# leaves room for kernel differences between transformers versions, far below what a wrong token, marker or mask
# changes (~0.1).
VECTOR_ATOL = 1e-5
SCORE_ATOL = 1e-4  # scores are sums over 32 query tokens, each in [-1, 1]

PYLATE_SCRIPT = r"""
import json, sys
import numpy as np
import torch
from pylate import models, scores

job = json.load(open(sys.argv[1]))
model = models.ColBERT(job["checkpoint"], device="cpu")
q = model.encode(job["queries"], is_query=True, batch_size=3)
d = model.encode(job["passages"], is_query=False, batch_size=4)
width = max(len(x) for x in d)
padded = np.zeros((len(d), width, d[0].shape[1]), dtype=np.float32)
mask = np.zeros((len(d), width), dtype=np.float32)
for i, x in enumerate(d):
    padded[i, : len(x)], mask[i, : len(x)] = x, 1
s = scores.colbert_scores(np.stack(q), padded, documents_mask=torch.from_numpy(mask))
np.savez(
    sys.argv[2],
    queries=np.stack(q),
    passages=np.concatenate(d),
    lengths=np.array([len(x) for x in d]),
    scores=np.asarray(s),
)
json.dump(
    {
        "query_prefix": model.query_prefix,
        "document_prefix": model.document_prefix,
        "query_length": model.query_length,
        "document_length": model.document_length,
        "attend_to_expansion_tokens": model.attend_to_expansion_tokens,
        "vocab": len(model.tokenizer),
    },
    open(sys.argv[3], "w"),
)
"""


def _passages() -> list[str]:
    """~120-word passages of two real papers, plus the edge cases: long, empty, punctuation only."""
    import pymupdf

    passages = []
    for pdf in sorted(REAL_PDFS.glob("*.pdf"))[:2]:
        with pymupdf.open(pdf) as doc:
            words = " ".join(page.get_text() for page in list(doc)[:3]).split()
        passages += [" ".join(words[i : i + 120]) for i in range(0, min(len(words), 1200), 120)]
    return passages + [" ".join(passages[:3]), "", "(...) !?"]


QUERIES = [
    "What is multi-head attention?",
    "Why is the dot product scaled by the square root of d_k?",
    "how does the learned initialization of reptile compare with first-order MAML on few-shot classification "
    "benchmarks such as mini-imagenet and omniglot, and what are the computational costs?",
    "BLEU",
]


@pytest.fixture(scope="module")
def pylate_python() -> Path:
    venv = Path(os.environ.get("PAPERBOT_PARITY_VENV", REPO / ".venv-parity"))
    subprocess.run(["bash", str(REPO / "tests" / "parity_env.sh"), str(venv)], check=True, timeout=900)
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def pylate_result(pylate_python: Path, tiny_models: Path, tmp_path_factory) -> tuple[dict, dict]:
    work = tmp_path_factory.mktemp("pylate")
    (work / "job.json").write_text(
        json.dumps({"checkpoint": str(tiny_models / "colbert"), "queries": QUERIES, "passages": _passages()})
    )
    (work / "run.py").write_text(PYLATE_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    args = [work / "run.py", work / "job.json", work / "out.npz", work / "cfg.json"]
    done = subprocess.run(
        [str(pylate_python), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    arrays = np.load(work / "out.npz")
    return {k: arrays[k] for k in arrays.files}, json.loads((work / "cfg.json").read_text())


@pytest.fixture(scope="module")
def ours(tiny_models: Path, tmp_path_factory) -> tuple[np.ndarray, list[np.ndarray]]:
    encoder = ColBERTEncoder.load(str(tiny_models / "colbert"), tmp_path_factory.mktemp("models"), "cpu")
    return encoder.encode_queries(QUERIES), encoder.encode_documents(_passages(), batch_size=5)


def test_pylate_reads_the_checkpoint_as_colbertv2(pylate_result) -> None:
    _, config = pylate_result
    assert config == {
        "query_prefix": "[unused0]",
        "document_prefix": "[unused1]",
        "query_length": 32,
        "document_length": 180,
        "attend_to_expansion_tokens": False,
        "vocab": 30522,
    }


def test_query_vectors_match_pylate(pylate_result, ours) -> None:
    theirs, _ = pylate_result
    queries, _ = ours
    assert theirs["queries"].shape == queries.shape == (len(QUERIES), 32, 128)
    np.testing.assert_allclose(queries, theirs["queries"], atol=VECTOR_ATOL, rtol=0)


def test_passage_vectors_match_pylate(pylate_result, ours) -> None:
    theirs, _ = pylate_result
    _, passages = ours
    # Same tokens kept: truncation to doc_maxlen, [CLS]/[D]/[SEP] kept, punctuation and padding dropped.
    assert [len(p) for p in passages] == theirs["lengths"].tolist()
    assert 150 < len(passages[-3]) <= 180  # the long passage (three joined) was cut at doc_maxlen
    assert len(passages[-2]) == len(passages[-1]) == 3  # empty and punctuation-only: [CLS] [D] [SEP]
    np.testing.assert_allclose(np.concatenate(passages), theirs["passages"], atol=VECTOR_ATOL, rtol=0)


def test_maxsim_scores_match_pylate(pylate_result, ours) -> None:
    theirs, _ = pylate_result
    queries, passages = ours
    vectors = np.concatenate(passages)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in passages])])
    scores = np.stack([maxsim_batch(q, vectors, offsets) for q in queries])
    assert scores.shape == theirs["scores"].shape == (len(QUERIES), len(passages))
    np.testing.assert_allclose(scores, theirs["scores"], atol=SCORE_ATOL, rtol=0)
    # float16 storage (the index codec) moves scores by ~4e-4 here.
    stored = np.stack([maxsim_batch(q, vectors.astype(np.float16), offsets) for q in queries])
    np.testing.assert_allclose(stored, theirs["scores"], atol=5e-3, rtol=0)
