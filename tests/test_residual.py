"""Residual compression (centroid id + per-dimension buckets, or product-quantized groups after a rotation), its
fidelity on real MiniLM vectors, and the storage of compressed rows (also from before the "pq" scheme)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
import torch

from rag_engine.colbert.maxsim import maxsim_batch
from rag_engine.retrieval import residual
from rag_engine.retrieval.compressed_scorer import CompressedScorer
from rag_engine.retrieval.plaid import CompressedIndex, exact_scores, pruned_top_k
from rag_engine.retrieval.scorer import BruteForceScorer
from storage import CODEC_ID, Database
from storage.migrations import MIGRATIONS
from storage.records import NewChunk
from tests.conftest import REAL_PDFS

DIM = 32


def clustered(n: int, seed: int = 0, topics: int = 48, dim: int = DIM, spread: float = 0.35) -> np.ndarray:
    """Unit vectors around a few directions, like contextual token vectors (not uniform on the sphere)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, dim))
    x = centres[rng.integers(0, topics, n)] / np.sqrt(dim) + spread * rng.standard_normal((n, dim)) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_decompress_gives_centroid_plus_the_bucket_weight_of_each_dimension(nbits: int) -> None:
    x = clustered(3000)
    book = residual.train(x, nbits=nbits, n_centroids=32)
    codes, packed = residual.compress(book, x)
    assert codes.dtype == np.uint16 and packed.shape == (len(x), DIM * nbits // 8)

    # Independently: nearest centroid, bucket by searchsorted on each dimension's cutoffs, weight of that bucket.
    nearest = np.argmax(x @ book.centroids.T, axis=1)
    assert (codes == nearest).all()
    res = x - book.centroids[nearest]
    buckets = np.stack([np.searchsorted(book.cutoffs[d], res[:, d], side="left") for d in range(DIM)], axis=1)
    expected = book.centroids[nearest] + book.weights[np.arange(DIM), buckets]
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(residual.decompress(book, codes, packed), expected, atol=1e-5)


def test_two_bits_keep_maxsim_rankings_close_to_float32() -> None:
    rng = np.random.default_rng(1)
    x = clustered(12000, seed=1)
    offsets = np.arange(0, len(x) + 1, 30)
    book = residual.train(x, nbits=2, n_centroids=64)
    y = residual.decompress(book, *residual.compress(book, x))
    assert float(np.mean(np.sum(x * y, axis=1))) > 0.95
    overlaps = []
    for _ in range(10):
        p = int(rng.integers(len(offsets) - 1))
        query = x[offsets[p] : offsets[p] + 8] + 0.3 * rng.standard_normal((8, DIM)).astype(np.float32) / np.sqrt(DIM)
        exact = np.argsort(-maxsim_batch(query, x, offsets))[:10]
        approx = np.argsort(-maxsim_batch(query, y, offsets))[:10]
        overlaps.append(len(set(exact) & set(approx)) / 10)
    assert np.mean(overlaps) >= 0.8


def test_pq_decompress_gives_the_nearest_centroid_plus_the_nearest_codeword_of_each_group() -> None:
    x = clustered(3000)
    book = residual.train(x, scheme=residual.PQ, n_centroids=32)
    codes, packed = residual.compress(book, x)
    sizes = residual.pq_layout(DIM, residual.default_groups(DIM))
    assert book.scheme == residual.PQ and packed.shape == (len(x), len(sizes)) == (len(x), 9)
    np.testing.assert_allclose(book.rotation.T @ book.rotation, np.eye(DIM), atol=1e-5)

    # Independently, in the rotated basis: nearest centroid, then per group the codeword at the least distance.
    rotated = x @ book.rotation
    nearest = np.argmax(rotated @ book.centroids.T, axis=1)
    assert (codes == nearest).mean() > 0.999  # float rounding may flip a near tie
    res = rotated - book.centroids[codes]
    expected, start = book.centroids[codes].copy(), 0
    for g, size in enumerate(sizes):
        words = book.codewords[g, :, :size]
        best = np.argmin(((res[:, None, start : start + size] - words[None]) ** 2).sum(axis=2), axis=1)
        assert (packed[:, g] == best).mean() > 0.999
        expected[:, start : start + size] += words[packed[:, g]]
        start += size
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    decoded = residual.decompress(book, codes, packed)
    np.testing.assert_allclose(decoded, expected @ book.rotation.T, atol=1e-5)

    # The in-memory index decodes the same rows, and scores in the codebook's basis as MaxSim does in the original.
    offsets = np.arange(0, len(x) + 1, 30)
    index = CompressedIndex.build(book, np.arange(len(offsets) - 1), offsets, codes, packed, 1)
    np.testing.assert_allclose(index.decompress(torch.arange(len(x))).numpy(), decoded, atol=1e-5)
    query = x[:8]
    np.testing.assert_allclose(exact_scores(index, query), maxsim_batch(query, decoded, offsets), atol=1e-4)
    assert pruned_top_k(index, query, 1)[0][0] == int(np.argmax(maxsim_batch(query, decoded, offsets)))


def test_pq_fits_2_5_bits_per_dimension_and_keeps_vectors_closer_than_2_bit_buckets() -> None:
    x = clustered(6000, dim=128, topics=64, spread=0.6)
    pq = residual.train(x, scheme=residual.PQ, n_centroids=64)
    scalar = residual.train(x, nbits=2, n_centroids=64)
    codes, packed = residual.compress(pq, x)
    assert (codes.itemsize + packed.shape[1]) * 8 / 128 <= 2.5  # 2 + 38 bytes per token
    cosine = {
        name: float(np.mean(np.sum(x * residual.decompress(book, *residual.compress(book, x)), axis=1)))
        for name, book in (("pq", pq), ("scalar", scalar))
    }
    assert cosine["pq"] > cosine["scalar"] + 0.01, cosine


def test_centroid_count_grows_with_the_index_and_fits_uint16() -> None:
    assert residual.default_centroids(10_000) < residual.default_centroids(1_000_000)
    assert residual.default_centroids(10**12) == residual.MAX_CENTROIDS
    with pytest.raises(ValueError):
        residual.train(clustered(100), nbits=3)
    with pytest.raises(ValueError, match="unknown residual scheme"):
        residual.train(clustered(100), scheme="opq")


# --- fidelity on a real encoder ---------------------------------------------------------------------------------------
# all-MiniLM-L6-v2 in the colbert-ir layout (TOOLCHAIN.md) over three of the shared papers, queries = the retrieval
# questions on them plus sentences of the passages (36 queries, 152 passages, ~20k tokens, 512 centroids). Measured
# here (2026-12-05): pq 0.908 exact, 0.906 pruned; 2-bit scalar 0.839. The floor sits below; pruning decompressing
# ndocs / 4 instead of / 2 gave 0.889 and fails the pruning check. bench/bench_compression.py measures all six papers.
REAL_PAPERS = ("1706.03762.pdf", "distillation.pdf", "ponder_net.pdf")
REAL_MINILM_FLOOR = 0.88


@pytest.fixture(scope="module")
def real_minilm(minilm_colbert: Path) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Token vectors of ~130-word passages of REAL_PAPERS, their offsets, and query vectors."""
    import pymupdf

    from rag_engine.colbert.encoder import ColBERTEncoder
    from tests.test_retrieval_quality import QUESTIONS

    texts = []
    for name in REAL_PAPERS:
        with pymupdf.open(REAL_PDFS / name) as doc:
            for page in doc:
                words = page.get_text().split()
                texts += [" ".join(words[i : i + 130]) for i in range(0, max(len(words) - 20, 0), 130)]
    encoder = ColBERTEncoder.load(str(minilm_colbert), minilm_colbert.parent, "cpu")
    docs = encoder.encode_documents(texts, batch_size=32)
    rng = np.random.default_rng(0)
    questions = [q for paper, q, _ in QUESTIONS if paper in REAL_PAPERS]
    questions += [texts[i].split(". ")[0][:200] for i in rng.choice(len(texts), 30, replace=False)]
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
    return np.concatenate(docs).astype(np.float32), offsets, list(encoder.encode_queries(questions))


@pytest.mark.slow
def test_pq_keeps_the_float16_top_10_on_real_minilm_vectors(real_minilm) -> None:
    """Top-10 overlap with brute-force float16 MaxSim (the same queries, k, and stable tie order on both sides), for the
    compressed index scored exactly and through pruning."""
    vectors, offsets, queries = real_minilm
    f16 = vectors.astype(np.float16)
    reference = [set(np.argsort(-maxsim_batch(q, f16, offsets), kind="stable")[:10].tolist()) for q in queries]
    overlap = {}
    for name, book in (
        ("pq", residual.train(vectors, scheme=residual.PQ)),
        ("scalar", residual.train(vectors, nbits=2)),
    ):
        codes, packed = residual.compress(book, vectors)
        index = CompressedIndex.build(book, np.arange(len(offsets) - 1), offsets, codes, packed, 1)
        exact = [set(np.argsort(-exact_scores(index, q), kind="stable")[:10].tolist()) for q in queries]
        pruned = [{c for c, _ in pruned_top_k(index, q, 10)} for q in queries]
        overlap[name] = float(np.mean([len(r & e) / 10 for r, e in zip(reference, exact, strict=True)]))
        overlap[name + " pruned"] = float(np.mean([len(r & p) / 10 for r, p in zip(reference, pruned, strict=True)]))
        if name == "pq":
            assert (2 + packed.shape[1]) * 8 / vectors.shape[1] <= 2.5
    assert overlap["pq"] >= REAL_MINILM_FLOOR, overlap
    assert overlap["pq pruned"] >= overlap["pq"] - 0.01, overlap  # pruning loses (almost) nothing
    assert overlap["pq"] >= overlap["scalar"] + 0.04, overlap


# --- storage ----------------------------------------------------------------------------------------------------------
@pytest_asyncio.fixture(loop_scope="function")
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with await Database.open(tmp_path / "paperbot.sqlite3") as db:
        yield db


async def add_paper(db: Database, index_id: int, sha: str, vectors: list[np.ndarray]) -> int:
    doc = await db.create_document(index_id, sha, sha, f"{sha}.pdf", None, page_count=1)
    chunks = [NewChunk(f"text {i}", 1, 1, None, i, v) for i, v in enumerate(vectors)]
    await db.complete_document(doc.id, chunks)
    return doc.id


async def test_compressed_rows_round_trip_and_follow_the_codebook_generation(db: Database, tmp_path: Path) -> None:
    index = await db.get_or_create_index("c", "enc", CODEC_ID, DIM)
    x = clustered(400)
    first = await add_paper(db, index.id, "a", [x[0:5], x[5:12]])
    assert await db.load_compressed(index.id) is None  # no codebook yet

    book = residual.train(x, nbits=2, n_centroids=16)
    generation = await db.save_codebook(
        index.id, nbits=2, trained_tokens=12, centroids=book.centroids, cutoffs=book.cutoffs, weights=book.weights
    )
    stored = await db.get_codebook(index.id)
    assert stored is not None and stored.generation == generation and stored.nbits == 2
    np.testing.assert_array_equal(stored.centroids, book.centroids)
    np.testing.assert_array_equal(stored.weights, book.weights)

    pending = await db.load_uncompressed(index.id, generation, limit=100)
    assert len(pending.chunk_ids) == 2
    rows = []
    for i, chunk_id in enumerate(pending.chunk_ids):
        codes, packed = residual.compress(book, pending.vectors[pending.offsets[i] : pending.offsets[i + 1]])
        rows.append((int(chunk_id), codes, packed))
    assert await db.store_compressed(index.id, generation, rows)
    assert len((await db.load_uncompressed(index.id, generation, limit=100)).chunk_ids) == 0

    second = await add_paper(db, index.id, "b", [x[12:20]])
    loaded = await db.load_compressed(index.id)
    assert loaded is not None and loaded.missing == 1  # the new paper has no compressed rows yet
    assert loaded.offsets.tolist() == [0, 5, 12] and loaded.residuals.shape == (12, DIM * 2 // 8)
    np.testing.assert_array_equal(loaded.codes, np.concatenate([r[1] for r in rows]))
    only_second = await db.load_compressed(index.id, doc_id=second)
    assert only_second is not None and len(only_second.chunk_ids) == 0 and only_second.missing == 1

    # Rows computed against a replaced codebook are refused, and the replaced rows are gone.
    newer = await db.save_codebook(
        index.id, nbits=2, trained_tokens=20, centroids=book.centroids, cutoffs=book.cutoffs, weights=book.weights
    )
    assert newer == generation + 1
    assert not await db.store_compressed(index.id, generation, rows)
    assert (await db.load_compressed(index.id)).missing == 3

    # Deleting a paper deletes its compressed rows with it.
    assert await db.store_compressed(index.id, newer, rows)
    await db.remove_document(index.id, first)
    with sqlite3.connect(tmp_path / "paperbot.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM compressed_embeddings").fetchone()[0] == 0


async def test_a_scalar_codebook_of_schema_4_still_loads_and_is_retrained_to_pq(tmp_path: Path) -> None:
    path = tmp_path / "paperbot.sqlite3"
    x = clustered(2400)
    offsets = np.arange(0, len(x) + 1, 40)
    book = residual.train(x, nbits=2, n_centroids=32)
    async with await Database.open(path, migrations=MIGRATIONS[:4]) as db:
        index = await db.get_or_create_index("old", "enc", CODEC_ID, DIM)
        await add_paper(db, index.id, "a", [x[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)])
    with sqlite3.connect(path) as conn:  # what schema 4 wrote
        conn.execute(
            "INSERT INTO codebooks (index_id, generation, nbits, trained_tokens, centroids, cutoffs, weights, "
            "created_at) VALUES (?, 1, 2, ?, ?, ?, ?, 'then')",
            (index.id, len(x), *(np.ascontiguousarray(a, "<f4").tobytes() for a in (book.centroids, book.cutoffs,
                                                                                      book.weights))),
        )
    async with await Database.open(path, migrations=MIGRATIONS[:4]) as db:
        pending = await db.load_uncompressed(index.id, 1, limit=1000)
        old_codes, old_packed = residual.compress(book, pending.vectors)
        rows = [(int(c), old_codes[pending.offsets[i] : pending.offsets[i + 1]],
                 old_packed[pending.offsets[i] : pending.offsets[i + 1]]) for i, c in enumerate(pending.chunk_ids)]
        assert await db.store_compressed(index.id, 1, rows)

    async with await Database.open(path) as db:
        stored = await db.get_codebook(index.id)
        assert stored is not None and (stored.scheme, stored.nbits, stored.generation) == ("scalar", 2, 1)
        assert stored.codewords is None and stored.rotation is None
        np.testing.assert_array_equal(stored.weights, book.weights)
        loaded = await db.load_compressed(index.id)
        assert loaded is not None and loaded.missing == 0
        np.testing.assert_array_equal(loaded.residuals, old_packed)

        # A scorer configured for scalar residuals keeps the old rows; the default one (pq) retrains from float16.
        generation, kept = await CompressedScorer(db, scheme="scalar", min_tokens=100, device="cpu").prepare(index)
        assert generation == 1 and kept.scheme == "scalar"
        scorer = CompressedScorer(db, min_tokens=100, device="cpu")
        generation, new = await scorer.prepare(index)
        assert generation == 2 and new.scheme == "pq"
        stored = await db.get_codebook(index.id)
        assert stored is not None and stored.scheme == "pq" and stored.nbits == 8
        np.testing.assert_array_equal(stored.codewords, new.codewords)
        np.testing.assert_array_equal(stored.rotation, new.rotation)
        loaded = await db.load_compressed(index.id)
        assert loaded is not None and loaded.missing == 0
        assert loaded.residuals.shape == (len(x), residual.default_groups(DIM))
        q = x[offsets[7] : offsets[7] + 8]
        assert (await scorer.top_k(index, q, 1))[0][0] == (await BruteForceScorer(db).top_k(index, q, 1))[0][0]
