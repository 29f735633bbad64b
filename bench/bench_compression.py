"""Index compression fidelity: bytes per token and top-10 overlap with the float16 index, on real encoder vectors
and on random ones; recall@5 of the retrieval-quality questions with float16 vs compressed + pruned.

Codecs (rag_engine/retrieval/residual.py): "scalar" (ColBERTv2's per-dimension buckets, 1 or 2 bits) and "pq"
(38 one-byte codeword groups after a PCA rotation, what search uses), at the default centroid count and, for pq on
real vectors, at ColBERTv2's 16·√n, then with 48 groups (3.1 bits/dim, over the 2.5 budget) to show what 0.95 costs. A last table shows what overlap float16 vectors keep under plain noise of a given
cosine: how close a codec must come before top-10 overlap reaches a target.

    python bench/bench_compression.py [--encoder DIR] [--random-chunks 1000] [--sample PATH]

--encoder: all-MiniLM-L6-v2 as a colbert-ir checkpoint (384 → 128 by a seeded random orthonormal linear.weight;
TOOLCHAIN.md), default ~/.cache/paperbot-tests/real-models/minilm-colbert (`python -m training.real_models DIR`
builds it). Passages: the shared real papers cut into ~130-word pieces within a page. Queries: the ten questions of
tests/test_retrieval_quality.py plus 40 sentences taken from random passages (real); for random vectors, noisy
copies of 12 tokens of a random passage (pure random queries rank noise).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe  # noqa: E402
from rag_engine.colbert.maxsim import maxsim_batch  # noqa: E402
from rag_engine.retrieval import residual  # noqa: E402
from rag_engine.retrieval.compressed_scorer import RERANK_DEPTH  # noqa: E402
from rag_engine.retrieval.plaid import CompressedIndex, exact_scores, pruned_top_k  # noqa: E402

DEFAULT_ENCODER = Path.home() / ".cache/paperbot-tests/real-models/minilm-colbert"


def real_passages() -> tuple[list[str], list[tuple[str, int]]]:
    import pymupdf

    from tests.conftest import REAL_PDFS

    texts, where = [], []
    for pdf in sorted(REAL_PDFS.glob("*.pdf")):
        with pymupdf.open(pdf) as doc:
            for number, page in enumerate(doc, start=1):
                words = page.get_text().split()
                for i in range(0, max(len(words) - 20, 0), 130):
                    texts.append(" ".join(words[i : i + 130]))
                    where.append((pdf.name, number))
    return texts, where


def top(scores: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def reranked_top(index: CompressedIndex, q: np.ndarray, f16: np.ndarray, offsets: np.ndarray, k: int) -> list[int]:
    """What CompressedScorer returns: the pruned ranking's first RERANK_DEPTH re-scored from the float16 rows."""
    candidates = [c for c, _ in pruned_top_k(index, q, k, keep=RERANK_DEPTH)]
    rows = [f16[offsets[c] : offsets[c + 1]] for c in candidates]
    scores = maxsim_batch(q, np.concatenate(rows), np.concatenate([[0], np.cumsum([len(r) for r in rows])]))
    return [candidates[i] for i in np.argsort(-scores, kind="stable")[:k]]


