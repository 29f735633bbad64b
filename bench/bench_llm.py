"""Generation benchmark: llama.cpp's own tools vs llama-cpp-python vs our backends, direct and through the worker.

One job is a question with a ~1,500-token prompt (the real prompt layout, random words in the passages) and 256 new
tokens (temperature 0.2, our default chain). The random-weight GGUF from make_qwen3b_gguf.py never emits an
end-of-turn token, so every job generates exactly its 256 tokens. Measured:

- the GPU's memory bandwidth (device-to-device copy through PyTorch, bytes read + written) and the ceiling it sets
  for one decoding stream: bandwidth / GGUF size (every weight is read once per step);
- llama.cpp natively: `llama-bench` (prompt and generation tokens/s), `llama-batched-bench` at 1/4/8 sequences
  of 1,500 + 256 tokens (no sampling), and `llama-parallel` with N clients of about the same lengths (continuous
  batching, each client sampling with llama.cpp's common sampler: the like-for-like native baseline), each with
  per-sequence and unified KV caches;
- llama-cpp-python's plain `Llama.create_completion` (the "raw" single stream);
- our serial and batched backends at 1/4/8 concurrent jobs, called directly and through GenerationWorker; batched
  variants are named by their options (`batched-per-seq-kv-split-sampling`, see BATCHED_OPTIONS; `-grammar` sends
  the jobs with the reply grammar, see REQUEST_OPTIONS), and for each the model thread's time per step is split
  into batch building, llama_decode, waiting for the GPU, sampling, delivery.

    python bench/bench_llm.py --model qwen-3b-q4_k_m.gguf [--tools build/bin] [--out results.json]

The reply grammar's cost (issue 11: at most 5 % of batched decoding), with and without it at 1 and 8 sequences:

    python bench/bench_llm.py --model qwen-3b-q4_k_m.gguf --concurrency 1,8 --variants batched,batched-grammar \
        --skip bandwidth,native,raw --repeats 3

Prints a table last; `--quick` shrinks everything for a CPU smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# llama.cpp's libraries must load before numpy's: on the H100 image (numpy 2.5 with scipy-openblas) a CUDA model
# load segfaults when numpy came first. llama_cpp imports numpy itself, after loading libllama.
import llama_cpp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag_engine.llm.base import ChatMessage, GenerationRequest, LLMBackend
from rag_engine.prompting import Passage, PromptBudget, build_messages, reply_grammar
from rag_engine.worker import GenerationWorker

WORDS = ["attention", "model", "layer", "token", "sequence", "training", "data", "loss", "gradient", "encoder", "decoder", "head", "embedding", "vector", "query", "key", "value", "softmax", "residual", "normalization", "dropout", "batch", "learning", "rate", "optimizer", "transformer", "retrieval", "passage", "document", "score", "index", "benchmark", "accuracy", "baseline", "dataset", "ablation", "parameter", "memory", "latency", "throughput", "result", "table", "figure", "section", "method", "experiment", "evaluation", "language", "question", "answer", "context", "window", "position", "rotary", "scaling", "law", "compute", "budget", "pretraining", "finetuning", "reward", "policy", "sample", "distribution", "entropy", "temperature"]


@dataclass
class Row:
    name: str
    concurrency: int
    prompt_tokens: int
    new_tokens: int
    wall_s: float  # first request sent → last reply done
    ttft_s: float  # mean time to the first token
    stream_tok_s: float  # mean generation rate of one stream after its first token
    aggregate_tok_s: float  # all new tokens / wall
    decode_phase_tok_s: float | None = None  # new tokens/s while every job decodes (direct batched only)
    note: str = ""
    step_ms: dict[str, float] | None = None  # the batched model thread's time per llama_decode step, by phase


@dataclass
class Report:
    device: str = ""
    model: str = ""
    model_bytes: int = 0
    bandwidth_gbs: float | None = None
    native: list[dict[str, Any]] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# --- jobs -------------------------------------------------------------------------------------------------------------
def job_messages(i: int, words: int) -> tuple[ChatMessage, ...]:
    """A realistic prompt: system prompt, five fenced sources of random words, a question. `i` makes it unique."""
    rng = random.Random(i)
    per = max(1, words // 5)
    passages = [
        Passage(f"Paper {i}-{k}", " ".join(rng.choice(WORDS) for _ in range(per)), page_start=k + 1, page_end=k + 2)
        for k in range(5)
    ]
    budget = PromptBudget(n_ctx=32768, max_new_tokens=512, max_source_tokens=100_000)
    messages, _ = build_messages(f"Job {i}: what do these papers report about attention heads?", passages, budget=budget)
    # a unique first line, so that no path profits from a cached prompt prefix (plain Llama reuses one)
    return (ChatMessage("system", f"(job {i})\n{messages[0].content}"), *messages[1:])


def calibrate_words(count_prompt, target: int) -> int:
    """Words in the passages so that the chat-templated prompt has about `target` tokens."""
    words = target
    for _ in range(4):
        n = count_prompt(job_messages(0, words))
        words = max(5, int(words * target / n))
    return words


def calibrate(model: Path, target: int) -> tuple[int, int]:
    """(words, prompt tokens) for a `target`-token prompt, with the model's vocabulary and chat template."""
    from rag_engine.llm.chat_template import ChatTemplate

    vocab = llama_cpp.Llama(str(model), vocab_only=True, verbose=False)
    template = ChatTemplate(vocab.metadata.get("tokenizer.chat_template"), bos_token="", eos_token="")
    count = lambda m: len(vocab.tokenize(template.render(m).encode(), add_bos=False, special=True))
    words = calibrate_words(count, target)
    return words, count(job_messages(0, words))


