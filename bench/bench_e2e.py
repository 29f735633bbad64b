"""End to end through bot/core: N users ask at once in one channel, as the chat adapters call it.

    python bench/bench_e2e.py --gguf MODEL.gguf [--encoder DIR] [--users 1,8,32] [--n-gpu-layers -1]
                              [--max-new-tokens 256] [--papers DIR]

The channel's index gets the 4 evaluation papers (training/eval), then for each N, N different users each ask one
of the evaluation set's answerable questions at the same moment through `Core.ask` (rate limit, retrieval, the
relevance gate, prompt, the worker queue, the batched backend, parsing: everything but the platform's network).
Per round: the median and p95 of the time a user waits for the whole answer and for its first streamed text, and
the round's wall time. The backend decodes `--parallel` questions together (default: the largest N).

Issue 13's target (GPU machine, 8 users): median answer time ≤ 1.2× llama-batched-bench's time for 8 sequences of
the same lengths (its `-npp` the served prompts' length, `-ntg` the replies'; the table gives the replies in words).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import describe  # noqa: E402
from bench.synthetic import DEFAULT_ENCODER  # noqa: E402
from bot.messages import Channel, User  # noqa: E402
from bot.runtime import open_core  # noqa: E402
from bot.settings import Settings  # noqa: E402
from rag_engine.types import Failed, Final, Partial  # noqa: E402
from training.eval import load_questions, load_split  # noqa: E402

CHANNEL = Channel("web", "local", "bench")


@dataclass
class Round:
    users: int
    wall_s: float = 0.0
    answer_s: list[float] = field(default_factory=list)
    first_text_s: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    words: list[int] = field(default_factory=list)


async def ask(core, user: User, question: str, result: Round) -> None:  # noqa: ANN001 (bot.core.Core)
    started = time.perf_counter()
    first = None
    async for event in core.ask(CHANNEL, user, question):
        if isinstance(event, Partial) and first is None and (event.reasoning or event.answer):
            first = time.perf_counter() - started
        elif isinstance(event, Final):
            result.answer_s.append(time.perf_counter() - started)
            result.first_text_s.append(first if first is not None else result.answer_s[-1])
            result.words.append(len(f"{event.answer.reasoning} {event.answer.answer}".split()))
        elif isinstance(event, Failed):
            result.failed.append(event.message)


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)] if values else float("nan")


async def run(args: argparse.Namespace) -> None:
    users = [int(n) for n in args.users.split(",")]
    questions = [q.question for q in load_questions() if q.kind == "answerable"]
    papers = sorted(args.papers / name for name in load_split()["papers"]["evaluation"])
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            _env_file=None, data_dir=Path(tmp), colbert_model=str(args.encoder), llm_model=str(args.gguf),
            device=args.device, n_gpu_layers=args.n_gpu_layers, flash_attn=args.n_gpu_layers != 0,
            parallel=args.parallel or max(users), queue_size=max(64, 2 * max(users)), n_ctx=args.n_ctx,
            max_new_tokens=args.max_new_tokens, temperature=0.0, user_rate_per_minute=60,
        )
        async with open_core(settings, heartbeat=False) as core:
            for paper in papers:
                report = await core.ingest_upload(CHANNEL, User("u0", "bench"), paper.name, paper.read_bytes())
                if report.status != "indexed":
                    raise SystemExit(f"{paper.name}: {report.message}")
            await _warm_up(core, questions[0])
            rounds = []
            for n in users:
                result = Round(n)
                started = time.perf_counter()
                await asyncio.gather(*(ask(core, User(f"u{i + 1}", f"user {i + 1}"), questions[i % len(questions)],
                                           result) for i in range(n)))
                result.wall_s = time.perf_counter() - started
                rounds.append(result)
                print(f"  {n} users: {result.wall_s:.1f} s", file=sys.stderr, flush=True)
            info = core.answerer.backend_info()
    print(describe())
    print(f"\nModel {args.gguf.name} ({info.runs_on}), encoder {args.encoder.name}, {len(papers)} papers, greedy, "
          f"at most {args.max_new_tokens} new tokens, {settings.parallel} questions decoded together.\n")
    print("| users | answered | failed | median answer s | p95 answer s | median first text s | round wall s | "
          "median reply words |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rounds:
        print(f"| {r.users} | {len(r.answer_s)} | {len(r.failed)} | {statistics.median(r.answer_s):.2f} | "
              f"{_p95(r.answer_s):.2f} | {statistics.median(r.first_text_s):.2f} | {r.wall_s:.2f} | "
              f"{statistics.median(r.words):.0f} |")
        for message in sorted(set(r.failed)):
            print(f"|  | failed: {message} | | | | | | |")


async def _warm_up(core, question: str) -> None:  # noqa: ANN001
    """One answer first, so that no round pays for the first decode's allocations."""
    async for _ in core.ask(CHANNEL, User("warm", "warm-up"), question):
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", type=Path, required=True, help="the served model")
    parser.add_argument("--encoder", type=Path, default=DEFAULT_ENCODER, help="ColBERT folder (default: %(default)s)")
    parser.add_argument("--papers", type=Path, default=ROOT.parent / "shared" / "data" / "pdfs" / "real",
                        help="folder holding the evaluation papers (default: %(default)s)")
    parser.add_argument("--users", default="1,8,32", help="concurrent users per round (default: %(default)s)")
    parser.add_argument("--parallel", type=int, help="questions decoded together (default: the largest round)")
    parser.add_argument("--n-gpu-layers", type=int, default=0, help="-1 = all on the GPU (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="the encoder's device (default: %(default)s)")
    parser.add_argument("--n-ctx", type=int, default=4096, help="context per sequence (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="(default: %(default)s)")
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
