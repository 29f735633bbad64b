"""`python -m training prepare`: QASA (+ the training papers) → DATA/train.jsonl, DATA/eval.jsonl, DATA/manifest.json.

The committed evaluation split decides what training may see: the evaluation papers and QASA's evaluation half
never reach train.jsonl. eval.jsonl holds records of QASA's evaluation half (for reward curves on held-out data);
the answer-quality harness (`python -m training evaluate`) is the real evaluation.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rag_engine.chunking import chunk_pages
from rag_engine.llm.base import approx_tokens
from rag_engine.pdf import extract_pdf
from rag_engine.prompting import Passage, PromptBudget, TokenCounter
from rag_engine.settings import EngineSettings
from training import qasa
from training.generate import Generate, content_words, generate_pair
from training.records import TrainingRecord, from_generated, from_qasa_answerable, from_qasa_unanswerable, mismatched
from training.eval import SPLIT as DEFAULT_SPLIT
from training.split import Split, load_split

log = logging.getLogger(__name__)



@dataclass(frozen=True, slots=True)
class PaperPassages:
    name: str  # file name
    title: str
    passages: list[Passage]


def paper_passages(pdf: Path, settings: EngineSettings) -> PaperPassages:
    """A training paper as the bot would chunk it (the serving extractor and chunker, approximate token counts)."""
    extracted = extract_pdf(pdf.read_bytes(), max_bytes=int(settings.max_file_mb * 2**20),
                            max_pages=settings.max_pages, filename=pdf.name)
    chunks = chunk_pages(extracted.pages, count_tokens=approx_tokens, max_tokens=settings.chunk_tokens,
                         overlap=settings.chunk_overlap)
    passages = [Passage(extracted.title, c.text, c.page_start, c.page_end) for c in chunks]
    return PaperPassages(pdf.name, extracted.title, passages)


def _lexical_neighbours(text: str, pool: Sequence[Passage], k: int, exclude: Passage | None = None) -> list[Passage]:
    """The `k` passages sharing most content words with `text`: distractors a retriever would also return."""
    words = set(content_words(text))
    scored = sorted(
        (p for p in pool if p is not exclude),
        key=lambda p: -len(words & set(content_words(p.text))),
    )
    return scored[:k]


def qasa_records(
    files: Sequence[Path], split: Split, budget: PromptBudget, rng: random.Random, count_tokens: TokenCounter | None = None
) -> tuple[list[TrainingRecord], list[TrainingRecord], Counter[str]]:
    """(train, eval, skipped counts) from QASA release files, split by paper."""
    records = [r for f in files for r in qasa.load(f)]
    by_paper: dict[str, list[qasa.QasaRecord]] = defaultdict(list)
    for r in records:
        by_paper[r.paper_id].append(r)
    train: list[TrainingRecord] = []
    held_out: list[TrainingRecord] = []
    skipped: Counter[str] = Counter()
    for r in records:
        # Other paragraphs of the same paper: its other questions' evidence and trigger sentences.
        siblings = [
            p for o in by_paper[r.paper_id] if o is not r
            for p in (o.trigger_sentence, *(e.context for e in o.evidence)) if p
        ]
        if r.answerable:
            built = from_qasa_answerable(r, siblings, budget=budget, count_tokens=count_tokens, rng=rng)
        else:
            built = from_qasa_unanswerable(r, siblings, budget=budget, count_tokens=count_tokens, rng=rng)
        if built is None:
            skipped["qasa record without usable evidence or paragraphs"] += 1
            continue
        side = split.qasa_side(r.paper_id, r.answerable)
        (held_out if side == "eval" else train).append(built)
    return train, held_out, skipped


async def pdf_records(
    papers: Sequence[PaperPassages],
    generate: Generate | None,
    per_paper: int,
    budget: PromptBudget,
    rng: random.Random,
    count_tokens: TokenCounter | None = None,
    *,
    tries: int = 1,
    concurrency: int = 1,
) -> tuple[list[TrainingRecord], Counter[str]]:
    """Generated question/answer records for the training papers, plus as many mismatched (abstain) records.

    Up to `3 * per_paper` passages of each paper are asked about, each up to `tries` times (a sampling generator
    writes a new pair each time) until one pair is supported; the first `per_paper` supported ones are kept.
    `concurrency` passages are asked about at once (a batched backend decodes them together).
    """
    out: list[TrainingRecord] = []
    counts: Counter[str] = Counter()
    gate = asyncio.Semaphore(concurrency)

    async def ask(title: str, passage: Passage):
        async with gate:
            for _ in range(tries):
                pair = await generate_pair(generate, title, passage.text)  # type: ignore[arg-type]
                if pair is not None:
                    return pair
                counts["generated, dropped as unsupported"] += 1
            return None

    for paper in papers:
        # Passages long enough to ask about, spread over the paper.
        candidates = [p for p in paper.passages if len(content_words(p.text)) >= 30]
        rng.shuffle(candidates)
        candidates = candidates[: per_paper * 3 if generate else 0]
        pairs = await asyncio.gather(*(ask(paper.title, p) for p in candidates))
        kept = 0
        for passage, pair in zip(candidates, pairs, strict=True):
            if pair is None or kept >= per_paper:
                continue
            distractors = _lexical_neighbours(pair.question, paper.passages, budget.max_sources - 1, exclude=passage)
            out.append(from_generated(
                f"pdf-{paper.name}-{kept}", paper.name, pair.question, f"It says: \"{pair.evidence}\"", pair.answer,
                passage, distractors, budget=budget, count_tokens=count_tokens, rng=rng,
            ))
            kept += 1
            counts["generated, kept"] += 1
    # Abstention: each generated question asked over another paper's closest passages.
    generated = [r for r in out if r.kind == "pdf-generated"]
    for i, record in enumerate(generated):
        others = [p for p in papers if p.name != record.paper]
        if not others:
            break
        other = others[i % len(others)]
        passages = _lexical_neighbours(record.question, other.passages, budget.max_sources)
        out.append(mismatched(f"mismatch-{i}", record.question, record.paper, passages, budget=budget,
                              count_tokens=count_tokens))
        counts["mismatched (abstain)"] += 1
    return out, counts


def gguf_token_counter(path: Path) -> TokenCounter:
    """Count tokens as the serving backend does for that model (its vocabulary only: no weights are loaded)."""
    import llama_cpp

    vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    return lambda text: len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def cap_abstentions(
    records: list[TrainingRecord], ratio: float | None, rng: random.Random
) -> tuple[list[TrainingRecord], int]:
    """At most `ratio` abstention records per answerable one (None: all), so the model does not learn to refuse."""
    answerable = [r for r in records if r.answerable]
    abstain = [r for r in records if not r.answerable]
    if ratio is None or len(abstain) <= ratio * len(answerable):
        return records, 0
    keep = rng.sample(abstain, int(ratio * len(answerable)))
    return answerable + keep, len(abstain) - len(keep)


def _versions() -> dict[str, str]:
    found = {}
    for name in ("trl", "peft", "transformers", "torch", "llama-cpp-python", "unsloth"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def write_jsonl(path: Path, records: Sequence[TrainingRecord]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[TrainingRecord]:
    with Path(path).open(encoding="utf-8") as f:
        return [TrainingRecord.from_json(json.loads(line)) for line in f if line.strip()]


async def prepare(
    qasa_files: Sequence[Path],
    pdf_dir: Path | None,
    split_file: Path,
    out: Path,
    *,
    generator: Generate | None = None,
    generator_name: str = "",
    per_paper: int = 8,
    seed: int = 0,
    settings: EngineSettings | None = None,
    count_tokens: TokenCounter | None = None,
    abstain_ratio: float | None = None,
    tries: int = 1,
    concurrency: int = 1,
) -> dict:
    """Write train.jsonl, eval.jsonl and manifest.json into `out`; returns the manifest."""
    settings = settings or EngineSettings(_env_file=None)  # type: ignore[call-arg]
    budget = PromptBudget.from_settings(settings)
    split = load_split(split_file)
    rng = random.Random(seed)
    train, held_out, skipped = qasa_records(qasa_files, split, budget, rng, count_tokens)
    made: Counter[str] = Counter()
    if pdf_dir is not None:
        pdfs = sorted(p for p in Path(pdf_dir).glob("*.pdf") if split.pdf_side(p.name) == "train")
        refused = sorted(p.name for p in Path(pdf_dir).glob("*.pdf") if split.pdf_side(p.name) == "eval")
        log.info("training papers: %s (evaluation papers left out: %s)", [p.name for p in pdfs], refused)
        papers = [await asyncio.to_thread(paper_passages, p, settings) for p in pdfs]
        generated, made = await pdf_records(papers, generator, per_paper, budget, rng, count_tokens,
                                            tries=tries, concurrency=concurrency)
        train.extend(generated)
    train, capped = cap_abstentions(train, abstain_ratio, rng)
    rng.shuffle(train)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "eval.jsonl", held_out)
    manifest = {
        "train": dict(Counter(r.kind for r in train)),
        "eval": dict(Counter(r.kind for r in held_out)),
        "train_abstain": sum(not r.answerable for r in train),
        "skipped": {**dict(skipped), **({"abstention records over the ratio": capped} if capped else {})},
        "generation": {"model": generator_name or None, "per_paper": per_paper, "tries": tries, **dict(made)},
        "how_made": {
            "qasa-answerable": "QASA evidence paragraphs as sources among the paper's other paragraphs; reasoning from "
                               "the rationales, answer = composition with [n] citations",
            "qasa-unanswerable": "real paragraphs of the paper (trigger sentence, other questions' evidence) as "
                                 "sources; reasoning = QASA's composition, answer = the abstention sentence",
            "pdf-generated": "a training paper's passage among its lexical neighbours; question/answer/evidence "
                             "written by the generator model, kept only when the evidence sentence is in the passage",
            "pdf-mismatched": "a generated question over another paper's closest passages; answer = abstention",
        },
        "split": str(split_file),
        "qasa_files": [str(f) for f in qasa_files],
        "budget": {"n_ctx": budget.n_ctx, "max_new_tokens": budget.max_new_tokens, "max_sources": budget.max_sources,
                   "max_source_tokens": budget.max_source_tokens},
        "seed": seed,
        "token_counts": "served model's tokenizer" if count_tokens else "estimate (4 characters a token)",
        "versions": _versions(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--qasa", type=Path, nargs="+", required=True,
                        help="QASA release files (answerable and/or unanswerable JSON), read as released")
    parser.add_argument("--pdfs", type=Path, default=None,
                        help="folder of papers; those the split marks as training papers give generated records")
    parser.add_argument("--split", type=Path, default=DEFAULT_SPLIT, help=f"evaluation split (default: {DEFAULT_SPLIT})")
    parser.add_argument("--out", type=Path, required=True, help="output folder DATA")
    parser.add_argument("--generator", type=Path, default=None,
                        help="GGUF that writes questions for the training papers (none: no generated records)")
    parser.add_argument("--per-paper", type=int, default=8, help="generated records kept per training paper (default 8)")
    parser.add_argument("--n-gpu-layers", type=int, default=-1, help="generator layers on the GPU (default -1: all)")
    parser.add_argument("--tries", type=int, default=1,
                        help="generations per passage until one is supported (default 1; >1 wants --temperature > 0)")
    parser.add_argument("--temperature", type=float, default=0.0, help="generator sampling temperature (default 0)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="passages asked about at once, decoded together in one batch (default 1)")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="GGUF of the served model: passages are cut to the budget in its tokens, exactly as when "
                             "serving (default: the serving path's estimate, 4 characters a token)")
    parser.add_argument("--abstain-ratio", type=float, default=None,
                        help="at most this many abstention records per answerable one in train.jsonl "
                             "(default: keep all)")
    parser.add_argument("--seed", type=int, default=0, help="shuffling and distractor order (default 0)")


async def _open_generator(path: Path, n_gpu_layers: int, parallel: int):
    from rag_engine.llm.factory import open_backend

    settings = EngineSettings(_env_file=None, llm_model=str(path), n_gpu_layers=n_gpu_layers,  # type: ignore[call-arg]
                        batched=parallel > 1, parallel=parallel, n_ctx=4096, flash_attn=False)
    return await open_backend(settings)


def run(args: argparse.Namespace) -> int:
    async def main() -> dict:
        from training.generate import backend_generator

        backend = await _open_generator(args.generator, args.n_gpu_layers, args.parallel) if args.generator else None
        try:
            generator = backend_generator(backend, temperature=args.temperature) if backend is not None else None
            return await prepare(
                args.qasa, args.pdfs, args.split, args.out, generator=generator,
                generator_name=args.generator.name if args.generator else "", per_paper=args.per_paper, seed=args.seed,
                count_tokens=gguf_token_counter(args.tokenizer) if args.tokenizer else None,
                abstain_ratio=args.abstain_ratio, tries=args.tries, concurrency=args.parallel,
            )
        finally:
            if backend is not None:
                await backend.close()

    manifest = asyncio.run(main())
    print(json.dumps({k: manifest[k] for k in ("train", "eval", "train_abstain", "generation")}, indent=2))
    return 0
