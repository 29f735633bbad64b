"""`python -m training evaluate`: answer quality of GGUF models through the serving path (docs/evaluation.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from training.eval import QUESTIONS, Question, load_questions, qasa_unanswerable

REPO = Path(__file__).resolve().parents[1]
DEFAULT_QASA = Path(os.environ.get("PAPERBOT_SHARED_DIR", REPO.parent / "shared")) / "data" / "qasa"


def subsample(questions: Sequence[Question], limit: int | None) -> list[Question]:
    """The first `limit` questions taken round-robin over papers and off-topic ones (so every group is present)."""
    if limit is None or limit >= len(questions):
        return list(questions)
    groups: dict[str, list[Question]] = defaultdict(list)
    for q in questions:
        groups[q.paper or q.kind].append(q)
    picked: list[Question] = []
    while len(picked) < limit:
        for group in groups.values():
            if group and len(picked) < limit:
                picked.append(group.pop(0))
    order = {q.id: i for i, q in enumerate(questions)}
    return sorted(picked, key=lambda q: order[q.id])


def add_arguments(ev: argparse.ArgumentParser) -> None:
    ev.add_argument("--pdfs", type=Path, required=True, help="folder of PDFs to index (every *.pdf in it)")
    ev.add_argument("--questions", type=Path, default=QUESTIONS, help="JSONL questions (training/eval/README.md)")
    ev.add_argument("--gguf", type=Path, action="append", required=True, help="a model; repeat to compare several")
    ev.add_argument("--grammar", choices=["on", "off", "both"], default="off", help="the reply grammar setting")
    ev.add_argument("--encoder", help="ColBERT checkpoint (default: PAPERBOT_COLBERT_MODEL / the product default)")
    ev.add_argument("--limit", type=int, help="a subsample of this many questions, round-robin over papers")
    ev.add_argument("--qasa", type=Path, default=DEFAULT_QASA, help="QASA folder (README there)")
    ev.add_argument("--qasa-limit", type=int, default=30, help="QASA unanswerable questions to add (0: none)")
    ev.add_argument("--temperature", type=float, default=0.0, help="0: greedy, so runs compare")
    ev.add_argument("--out", type=Path, default=Path("eval-out"), help="results.json, results.md, records.jsonl (as they come), the index")


def run(args: argparse.Namespace) -> int:
    from rag_engine.settings import EngineSettings
    from training.evaluate import Run, evaluate, model_configs, write_outputs

    # A loaded machine must not turn slow replies into timeouts: the harness measures quality, and speed apart.
    overrides: dict[str, object] = {
        "data_dir": args.out / "index",
        "temperature": args.temperature,
        "request_timeout_s": 3600.0,
    }
    if args.encoder:
        overrides["colbert_model"] = args.encoder
    base = EngineSettings(**overrides)  # PAPERBOT_* from the environment apply to the rest (n_ctx, parallel, device…)
    all_questions = load_questions(args.questions)
    questions = subsample(all_questions, args.limit)
    qasa = qasa_unanswerable(args.qasa)[: args.qasa_limit] if args.qasa_limit > 0 else []
    pdfs = sorted(args.pdfs.glob("*.pdf"))
    notes = [
        f"Questions: {len(questions)} of {len(all_questions)} in {args.questions.name}"
        + (" (round-robin subsample over papers and off-topic)" if len(questions) < len(all_questions) else "")
        + f"; {len(qasa)} QASA unanswerable. Index: {len(pdfs)} PDFs from {args.pdfs}; encoder {base.colbert_model};"
        f" retrieval {base.retrieval_mode}, top {base.top_k}; temperature {base.temperature},"
        f" max new tokens {base.max_new_tokens}, n_ctx {base.n_ctx}.",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    progress = args.out / "records.jsonl"
    progress.unlink(missing_ok=True)
    run = Run(pdfs, questions, model_configs(args.gguf, args.grammar), base, qasa, notes, progress)
    results = asyncio.run(evaluate(run))
    command = "python -m training " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    print(write_outputs(args.out, run, results, command))
    return 0


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="an `evaluate --out` folder")


def run_report(args: argparse.Namespace) -> int:
    from training.evaluate import results_from_progress
    from training.report import summarize

    results = results_from_progress(args.out / "records.jsonl")
    done = sum(len(r.records) for r in results)
    print(summarize(results, f"python -m training report {args.out}", [f"From records.jsonl: {done} replies."]))
    return 0
