"""Prompt-lookup speculative decoding in the batched backend: decoding speed with and without, and how many drafted
tokens the model accepts, on real prompts.

Each job is one of the retrieval-quality questions (tests/test_retrieval_quality.py) over passages cut from its
answer pages of the shared real papers (~130 words each, as retrieval would return them), laid out by
`rag_engine.prompting.build_prompt` as the bot serves it. Every setting runs in its own loaded backend; the jobs go
through them in turn (question 1 on every setting, then question 2, ...), so a load change on a shared machine
touches all settings alike.

    python bench/bench_speculative.py --papers ../shared/data/pdfs/real --drafts 0,3,6 --questions 10 \\
        --max-tokens 160 --grammar --threads 1     # --model: Qwen2.5-Coder-0.5B Q4_K_M from the test cache

Decode tok/s counts only the time after each reply's first token (reading the prompt costs the same either way);
"same" counts the replies identical to the first setting's (with `--drafts 0,…`, the replies without drafts).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import llama_cpp  # noqa: F401  # llama.cpp's libraries before numpy's (see bench_llm.py)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import describe
from rag_engine.llm.base import ChatMessage, GenerationRequest
from rag_engine.llm.batched import BatchedLlamaBackend
from rag_engine.prompting import Passage, PromptBudget, build_prompt, reply_grammar
from tests.test_retrieval_quality import QUESTIONS

DEFAULT_MODEL = Path.home() / ".cache/paperbot-tests/real-models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


@dataclass
class Result:
    """One setting's runs, summed over the jobs."""

    draft: int
    tokens: int = 0
    decode_s: float = 0.0  # first token → end, summed over jobs
    wall_s: float = 0.0
    steps: int = 0
    drafted: int = 0
    accepted: int = 0
    replies: list[str] = field(default_factory=list)


def passages_for(papers: Path, paper: str, pages: set[int], limit: int) -> list[Passage]:
    """The answer pages cut into ~130-word passages (the chunker's size), first `limit` of them."""
    import pymupdf

    out: list[Passage] = []
    with pymupdf.open(papers / paper) as doc:
        for number in sorted(pages):
            words = doc[number - 1].get_text().split()
            for i in range(0, max(len(words) - 20, 1), 130):
                out.append(Passage(paper.removesuffix(".pdf"), " ".join(words[i : i + 130]), number, number))
    return out[:limit]


async def timed(backend: BatchedLlamaBackend, request: GenerationRequest) -> tuple[str, float, float]:
    """(reply, seconds to the first delta, seconds in all)."""
    t0 = time.perf_counter()
    first = None
    parts = []
    async for delta in backend.stream(request):
        if first is None:
            first = time.perf_counter() - t0
        parts.append(delta)
    return "".join(parts), first or 0.0, time.perf_counter() - t0


async def run(args: argparse.Namespace) -> None:
    drafts = [int(d) for d in args.drafts.split(",")]
    backends = [
        BatchedLlamaBackend(
            args.model, parallel=args.parallel, n_ctx=args.n_ctx, n_gpu_layers=args.n_gpu_layers,
            n_threads=args.threads, flash_attn=args.flash_attn, draft_tokens=d,
        )
        for d in drafts
    ]
    for backend in backends:
        await backend.start()
    count = backends[0].count_tokens
    budget = PromptBudget(n_ctx=args.n_ctx, max_new_tokens=args.max_tokens)
    grammar = reply_grammar(args.max_tokens) if args.grammar else None
    jobs: list[tuple[ChatMessage, ...]] = []
    prompt_tokens = []
    for paper, question, pages in QUESTIONS[: args.questions]:
        prompt = build_prompt(question, passages_for(args.papers, paper, pages, 5), budget=budget, count_tokens=count)
        jobs.append(prompt.messages)
        prompt_tokens.append(prompt.tokens)
    results = [Result(d) for d in drafts]
    try:
        for backend in backends:  # warm-up: graphs, allocations
            await backend.generate(GenerationRequest(jobs[0][:2], max_tokens=4, temperature=0.0))
            backend.timings = type(backend.timings)()
        for i in range(0, len(jobs), args.concurrency):
            group = jobs[i : i + args.concurrency]
            for backend, result in zip(backends, results):
                requests = [
                    GenerationRequest(m, max_tokens=args.max_tokens, temperature=args.temperature, seed=7 + i + j,
                                      grammar=grammar)
                    for j, m in enumerate(group)
                ]
                t0 = time.perf_counter()
                done = await asyncio.gather(*(timed(backend, r) for r in requests))
                result.wall_s += time.perf_counter() - t0
                for reply, first, total in done:
                    result.replies.append(reply)
                    result.tokens += count(reply)
                    result.decode_s += total - first
                seconds = time.perf_counter() - t0
                print(f"  job {i + 1}-{i + len(group)} draft {result.draft}: {seconds:.1f}s", flush=True)
        for backend, result in zip(backends, results):
            t = backend.timings
            result.steps, result.drafted, result.accepted = t.steps, t.drafted, t.accepted
    finally:
        for backend in backends:
            await backend.close()
    print_table(args, results, prompt_tokens)