async def consume(stream, t0: float) -> tuple[float, float, list[float]]:
    """(first-token time, end time, per-delta times) of one stream, relative to t0."""
    times: list[float] = []
    async for delta in stream:
        if delta:
            times.append(time.perf_counter() - t0)
    return (times[0] if times else float("nan")), time.perf_counter() - t0, times


async def run_jobs(backend: LLMBackend, requests: list[GenerationRequest], via_worker: bool) -> list[tuple]:
    t0 = time.perf_counter()
    if via_worker:
        async with GenerationWorker(backend, queue_size=64, request_timeout_s=3600, close_backend=False) as worker:
            handles = [worker.submit(f"channel-{i}", r) for i, r in enumerate(requests)]
            return await asyncio.gather(*(consume(h.stream(), t0) for h in handles))
    return await asyncio.gather(*(consume(backend.stream(r), t0) for r in requests))


def summarize(name: str, results: list[tuple], prompt_tokens: int, new_tokens: int, per_token_deltas: bool) -> Row:
    firsts = [r[0] for r in results]
    ends = [r[1] for r in results]
    wall = max(ends)
    stream_rates = [(new_tokens - 1) / (end - first) for first, end, _ in results if end > first]
    decode_phase = None
    if per_token_deltas and len(results) > 1:
        lo, hi = max(firsts), min(ends)
        n = sum(sum(1 for t in times if lo < t <= hi) for _, _, times in results)
        decode_phase = n / (hi - lo) if hi > lo else None
    return Row(
        name=name,
        concurrency=len(results),
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        wall_s=wall,
        ttft_s=statistics.fmean(firsts),
        stream_tok_s=statistics.fmean(stream_rates) if stream_rates else 0.0,
        aggregate_tok_s=len(results) * new_tokens / wall,
        decode_phase_tok_s=decode_phase,
    )


# Batched variants are named by their options: "batched" plus any of these, e.g. "batched-per-seq-kv-split-sampling".
BATCHED_OPTIONS: dict[str, dict[str, Any]] = {
    "unified-kv": {"kv_unified": True},  # one KV stream for all sequences (default: one per sequence)
    "per-seq-kv": {"kv_unified": False},
    "cpu-sampling": {"sampling": "cpu"},  # each whole chain on the host (default on a GPU: split)
    "split-sampling": {"sampling": "split"},  # top-k in the graph, the rest of the chain on the host
    "backend-sampling": {"sampling": "backend"},  # the whole chain in the graph
    "1-sampler-thread": {"sampler_threads": 1},
    "chunk512": {"prefill_chunk": 512},  # prompt tokens per step (default on a GPU: 2048)
    "chunk2048": {"prefill_chunk": 2048},
    "no-hold": {"max_decode_stall_s": 0.0},  # mix prompt chunks and decoding in every step (no prompts-first)
    # prompt-lookup speculative decoding (random passages hardly ever get quoted: bench_speculative.py measures it)
    "draft3": {"draft_tokens": 3},
    # the loop's floor: no sampling at all (a fixed token every step), as llama-batched-bench does
    "no-sampling": {"sampling": "cpu"},
}
# Variant flags that change the requests, not the backend: `grammar` sends every job with the reply grammar
# (prompting.reply_grammar: reasoning, a ##### line, an answer; the separator is written at 3/4 of the budget).
REQUEST_OPTIONS = ("grammar",)
# step_ms entries that are counts, not milliseconds
COUNTS = ("steps", "drafted", "accepted", "sampled", "refused")


