"""Search indexes of any size for the search and memory benches: real encoder statistics, written compressed.

`real_sample` encodes the shared real papers with all-MiniLM-L6-v2 in the colbert-ir layout (TOOLCHAIN.md), trains a
codebook of search's scheme ("pq", residual.py) on those vectors and compresses them, and saves it all to one .npz
(~20 MB, git-ignored under .device/, small enough to carry to the GPU machine). `build` then writes an index of N
chunks whose compressed rows are real passages' rows with 10 % of centroid ids and 10 % of residual bytes redrawn
from the real ones, and whose text is the real passage's (so BM25 works on real words).

Each chunk's float16 rows (what search re-scores its best 32 passages with, read back from SQLite) are its compressed
rows decompressed: the right size and the same vectors the compressed index approximates, ~3.5 GB of disk at 100k
chunks. The codebook is the sample's (k-means + assignment over 18 M vectors takes about an hour on the 2-core CPU);
compression fidelity is measured separately, on real vectors, by bench_compression.py.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag_engine.retrieval import residual
from storage import CODEC_ID, Database
from storage.records import NewChunk

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLE = ROOT / ".device" / "search-real.npz"
DEFAULT_ENCODER = Path.home() / ".cache/paperbot-tests/real-models/minilm-colbert"
CHUNKS_PER_PAPER = 100
REDRAWN = 0.10


@dataclass(frozen=True)
class RealSample:
    texts: list[str]
    offsets: np.ndarray  # int64, per real passage
    codes: np.ndarray  # uint16 per real token
    packed: np.ndarray  # uint8 (tokens, residual bytes)
    book: residual.Codebook
    questions: list[str]
    query_vectors: np.ndarray  # float32 (n_questions, query_len, 128)


def real_sample(path: Path = DEFAULT_SAMPLE, encoder_dir: Path = DEFAULT_ENCODER) -> RealSample:
    """Load the sample, making it first (needs the MiniLM checkpoint; a few minutes on 2 cores)."""
    if not path.exists():
        _make_sample(path, encoder_dir)
    data = dict(np.load(path, allow_pickle=False))
    if "codewords" not in data:  # made before the "pq" scheme: recompress its vectors, keep the rest
        book = residual.train(data["vectors"].astype(np.float32), scheme=residual.PQ)
        data["codes"], data["packed"] = residual.compress(book, data["vectors"].astype(np.float32))
        data.update(_book_arrays(book))
        np.savez(path, **data)
    book = residual.Codebook(
        centroids=data["centroids"], cutoffs=data["cutoffs"], weights=data["weights"], nbits=int(data["nbits"]),
        codewords=data["codewords"], rotation=data["rotation"],
    )
    return RealSample(
        texts=json.loads(str(data["texts"])),
        offsets=data["offsets"],
        codes=data["codes"],
        packed=data["packed"],
        book=book,
        questions=json.loads(str(data["questions"])),
        query_vectors=data["query_vectors"],
    )


def _make_sample(path: Path, encoder_dir: Path) -> None:
    from bench.bench_compression import real_passages
    from rag_engine.colbert.encoder import ColBERTEncoder
    from tests.test_retrieval_quality import QUESTIONS

    if not encoder_dir.is_dir():
        raise SystemExit(f"no encoder at {encoder_dir}: build it with `python -m training.real_models DIR`")
    encoder = ColBERTEncoder.load(str(encoder_dir), encoder_dir.parent, "cpu")
    texts, _ = real_passages()
    docs = encoder.encode_documents(texts, batch_size=32)
    vectors = np.concatenate(docs).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
    rng = np.random.default_rng(0)
    questions = [q for _, q, _ in QUESTIONS] + [
        texts[i].split(". ")[0][:200] for i in rng.choice(len(texts), 40, replace=False)
    ]
    book = residual.train(vectors, scheme=residual.PQ)
    codes, packed = residual.compress(book, vectors)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path, texts=json.dumps(texts), offsets=offsets, vectors=vectors.astype(np.float16), codes=codes, packed=packed,
        questions=json.dumps(questions), query_vectors=encoder.encode_queries(questions).astype(np.float32),
        **_book_arrays(book),
    )


def _book_arrays(book: residual.Codebook) -> dict[str, np.ndarray]:
    assert book.codewords is not None and book.rotation is not None
    return {
        "centroids": book.centroids, "cutoffs": book.cutoffs, "weights": book.weights, "nbits": np.asarray(book.nbits),
        "codewords": book.codewords, "rotation": book.rotation,
    }


async def build(db_path: Path, n_chunks: int, sample: RealSample, seed: int = 0) -> None:
    """Write an index named "bench" of `n_chunks` chunks into a new database file."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    lengths = np.diff(sample.offsets)
    base = rng.integers(0, len(lengths), n_chunks)
    async with await Database.open(db_path) as db:
        index = await db.get_or_create_index("bench", "minilm-colbert-bench", CODEC_ID, sample.book.dim)
        generation = await db.save_codebook(
            # the index's real token count: a smaller one would have the first search retrain (RETRAIN_GROWTH)
            index.id, nbits=sample.book.nbits, trained_tokens=int(lengths[base].sum()), centroids=sample.book.centroids,
            cutoffs=sample.book.cutoffs, weights=sample.book.weights, codewords=sample.book.codewords,
            rotation=sample.book.rotation,
        )
        for first in range(0, n_chunks, CHUNKS_PER_PAPER):
            picks = base[first : first + CHUNKS_PER_PAPER]
            doc = await db.create_document(index.id, f"sha{first}", f"Paper {first}", f"p{first}.pdf", None, 1)
            rows = _rows(sample, picks, rng)
            chunks = [
                NewChunk(sample.texts[j], 1, 1, None, i, residual.decompress(sample.book, codes, packed))
                for i, (j, (codes, packed)) in enumerate(zip(picks, rows, strict=True))
            ]
            await db.complete_document(doc.id, chunks)
            # the chunks just written are exactly those without compressed rows yet, in ordinal order
            ids = (await db.load_uncompressed(index.id, generation, len(picks))).chunk_ids.tolist()
            await db.store_compressed(index.id, generation, [(i, *row) for i, row in zip(ids, rows, strict=True)])
    print(f"(built {n_chunks:,} chunks in {time.perf_counter() - started:.0f} s: {db_path})")


def _rows(sample: RealSample, picks: np.ndarray, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    rows = []
    n_tokens = len(sample.codes)
    for j in picks:
        lo, hi = int(sample.offsets[j]), int(sample.offsets[j + 1])
        codes = sample.codes[lo:hi].copy()
        packed = sample.packed[lo:hi].copy()
        redraw = rng.random(len(codes)) < REDRAWN
        codes[redraw] = sample.codes[rng.integers(0, n_tokens, int(redraw.sum()))]
        bytes_redraw = rng.random(packed.shape) < REDRAWN
        packed[bytes_redraw] = sample.packed.reshape(-1)[rng.integers(0, sample.packed.size, int(bytes_redraw.sum()))]
        rows.append((codes, packed))
    return rows