def print_table(args: argparse.Namespace, results: list[Result], prompt_tokens: list[int]) -> None:
    base = results[0]
    sampling = f"temperature {args.temperature}" + (", seeded" if args.temperature > 0 else " (greedy)")
    print()
    print(describe())
    print(
        f"model: {args.model.name}; {len(base.replies)} real prompts (median {statistics.median(prompt_tokens):.0f} "
        f"tokens), up to {args.max_tokens} new tokens, {sampling}, reply grammar {'on' if args.grammar else 'off'}, "
        f"{args.concurrency} at a time, parallel {args.parallel}, threads {args.threads or 'default'}, "
        f"GPU layers {args.n_gpu_layers}, flash attention {'on' if args.flash_attn else 'off'}"
    )
    print()
    print("| draft tokens | decode tok/s | speed-up | wall s | new tokens | steps | tokens/step | drafted | accepted "
          "| acceptance | same replies |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    base_rate = base.tokens / base.decode_s if base.decode_s else 0.0
    for r in results:
        rate = r.tokens / r.decode_s if r.decode_s else 0.0
        same = sum(a == b for a, b in zip(base.replies, r.replies))
        acceptance = f"{r.accepted / r.drafted:.0%}" if r.drafted else "-"
        print(
            f"| {r.draft or 'off'} | {rate:.1f} | {rate / base_rate if base_rate else 0:.2f}x | {r.wall_s:.1f} "
            f"| {r.tokens} | {r.steps} | {r.tokens / max(1, r.steps):.2f} | {r.drafted} | {r.accepted} "
            f"| {acceptance} | {same}/{len(base.replies)} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="GGUF file (default: %(default)s)")
    parser.add_argument("--papers", type=Path, default=REPO.parent / "shared" / "data" / "pdfs" / "real",
                        help="the shared real papers (default: %(default)s)")
    parser.add_argument("--drafts", default="0,4", help="draft lengths to compare, 0 = off (default: %(default)s)")
    parser.add_argument("--questions", type=int, default=6, help="jobs (default: %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=128, help="new tokens per reply (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default: %(default)s)")
    parser.add_argument("--grammar", action="store_true", help="send the reply grammar, as the bot does")
    parser.add_argument("--concurrency", type=int, default=1, help="jobs sent together (default: %(default)s)")
    parser.add_argument("--parallel", type=int, default=4, help="backend slots (default: %(default)s)")
    parser.add_argument("--n-ctx", type=int, default=4096, help="context per slot (default: %(default)s)")
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: the backend's)")
    parser.add_argument("--n-gpu-layers", type=int, default=0, help="layers offloaded to the GPU, -1 = all "
                        "(default: %(default)s)")
    parser.add_argument("--flash-attn", action="store_true", help="llama.cpp's flash attention (on a GPU)")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