def batched_variant(name: str, model: Path, **options: Any) -> LLMBackend:
    from rag_engine.llm.batched import BatchedLlamaBackend

    class NoSampling(BatchedLlamaBackend):
        fixed: int | None = None

        def _sample(self, outputs):
            if self.fixed is None:
                self.fixed = self.tokenize(" the")[0]
            return [self.fixed] * len(outputs)

    if not name.startswith("batched"):
        raise ValueError(f"unknown variant {name}")
    rest = name.removeprefix("batched").strip("-")
    grammar = "grammar" in rest.split("-")
    rest = "-".join(part for part in rest.split("-") if part not in REQUEST_OPTIONS)
    for flag, extra in BATCHED_OPTIONS.items():
        if flag in rest:
            options.update(extra)
            rest = rest.replace(flag, "")
    if rest.strip("-"):
        raise ValueError(f"unknown option {rest.strip('-')!r} in {name}; known: {', '.join(BATCHED_OPTIONS)}")
    cls = NoSampling if "no-sampling" in name else BatchedLlamaBackend
    backend = cls(model, **options)
    backend.bench_grammar = grammar  # type: ignore[attr-defined]
    return backend


# --- measurements -----------------------------------------------------------------------------------------------------
def measure_bandwidth() -> float | None:
    """Device-to-device copy of 2 GiB through PyTorch, in a subprocess (its CUDA context stays out of ours)."""
    code = """
import torch
n = 2 << 30
x = torch.empty(n, dtype=torch.uint8, device="cuda"); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
ts = []
for _ in range(20):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record(); y.copy_(x); b.record(); torch.cuda.synchronize(); ts.append(a.elapsed_time(b) / 1e3)
ts.sort(); print(2 * n / ts[len(ts) // 2] / 1e9)
"""
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
        return float(out.stdout.strip().splitlines()[-1])
    except Exception as error:  # no GPU / no torch: the ceiling column stays empty
        print(f"bandwidth: {error}", file=sys.stderr)
        return None


def run_native(
    tools: Path, model: Path, prompt: int, new: int, concurrency: list[int], parallel_prompts: list[str] | None = None,
    repeats: int = 1,
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    bench = tools / "llama-bench"
    if bench.exists():
        out = subprocess.run(
            [str(bench), "-m", str(model), "-ngl", "99", "-fa", "1", "-p", str(prompt), "-n", str(new), "-r", "3",
             "-o", "json"],
            capture_output=True, text=True, errors="replace", timeout=300,
        )
        try:
            for entry in json.loads(out.stdout):
                kind = "prompt" if entry.get("n_prompt") else "generation"
                results.append({"tool": "llama-bench", "kind": kind, "tokens": entry.get("n_prompt") or entry.get("n_gen"),
                                "tok_s": entry.get("avg_ts")})
        except ValueError:
            results.append({"tool": "llama-bench", "error": (out.stdout + out.stderr)[-800:]})
    batched = tools / "llama-batched-bench"
    if batched.exists():
        n_kv = max(concurrency) * (prompt + new) + 256
        for unified in (False, True) * repeats:
            cmd = [str(batched), "-m", str(model), "-c", str(n_kv), "-b", "2048", "-ub", "512", "-ngl", "99",
                   "-fa", "on", "-npp", str(prompt), "-ntg", str(new), "-npl", ",".join(map(str, concurrency)),
                   "--output-format", "jsonl"] + (["-kvu"] if unified else [])
            out = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=600)
            lines = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("{")]
            if not lines:
                results.append({"tool": "llama-batched-bench", "error": (out.stdout + out.stderr)[-800:]})
            for line in lines:
                entry = json.loads(line)
                entry.update(tool="llama-batched-bench", kv_unified=unified)
                results.append(entry)
    parallel = tools / "llama-parallel"
    if parallel.exists() and parallel_prompts:
        n = max(concurrency)
        prompts = tools.parent / "parallel-prompts.txt"
        prompts.write_text("\n".join(parallel_prompts[:n]) + "\n")
        for unified in (False, True) * repeats:
            n_ctx = (n + 1) * (2 * prompt + new + 256)  # one KV stream per client plus its system prompt's, roomy
            cmd = [str(parallel), "-m", str(model), "-ngl", "99", "-fa", "on", "-c", str(n_ctx),
                   "-b", "2048", "-ub", "512", "-np", str(n), "-ns", str(n), "-n", str(new), "-f", str(prompts),
                   "--temp", "0.2", "-kvu" if unified else "-no-kvu"]
            out = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=600, check=False)
            results.append(parse_parallel(out.stdout + out.stderr, n, unified))
    return results


