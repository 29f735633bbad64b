"""Residual compression (centroid id + 1 or 2 bits per dimension) and the storage of compressed rows."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from rag_engine.colbert.maxsim import maxsim_batch
from rag_engine.retrieval import residual
from storage import CODEC_ID, Database
from storage.records import NewChunk

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


def test_centroid_count_grows_with_the_index_and_fits_uint16() -> None:
    assert residual.default_centroids(10_000) < residual.default_centroids(1_000_000)
    assert residual.default_centroids(10**12) == residual.MAX_CENTROIDS
    with pytest.raises(ValueError):
        residual.train(clustered(100), nbits=3)


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
