"""ColBERT speed on this machine: passage encoding (chunks/s) and brute-force MaxSim over an index, with the
alternatives maxsim_batch was chosen from (passage-aligned blocks; torch for the float16 cast and matmul, which
use every core; scatter_reduce amax for the per-passage max).

    python bench/bench_colbert.py [--models DIR] [--base] [--device cpu|cuda] [--chunks 1000,10000,50000]

--models: a tiny_models output (default: build one in the test cache). --base adds a random BERT-base ColBERT
(768 hidden, 12 layers: the real colbertv2.0 shape; speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag_engine.colbert import maxsim as maxsim_module  # noqa: E402
from rag_engine.colbert.encoder import ColBERTEncoder  # noqa: E402


def _timed(fn, repeat: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _passages(n: int) -> list[str]:
    from tests.conftest import REAL_PDFS

    import pymupdf

    words: list[str] = []
    for pdf in sorted(REAL_PDFS.glob("*.pdf")):
        with pymupdf.open(pdf) as doc:
            words += " ".join(page.get_text() for page in doc).split()
    step = 130  # ~180 WordPiece tokens, the chunker's size
    chunks = [" ".join(words[i : i + step]) for i in range(0, len(words) - step, step)]
    return (chunks * (n // len(chunks) + 1))[:n]


def _base_checkpoint(folder: Path, tiny: Path) -> Path:
    """A random BERT-base (110 M) in the colbert-ir layout, reusing the tiny model's tokenizer and metadata."""
    import shutil

    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel

    shutil.copytree(tiny, folder)
    config = BertConfig(vocab_size=30522)
    config.architectures = ["HF_ColBERT"]
    bert = BertModel(config)
    weights = {f"bert.{k}": v.contiguous() for k, v in bert.state_dict().items()}
    weights["linear.weight"] = torch.nn.Linear(768, 128, bias=False).weight.detach()
    save_file(weights, str(folder / "model.safetensors"))
    config.to_json_file(folder / "config.json")
    return folder


def bench_encoding(name: str, folder: Path, device: str, n: int) -> None:
    encoder = ColBERTEncoder.load(str(folder), folder.parent / "models", device)
    passages = _passages(n)
    seconds = _timed(lambda: encoder.encode_documents(passages, batch_size=32), repeat=1)
    tokens = sum(len(v) for v in encoder.encode_documents(passages[:64])) / 64
    q_seconds = _timed(lambda: encoder.encode_queries(["why divide by the square root of d_k?"]))
    print(f"| {name} | {encoder.device} | {n} | {n / seconds:,.0f} | {tokens:.0f} | {q_seconds * 1000:.1f} |")


# --- MaxSim alternatives ---------------------------------------------------------------------------------------------
def used(query, vectors, offsets):
    return maxsim_module.maxsim_batch(query, vectors, offsets)


def numpy_reduceat(query, vectors, offsets, block: int = 1 << 17):
    """The same passage-aligned blocks, in numpy: cast, matmul, np.maximum.reduceat."""
    q = np.ascontiguousarray(np.asarray(query, dtype=np.float32).T)
    out = np.zeros(len(offsets) - 1, dtype=np.float32)
    doc = 0
    while doc < len(out):
        end = min(max(int(np.searchsorted(offsets, offsets[doc] + block, side="right")) - 1, doc + 1), len(out))
        lo, hi = offsets[doc], offsets[end]
        sims = np.asarray(vectors[lo:hi], dtype=np.float32) @ q
        out[doc:end] = np.maximum.reduceat(sims, offsets[doc:end] - lo, axis=0).sum(axis=1)  # no empty passages here
        doc = end
    return out


def torch_scatter_amax(query, vectors, offsets):
    import torch

    q = torch.from_numpy(np.asarray(query, dtype=np.float32))
    v = torch.from_numpy(np.asarray(vectors)).float()
    lengths = torch.from_numpy(np.diff(offsets))
    owner = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    sims = v @ q.T
    best = torch.full((len(lengths), q.shape[0]), float("-inf")).scatter_reduce(
        0, owner[:, None].expand_as(sims), sims, reduce="amax"
    )
    return best.clamp_min(-1e30).sum(1).numpy()


def torch_padded(query, vectors, offsets, block: int = 2048):
    import torch

    q = torch.from_numpy(np.asarray(query, dtype=np.float32))
    v = torch.from_numpy(np.asarray(vectors))
    lengths = np.diff(offsets)
    out = np.zeros(len(lengths), dtype=np.float32)
    for start in range(0, len(lengths), block):
        stop = min(start + block, len(lengths))
        width = int(lengths[start:stop].max())
        padded = torch.zeros((stop - start, width, v.shape[1]), dtype=torch.float32)
        mask = torch.zeros((stop - start, width), dtype=torch.bool)
        for i in range(start, stop):
            padded[i - start, : lengths[i]] = v[offsets[i] : offsets[i + 1]].float()
            mask[i - start, : lengths[i]] = True
        sims = torch.einsum("btd,qd->bqt", padded, q).masked_fill(~mask[:, None, :], float("-inf"))
        out[start:stop] = sims.max(-1).values.sum(-1).numpy()
    return out


def bench_maxsim(sizes: list[int]) -> None:
    rng = np.random.default_rng(0)
    query = rng.standard_normal((32, 128)).astype(np.float32)
    print("\n| chunks | tokens (float16) | maxsim_batch ms (used) | numpy reduceat ms | torch scatter, one block ms "
          "| torch padded ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in sizes:
        lengths = rng.integers(60, 181, n)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        vectors = rng.standard_normal((int(offsets[-1]), 128)).astype(np.float16)
        reference = used(query, vectors, offsets)
        row = []
        for fn in (used, numpy_reduceat, torch_scatter_amax, torch_padded):
            np.testing.assert_allclose(fn(query, vectors, offsets), reference, rtol=1e-4, atol=1e-3)
            row.append(_timed(lambda fn=fn: fn(query, vectors, offsets)) * 1000)
        print(f"| {n:,} | {int(offsets[-1]):,} | " + " | ".join(f"{ms:,.1f}" for ms in row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, help="a training.tiny_models output folder")
    parser.add_argument("--base", action="store_true", help="also a random BERT-base ColBERT (slow on a CPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--passages", type=int, default=512)
    parser.add_argument("--chunks", default="1000,10000,50000")
    args = parser.parse_args()

    if args.models is None:
        from tests.conftest import _tiny_models_cache
        from training.tiny_models import build_all

        args.models = _tiny_models_cache()
        build_all(args.models)
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| checkpoint | device | passages | chunks/s | vectors/passage | one query ms |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "tiny"
        import shutil

        shutil.copytree(args.models / "colbert", work)
        bench_encoding("tiny (64 hidden, 2 layers)", work, args.device, args.passages)
        if args.base:
            base = _base_checkpoint(Path(tmp) / "base", args.models / "colbert")
            bench_encoding("BERT-base shape (random)", base, args.device, max(64, args.passages // 8))
    bench_maxsim([int(x) for x in args.chunks.split(",")])


if __name__ == "__main__":
    main()