def parse_parallel(log: str, n: int, unified: bool) -> dict[str, Any]:
    """llama-parallel's totals: N clients, continuous batching, each sampling with llama.cpp's common sampler."""
    import re

    totals = dict(re.findall(r"Total (prompt|gen) tokens:\s+(\d+)", log))
    speed = re.search(r"Total speed \(AVG\):\s+speed:\s+([\d.]+)", log)
    if not totals or not speed:
        return {"tool": "llama-parallel", "error": log[-800:]}
    prompt_tokens, gen_tokens = int(totals["prompt"]), int(totals["gen"])
    return {"tool": "llama-parallel", "kv_unified": unified, "pl": n, "prompt_tokens": prompt_tokens,
            "gen_tokens": gen_tokens, "t": (prompt_tokens + gen_tokens) / float(speed.group(1))}


def parallel_prompt_lines(words: int, prompt_tokens: int, n: int) -> list[str]:
    """A line per client for llama-parallel, about as long as our prompts once its ~250-token preamble is added."""
    scaled = max(5, int(words * (prompt_tokens - 280) / prompt_tokens))
    return [" ".join(m.content.replace("\n", " ") for m in job_messages(50_000 + i, scaled)) for i in range(n)]


async def bench_raw_llama(model: Path, messages_for, prompt_tokens: int, new: int, n_ctx: int, report: Report) -> None:
    """llama-cpp-python's plain Llama, one stream, no worker: the 'raw' baseline."""
    from rag_engine.llm.chat_template import ChatTemplate

    llm = llama_cpp.Llama(str(model), n_ctx=n_ctx, n_gpu_layers=-1, flash_attn=True, verbose=False)
    template = ChatTemplate(llm.metadata.get("tokenizer.chat_template"), bos_token="", eos_token="")

    def one(i: int) -> tuple[float, float, list[float]]:
        prompt = template.render(messages_for(i))
        t0 = time.perf_counter()
        times = []
        for chunk in llm.create_completion(prompt, max_tokens=new, temperature=0.2, stream=True):
            if chunk["choices"][0]["text"]:
                times.append(time.perf_counter() - t0)
        return times[0], time.perf_counter() - t0, times

    await asyncio.to_thread(one, 10_000)  # warm-up
    runs = [await asyncio.to_thread(one, 10_001 + k) for k in range(3)]
    best = min(runs, key=lambda r: r[1])
    report.rows.append(summarize("llama-cpp-python Llama (raw)", [best], prompt_tokens, new, False))
    llm.close()