def fidelity(
    name: str, vectors: np.ndarray, offsets: np.ndarray, queries: list[np.ndarray], scheme: str, nbits: int = 2,
    groups: int | None = None, n_centroids: int | None = None,
) -> dict:
    started = time.perf_counter()
    book = residual.train(vectors, scheme=scheme, nbits=nbits, groups=groups, n_centroids=n_centroids)
    codes, packed = residual.compress(book, vectors)
    seconds = time.perf_counter() - started
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = float(np.mean(np.sum(residual.decompress(book, codes, packed) * unit, axis=1)))
    index = CompressedIndex.build(book, np.arange(len(offsets) - 1), offsets, codes, packed, 0)
    exact_overlap, pruned_overlap, pruned_ms, same_top1, intruders, gaps = [], [], [], [], [], []
    reranked_overlap, reranked_ms = [], []
    f16 = vectors.astype(np.float16)
    for q in queries:
        scores = maxsim_batch(q, f16, offsets)
        order = top(scores, len(scores))
        ranked = order[:10]
        reference = set(ranked)
        exact = top(exact_scores(index, q), 10)
        exact_overlap.append(len(reference & set(exact)) / 10)
        same_top1.append(exact[0] == ranked[0])
        # passages the codec put in the top 10 wrongly: how far down the float16 ranking, how far below its 10th score
        rank = {p: r for r, p in enumerate(order)}
        wrong = [p for p in exact if p not in reference]
        intruders += [rank[p] + 1 for p in wrong]
        gaps += [(scores[ranked[-1]] - scores[p]) / scores[ranked[-1]] for p in wrong]
        t = time.perf_counter()
        pruned = pruned_top_k(index, q, 10)
        pruned_ms.append((time.perf_counter() - t) * 1000)
        pruned_overlap.append(len(reference & {c for c, _ in pruned}) / 10)
        # what the scorer returns: the pruned top RERANK_DEPTH re-scored exactly from the float16 rows
        t = time.perf_counter()
        reranked = set(reranked_top(index, q, f16, offsets, 10))
        reranked_ms.append((time.perf_counter() - t) * 1000)
        reranked_overlap.append(len(reference & reranked) / 10)
    per_token = 2 + packed.shape[1]  # uint16 centroid id + packed residual
    codec = f"{scheme} {nbits}-bit" if scheme == residual.SCALAR else f"{scheme} {packed.shape[1]} groups"
    arrays = (book.centroids, book.cutoffs, book.weights, book.codewords, book.rotation)
    book_kib = sum(a.nbytes for a in arrays if a is not None) / 1024
    print(
        f"| {name} | {codec} | {len(offsets) - 1:,} | {len(vectors):,} | {len(book.centroids):,} | {book_kib:,.0f} "
        f"| {per_token} | {per_token * 8 / vectors.shape[1]:.2f} | {cosine:.4f} | {np.mean(same_top1):.2f} "
        f"| {np.mean(exact_overlap):.3f} | {np.median(intruders) if intruders else 0:.0f} "
        f"({100 * np.median(gaps) if gaps else 0:.1f} %) | {np.mean(pruned_overlap):.3f} | {np.median(pruned_ms):.1f} "
        f"| {np.mean(reranked_overlap):.3f} | {np.median(reranked_ms):.1f} | {seconds:.1f} |",
        flush=True,
    )
    return {"index": index, "label": f"{codec}, {len(book.centroids):,} centroids"}