async def bench_backend(
    name: str, backend: LLMBackend, messages_for, prompt_tokens: int, new: int, concurrency: list[int], report: Report,
    direct_per_token: bool, seed_base: int, repeats: int = 1,
) -> None:
    await backend.start()
    try:
        grammar = reply_grammar(new) if getattr(backend, "bench_grammar", False) else None

        def requests(n: int, base: int) -> list[GenerationRequest]:
            return [GenerationRequest(messages_for(base + i), max_tokens=new, temperature=0.2, grammar=grammar)
                    for i in range(n)]

        await run_jobs(backend, requests(1, seed_base), via_worker=False)  # warm-up (graphs, allocations)
        base = seed_base + 100
        for n in concurrency:
            for via_worker in (False, True):
                runs: list[Row] = []
                for _ in range(2 if n == 1 else repeats):  # single streams are short: the better of two
                    timings = getattr(backend, "timings", None)
                    if timings is not None:
                        backend.timings = type(timings)()
                    results = await run_jobs(backend, requests(n, base), via_worker)
                    base += n
                    row = summarize(f"{name} {'worker' if via_worker else 'direct'}", results, prompt_tokens, new,
                                    direct_per_token and not via_worker)
                    if timings is not None:
                        row.step_ms = {"steps": backend.timings.steps, **backend.timings.per_step_ms()}
                        if backend.timings.drafted:  # speculative decoding: drafted and accepted tokens
                            row.step_ms |= {"drafted": backend.timings.drafted, "accepted": backend.timings.accepted}
                        if backend.timings.refused:  # a grammar refused the chain's pick: picked again
                            row.step_ms |= {"sampled": backend.timings.sampled, "refused": backend.timings.refused}
                    runs.append(row)
                runs.sort(key=lambda r: r.wall_s)
                best = runs[0] if n == 1 else runs[len(runs) // 2]  # N>1: the median run
                if len(runs) > 1:
                    best.note = "walls " + " ".join(f"{r.wall_s:.3f}" for r in runs)
                report.rows.append(best)
                steps = ""
                if best.step_ms:
                    steps = " | per step ms: " + ", ".join(
                        f"{k} {v:.3f}" if k not in COUNTS else f"{v} {k}"
                        for k, v in best.step_ms.items())
                print(f"  {best.name:48s} x{n}: wall {best.wall_s:.3f}s, {best.aggregate_tok_s:.0f} tok/s{steps}"
                      f"{' (' + best.note + ')' if best.note else ''}", flush=True)
    finally:
        await backend.close()


# --- report -----------------------------------------------------------------------------------------------------------
def print_table(report: Report, concurrency: list[int]) -> None:
    gb = report.model_bytes / 1e9
    print()
    print(f"device: {report.device}")
    print(f"model: {report.model} ({gb:.2f} GB)")
    if report.bandwidth_gbs:
        ceiling = report.bandwidth_gbs * 1e9 / report.model_bytes
        print(f"memory bandwidth (measured D2D copy): {report.bandwidth_gbs:.0f} GB/s -> one-stream decode ceiling "
              f"{ceiling:.0f} tok/s (weights read once per step); N streams share a step: N x {ceiling:.0f}")
    print()
    print("llama.cpp native")
    for entry in report.native:
        if "error" in entry:
            print(f"  {entry['tool']}: ERROR {entry['error'][-300:]}")
        elif entry["tool"] == "llama-bench":
            print(f"  llama-bench {entry['kind']:10s} {entry['tokens']:5d} tokens: {entry['tok_s']:.1f} tok/s")
        elif entry["tool"] == "llama-parallel":
            kv = "unified KV" if entry["kv_unified"] else "per-seq KV"
            print(f"  llama-parallel {entry['pl']} clients, {entry['prompt_tokens']}+{entry['gen_tokens']} tokens "
                  f"({kv}): T {entry['t']:.3f}s, {entry['gen_tokens'] / entry['t']:.0f} new t/s")
        else:
            kv = "unified KV" if entry["kv_unified"] else "per-seq KV"
            print(f"  llama-batched-bench B={entry['pl']} {entry['pp']}+{entry['tg']} ({kv}): T {entry['t']:.3f}s, "
                  f"S_PP {entry['speed_pp']:.0f} t/s, S_TG {entry['speed_tg']:.0f} t/s, S {entry['speed']:.0f} t/s")
    print()
    header = f"{'path':48s} {'N':>2s} {'prompt':>6s} {'new':>4s} {'wall s':>7s} {'TTFT s':>7s} {'stream t/s':>10s} " \
             f"{'agg new t/s':>11s} {'decode t/s':>10s}"
    print(header)
    print("-" * len(header))
    for row in report.rows:
        phase = f"{row.decode_phase_tok_s:10.0f}" if row.decode_phase_tok_s else f"{'':>10s}"
        print(f"{row.name:48s} {row.concurrency:2d} {row.prompt_tokens:6d} {row.new_tokens:4d} {row.wall_s:7.3f} "
              f"{row.ttft_s:7.3f} {row.stream_tok_s:10.1f} {row.aggregate_tok_s:11.1f} {phase}")
    profiled = [row for row in report.rows if row.step_ms]
    if profiled:
        print()
        print("batched model thread, ms per llama_decode step (build batch | llama_decode call | wait for the device | "
              "sample | deliver text | between steps)")
        for row in profiled:
            ms = row.step_ms
            total = sum(v for k, v in ms.items() if k not in COUNTS)
            drafts = ""
            if ms.get("drafted"):
                rate = ms["accepted"] / ms["drafted"]
                drafts = f"  drafted {int(ms['drafted'])}, accepted {int(ms['accepted'])} ({rate:.0%})"
            if ms.get("refused"):
                drafts += f"  grammar refused {int(ms['refused'])} of {int(ms['sampled'])} picks"
            print(f"  {row.name:46s} x{row.concurrency}: {int(ms['steps']):4d} steps  " + "  ".join(
                f"{ms[k]:6.3f}" for k in ("build", "decode", "wait", "sample", "deliver", "between"))
                + f"  = {total:6.3f}{drafts}")
    # the two targets. "Raw" single stream: llama.cpp itself (batched-bench B=1), and llama-cpp-python's Llama.
    raw = next((r for r in report.rows if r.name.startswith("llama-cpp-python")), None)
    native_1 = median_native(report, "llama-batched-bench", 1, unified=False)
    print()
    for row in report.rows:
        if row.concurrency != 1 or not row.name.endswith("worker"):
            continue
        direct = next((r for r in report.rows if r.concurrency == 1 and r.name == row.name[: -len("worker")] + "direct"), None)
        parts = []
        if direct:
            parts.append(f"vs the same backend called directly {100 * (row.wall_s / direct.wall_s - 1):+.1f}%")
        if native_1:
            parts.append(f"vs llama.cpp B=1 ({native_1['t']:.3f}s) {100 * (row.wall_s / native_1['t'] - 1):+.1f}%")
        if raw:
            parts.append(f"vs llama-cpp-python Llama ({raw.wall_s:.3f}s) {100 * (row.wall_s / raw.wall_s - 1):+.1f}%")
        print(f"{row.name} x1 wall {row.wall_s:.3f}s: " + "; ".join(parts))
    for unified in (False, True):
        ref = median_native(report, "llama-parallel", max(concurrency), unified)
        if not ref:
            continue
        for row in report.rows:
            if row.concurrency == ref["pl"] and "batched" in row.name:
                print(f"{row.name} x{row.concurrency} vs llama-parallel ({'unified' if unified else 'per-seq'} KV, "
                      f"{ref['prompt_tokens'] // ref['pl']}+{ref['gen_tokens'] // ref['pl']} per client): "
                      f"wall {row.wall_s:.3f}s vs T {ref['t']:.3f}s ({100 * (row.wall_s / ref['t'] - 1):+.1f}%)")
    for unified in (False, True):
        ref = median_native(report, "llama-batched-bench", max(concurrency), unified)
        if not ref:
            continue
        for row in report.rows:
            if row.concurrency == max(concurrency) and "batched" in row.name:
                print(f"{row.name} x{row.concurrency} vs llama-batched-bench ({'unified' if unified else 'per-seq'} KV): "
                      f"wall {row.wall_s:.3f}s vs T {ref['t']:.3f}s ({100 * (row.wall_s / ref['t'] - 1):+.1f}%)")


def median_native(report: Report, tool: str, n: int, unified: bool) -> dict[str, Any] | None:
    """The median run (by time) of a native tool at n sequences, over the repeats."""
    runs = sorted((e for e in report.native if e.get("tool") == tool and "t" in e and e.get("pl") == n
                   and e.get("kv_unified") == unified), key=lambda e: e["t"])
    return runs[len(runs) // 2] if runs else None


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--tools", type=Path, help="folder with llama-bench and llama-batched-bench")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--prompt-tokens", type=int, default=1500)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--variants", default="serial,batched,batched-backend-sampling,batched-per-seq-kv",
                        help="which of our backends to run (comma-separated)")
    parser.add_argument("--skip", default="", help="comma-separated: bandwidth,native,raw")
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: tiny sizes")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each native tool and of each of our N>1 measurements; the median is compared")
    parser.add_argument("--calibrate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--merge", nargs="+", type=Path, help="print one table from several --out files")
    args = parser.parse_args(argv)
    if args.merge:
        merged = Report()
        for path in args.merge:
            if not path.exists():
                merged.errors.append(f"{path.name}: missing (that run crashed?)")
                continue
            data = json.loads(path.read_text())
            for key in ("device", "model", "model_bytes", "bandwidth_gbs"):
                setattr(merged, key, getattr(merged, key) or data[key])
            merged.native += data["native"]
            merged.rows += [Row(**row) for row in data["rows"]]
            merged.errors += data["errors"]
        for error in merged.errors:
            print("ERROR", error)
        print_table(merged, [int(c) for c in args.concurrency.split(",")])
        if args.out:
            args.out.write_text(json.dumps(asdict(merged), indent=2))
        return
    if args.calibrate:
        print(json.dumps(calibrate(args.model, args.calibrate)))
        return
    if args.quick:
        args.prompt_tokens, args.new_tokens, args.concurrency = 200, 16, "1,2"
    concurrency = [int(c) for c in args.concurrency.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    gpu = not args.quick
    report = Report(model=args.model.name, model_bytes=args.model.stat().st_size)
    try:
        report.device = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                                       capture_output=True, text=True, timeout=30).stdout.strip() or "CPU"
    except OSError:
        report.device = "CPU"

    from rag_engine.llm.llama_cpp_backend import LlamaCppBackend

    print(f"llama.cpp GPU offload: {llama_cpp.llama_supports_gpu_offload()}", flush=True)
    if "bandwidth" not in skip and gpu:
        report.bandwidth_gbs = measure_bandwidth()

    n_ctx = args.prompt_tokens + args.new_tokens + 512
    ngl = -1 if gpu else 0
    # Calibrate the prompt size with the model's own tokenizer and template, in a child process: a vocabulary-only
    # Llama in this process left CUDA model loads that followed it crashing (llama-cpp-python 0.3.36, H100).
    calibration = subprocess.run(
        [sys.executable, __file__, "--model", str(args.model), "--calibrate", str(args.prompt_tokens)],
        capture_output=True, text=True, check=True,
    )
    words, prompt_tokens = json.loads(calibration.stdout.strip().splitlines()[-1])
    messages_for = lambda i: job_messages(i, words)
    print(f"prompt: {prompt_tokens} tokens ({words} words of passages)", flush=True)
    if "native" not in skip and args.tools:
        report.native = run_native(args.tools, args.model, args.prompt_tokens, args.new_tokens, concurrency,
                                   parallel_prompt_lines(words, prompt_tokens, max(concurrency)), args.repeats)

    if "raw" not in skip:
        try:
            await bench_raw_llama(args.model, messages_for, prompt_tokens, args.new_tokens, n_ctx, report)
        except Exception as error:
            report.errors.append(f"raw: {error!r}")
    def make_backend(name: str) -> LLMBackend:
        if name == "serial":
            return LlamaCppBackend(args.model, n_ctx=n_ctx, n_gpu_layers=ngl, flash_attn=gpu)
        return batched_variant(name, args.model, parallel=max(concurrency), n_ctx=n_ctx, n_gpu_layers=ngl,
                               flash_attn=gpu)

    for k, name in enumerate(filter(None, args.variants.split(","))):
        print(f"{name}:", flush=True)
        try:
            backend = make_backend(name)
            await bench_backend(name, backend, messages_for, prompt_tokens, args.new_tokens, concurrency, report,
                                direct_per_token=name.startswith("batched"), seed_base=1000 * (k + 1),
                                repeats=args.repeats)
        except Exception as error:
            report.errors.append(f"{name}: {error!r}")
            print(f"  FAILED: {error!r}", flush=True)

    for error in report.errors:
        print("ERROR", error)
    print_table(report, concurrency)
    if args.out:
        args.out.write_text(json.dumps(asdict(report), indent=2))


if __name__ == "__main__":
    asyncio.run(main())