def noise_overlap(vectors: np.ndarray, offsets: np.ndarray, queries: list[np.ndarray], cosine: float) -> float:
    """Top-10 overlap with float16 after adding isotropic noise that leaves the given mean cosine."""
    rng = np.random.default_rng(0)
    sigma = np.sqrt(2 * (1 - cosine) / vectors.shape[1])  # ‖noise‖² ≈ 2(1 − cos) for small noise
    noisy = vectors + sigma * rng.standard_normal(vectors.shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    f16 = vectors.astype(np.float16)
    return float(np.mean([
        len(set(top(maxsim_batch(q, f16, offsets), 10)) & set(top(maxsim_batch(q, noisy, offsets), 10))) / 10
        for q in queries
    ]))


def recall_at_5(index: CompressedIndex | None, q_vectors, f16, offsets, where, questions, rerank: bool = False) -> int:
    found = 0
    for q, (paper, _, pages) in zip(q_vectors, questions, strict=True):
        if index is None:
            ids = top(maxsim_batch(q, f16, offsets), 5)
        elif rerank:
            ids = reranked_top(index, q, f16, offsets, 5)
        else:
            ids = [c for c, _ in pruned_top_k(index, q, 5)]
        found += any(where[i][0] == paper and where[i][1] in pages for i in ids)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", type=Path, default=DEFAULT_ENCODER)
    parser.add_argument("--random-chunks", type=int, default=1000)
    parser.add_argument("--sample", type=Path, default=Path(__file__).resolve().parents[1] / ".device/search-real.npz",
                        help="encoded passages kept by bench/synthetic.py (made here first when missing)")
    args = parser.parse_args()
    print(describe())
    header = (
        "| vectors | codec | passages | tokens | centroids | codebook KiB | bytes/token | bits/dim | mean cosine "
        "| same top-1, compressed exact | top-10 overlap, compressed exact | wrong passages in it: median float16 rank "
        "(score below the 10th) | top-10 overlap, compressed + pruned | pruned ms/query "
        f"| top-10 overlap, pruned top {RERANK_DEPTH} re-scored from float16 (the scorer's result) | its ms/query "
        "| train+compress s |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |"
    )
    print("\nTop-10 overlap: against brute-force MaxSim over the float16 vectors (the index's source rows), the same "
          "query vectors, k = 10, ties by passage order (stable sort) on both sides. Bits/dim and bytes/token: per "
          "token (uint16 centroid id + residual bytes); the codebook is shared by the index.\n")
    print(header)

    rng = np.random.default_rng(0)
    results: list[dict] = []
    if args.encoder.is_dir() or args.sample.exists():
        from bench import synthetic
        from tests.test_retrieval_quality import QUESTIONS

        sample = synthetic.real_sample(args.sample, args.encoder)  # the same passages, encoded once and kept
        _, where = real_passages()
        offsets = sample.offsets
        vectors = np.load(args.sample)["vectors"].astype(np.float32)
        q_vectors = list(sample.query_vectors)  # the 10 questions, then 40 sentences of the papers
        real = "MiniLM colbert-ir (real papers)"
        for nbits in (1, 2):
            results.append(fidelity(real, vectors, offsets, q_vectors, residual.SCALAR, nbits))
        results.append(fidelity(real, vectors, offsets, q_vectors, residual.PQ))
        colbertv2_k = int(2 ** round(np.log2(16 * np.sqrt(len(vectors)))))
        results.append(fidelity(real, vectors, offsets, q_vectors, residual.PQ, n_centroids=colbertv2_k))
        # over the 2.5 bits/dim budget (3.1): where top-10 overlap reaches 0.95 on these vectors
        results.append(fidelity(real, vectors, offsets, q_vectors, residual.PQ, groups=48, n_centroids=colbertv2_k))
    else:
        print(f"(no encoder at {args.encoder}: real-vector rows skipped)")

    n = args.random_chunks
    offsets_r = np.concatenate([[0], np.cumsum(rng.integers(60, 181, n))])
    random_vectors = rng.standard_normal((int(offsets_r[-1]), 128)).astype(np.float32)
    random_vectors /= np.linalg.norm(random_vectors, axis=1, keepdims=True)
    random_queries = []
    for _ in range(50):
        p = int(rng.integers(n))
        q = random_vectors[offsets_r[p] : offsets_r[p] + 12] + 0.08 * rng.standard_normal((12, 128)).astype(np.float32)
        random_queries.append(q / np.linalg.norm(q, axis=1, keepdims=True))
    for nbits in (1, 2):
        fidelity("random unit (noisy-copy queries)", random_vectors, offsets_r, random_queries, residual.SCALAR, nbits)
    fidelity("random unit (noisy-copy queries)", random_vectors, offsets_r, random_queries, residual.PQ)

    if results:
        print("\nRecall@5 (answer page among the 5 best passages), ColBERT alone, the 10 questions of "
              "tests/test_retrieval_quality.py:\n")
        print("| index | found in top 5 |\n| --- | ---: |")
        f16 = vectors.astype(np.float16)
        print(f"| float16, brute force | {recall_at_5(None, q_vectors[:10], f16, offsets, where, QUESTIONS)}/10 |")
        for result in results:
            got = recall_at_5(result["index"], q_vectors[:10], f16, offsets, where, QUESTIONS)
            print(f"| {result['label']}, pruned | {got}/10 |")
            got = recall_at_5(result["index"], q_vectors[:10], f16, offsets, where, QUESTIONS, rerank=True)
            print(f"| {result['label']}, pruned, top {RERANK_DEPTH} re-scored from float16 | {got}/10 |")

        print("\nWhat top-10 overlap float16 MaxSim keeps under isotropic noise of a given mean cosine (same vectors "
              "and queries):\n")
        print("| mean cosine | top-10 overlap |\n| ---: | ---: |")
        for cosine in (0.98, 0.99, 0.995):
            print(f"| {cosine} | {noise_overlap(vectors, offsets, q_vectors, cosine):.3f} |")


if __name__ == "__main__":
    main()
