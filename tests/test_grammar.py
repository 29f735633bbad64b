"""Replies constrained by the reply grammar (issue 11): reasoning, a `#####` line, then an answer, every time.

On the tiny random-weight Qwen2 (which never writes the separator by itself, so only the grammar and the closing
text the backends write at the end of the budget can put it there), through both in-process backends, and through an
OpenAI-compatible server (a mock for the refusal path).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from rag_engine.llm.base import Grammar, GenerationRequest
from rag_engine.llm.batched import BatchedLlamaBackend
from rag_engine.llm.grammar import Closer
from rag_engine.llm.llama_cpp_backend import LlamaCppBackend
from rag_engine.llm.openai_http import OpenAIHTTPBackend
from rag_engine.prompting import SEPARATOR, Passage, build_prompt, parse_answer, reply_grammar

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUESTIONS = ["What is attention?", "Explain transformers in detail please", "Why is the sky blue", "1 2 3 4"]
PASSAGES = [Passage("Attention Is All You Need", "Self-attention relates the positions of one sequence.", 3, 4)]
MAX_TOKENS = 40


def requests(
    grammar: bool = True, temperature: float = 0.0, max_tokens: int = MAX_TOKENS, questions: list[str] = QUESTIONS
) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            build_prompt(q, PASSAGES).messages,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=5 + i,
            grammar=reply_grammar(max_tokens) if grammar else None,
        )
        for i, q in enumerate(questions)
    ]


def assert_formatted(reply: str) -> None:
    reasoning, _, answer = reply.partition(f"\n{SEPARATOR}\n")
    assert answer, f"no separator line: {reply!r}"
    assert reasoning.strip() and "#" not in reasoning
    parsed = parse_answer(reply, ())
    assert parsed.reasoning and parsed.answer


@pytest.fixture(scope="module")
def gguf(tiny_models: Path) -> Path:
    return tiny_models / "qwen2.gguf"


@pytest.fixture(scope="module")
async def batched(gguf: Path):
    backend = BatchedLlamaBackend(gguf, parallel=4, n_ctx=2048, n_gpu_layers=0, flash_attn=False)
    await backend.start()
    yield backend
    await backend.close()


@pytest.fixture(scope="module")
async def greedy_batched(batched: BatchedLlamaBackend) -> list[str]:
    return await asyncio.gather(*(batched.generate(r) for r in requests()))


async def test_without_the_grammar_the_tiny_model_writes_no_separator(batched):
    # what makes the tests below able to fail: left alone, the random model never writes the format
    replies = await asyncio.gather(*(batched.generate(r) for r in requests(grammar=False)))
    assert not any(SEPARATOR in r for r in replies)


async def test_every_batched_reply_has_the_format(greedy_batched):
    for reply in greedy_batched:
        assert_formatted(reply)


async def test_sampled_batched_replies_have_the_format(batched):
    replies = await asyncio.gather(*(batched.generate(r) for r in requests(temperature=1.0)))
    for reply in replies:
        assert_formatted(reply)


async def test_a_short_budget_still_reaches_the_answer(batched):
    replies = await asyncio.gather(*(batched.generate(r) for r in requests(max_tokens=16)))
    for reply in replies:
        assert_formatted(reply)


async def test_serial_and_batched_agree_under_greedy_decoding(gguf, greedy_batched):
    serial = LlamaCppBackend(gguf, n_ctx=2048, n_gpu_layers=0, flash_attn=False)
    await serial.start()
    try:
        replies = [await serial.generate(r) for r in requests()]
    finally:
        await serial.close()
    assert replies == greedy_batched


async def test_graph_side_sampling_keeps_a_top_k_cut_for_grammar_requests(gguf, greedy_batched):
    # With top-k in the graph, a grammar request's chain and grammar run on the host over the graph's cut only (no
    # vocabulary-wide scan each step). Greedy picks what the host-side path picks while the cut holds an allowed
    # token; the tiny model's capped reasoning ends in a state where only the separator's own tokens are allowed and
    # none is in its cut, where the backend goes on with the closing text instead: the reasoning is the same, the
    # separator's tokenization (and so what follows) may differ.
    backend = BatchedLlamaBackend(gguf, parallel=4, n_ctx=2048, n_gpu_layers=0, flash_attn=False, sampling="split")
    await backend.start()
    try:
        plain, *constrained = await asyncio.gather(
            backend.generate(requests(grammar=False)[0]), *(backend.generate(r) for r in requests())
        )
        assert backend.sampling == "split"
        assert all(s.backend_sampler is None for s in backend._slots.active)
    finally:
        await backend.close()
    assert SEPARATOR not in plain
    for reply, on_host in zip(constrained, greedy_batched, strict=True):
        assert_formatted(reply)
        assert reply.partition(f"\n{SEPARATOR}\n")[0] == on_host.partition(f"\n{SEPARATOR}\n")[0]


async def test_a_rejected_pick_is_repicked_from_the_best_candidates_without_a_vocabulary_scan(gguf, monkeypatch):
    # the grammar filters the whole vocabulary (30-60 ms for Qwen's 152k) only when the best candidates hold
    # too few allowed tokens; for the tiny model under greedy decoding, only at the capped reasoning's end, where
    # nothing but the separator is allowed
    from rag_engine.llm import sampling

    sizes: list[int] = []
    filter_ = sampling.SequenceSampler._filter
    monkeypatch.setattr(sampling.SequenceSampler, "_filter", lambda self, data: sizes.append(len(data)) or filter_(self, data))
    backend = BatchedLlamaBackend(gguf, parallel=4, n_ctx=2048, n_gpu_layers=0, flash_attn=False, sampling="cpu")
    await backend.start()
    try:
        replies = await asyncio.gather(*(backend.generate(r) for r in requests(max_tokens=64)))
    finally:
        await backend.close()
    for reply in replies:
        assert_formatted(reply)
    cut = [n for n in sizes if n == sampling.GRAMMAR_TOP_K]
    # every re-pick (one filtering of the best candidates each) is counted for the benchmarks, against the picks
    # the chains made (at most 64 tokens a reply)
    assert backend.timings.refused == len(cut)
    assert backend.timings.refused < backend.timings.sampled <= len(replies) * 64
    assert cut, "the tiny model's picks were never rejected: the test needs rejections"
    # vocabulary scans only while the separator is being written (at most one a character of it, a reply)
    assert len(sizes) - len(cut) <= len(replies) * len(f"\n{SEPARATOR}\n")


# --- the closing text -------------------------------------------------------------------------------------------------
def chars(text: str) -> list[int]:
    """A tokenizer of one token per character, to follow the closing text's steps."""
    return [ord(c) for c in text]


CLOSING = Grammar("", closing="\n#####\n", reserve=2)


async def test_the_closing_text_starts_when_only_the_reserve_is_left():
    closer = Closer(CLOSING, chars, max_tokens=20)
    assert closer.start_at == 20 - 2 - 7
    closer.saw("Some reasoning")
    assert closer.next_token(10, at_char_boundary=True) is None
    assert closer.next_token(11, at_char_boundary=False) is None  # a character is half-written: wait
    written = ""
    for n in range(11, 18):
        token = closer.next_token(n, at_char_boundary=True)
        written += chr(token)
        closer.saw(chr(token))
    assert written == "\n#####\n" and closer.done
    assert closer.next_token(18, at_char_boundary=True) is None


async def test_a_closing_text_the_reply_began_is_completed_not_restarted():
    # the model (or the grammar's cap on the reasoning) may have begun the separator: only the rest is written
    closer = Closer(CLOSING, chars, max_tokens=20)
    closer.saw("reasoning\n##")
    assert closer.next_token(15, at_char_boundary=True) == ord("#")
    closer.saw("###\n")
    assert closer.done


async def test_no_closing_text_once_the_reply_holds_it():
    closer = Closer(CLOSING, chars, max_tokens=20)
    closer.saw("why\n#####")
    closer.saw("\nbecause")
    assert closer.next_token(15, at_char_boundary=True) is None


# --- an OpenAI-compatible server --------------------------------------------------------------------------------------
async def test_the_grammar_goes_to_the_server_and_is_dropped_where_refused():
    bodies: list[dict] = []

    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        body = json.loads(request.content)
        bodies.append(body)
        if "grammar" in body:
            return httpx.Response(400, json={"error": {"message": "Unrecognized request argument: grammar"}})
        return httpx.Response(200, text='data: {"choices": [{"delta": {"content": "free"}}]}\n\ndata: [DONE]\n\n')

    backend = OpenAIHTTPBackend("http://model.test/v1", transport=httpx.MockTransport(serve))
    await backend.start()
    try:
        request = requests()[0]
        assert await backend.generate(request) == "free"
        assert bodies[0]["grammar"] == request.grammar.gbnf and "grammar" not in bodies[1]
        assert backend.grammar_accepted is False
        assert await backend.generate(request) == "free"
        assert len(bodies) == 3 and "grammar" not in bodies[2]  # not offered again
    finally:
        await backend.close()


# --- the setting ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("grammar", ["on", "off"])
async def test_the_setting_decides_whether_answers_use_the_grammar(settings, grammar):
    from bot.messages import Channel, Final, User
    from bot.runtime import open_core
    from tests.conftest import EDGE_PDFS

    channel, user = Channel("discord", "1", "10"), User("alice", "Alice")
    async with open_core(settings.model_copy(update={"llm_grammar": grammar}), heartbeat=False) as core:
        sent: list[GenerationRequest] = []
        submit = core.answerer.worker.submit

        def spy(key: str, request: GenerationRequest):  # type: ignore[no-untyped-def]
            sent.append(request)
            return submit(key, request)

        core.answerer.worker.submit = spy  # type: ignore[method-assign]
        await core.ingest_upload(channel, user, "ok.pdf", (EDGE_PDFS / "ok_minimal.pdf").read_bytes())
        events = [e async for e in core.ask(channel, user, "What does the minimal document say?")]
    [request] = sent
    final = events[-1]
    assert isinstance(final, Final)
    if grammar == "on":
        assert request.grammar == reply_grammar(settings.max_new_tokens)
        assert final.answer.reasoning and final.answer.answer  # the random model's reply has the format
    else:
        assert request.grammar is None and not final.answer.reasoning  # left alone it never writes the separator


# --- a real instruct model --------------------------------------------------------------------------------------------
@pytest.mark.slow
async def test_smollm2_replies_have_the_format_and_both_backends_agree(smollm2_gguf: Path):
    # A real model writes real text: the grammar must shape it without breaking it (each reply parses into
    # non-empty reasoning and answer), and greedy decoding gives the same replies in both in-process backends.
    few = QUESTIONS[:2]  # prompts take seconds to read on 2 cores
    batched = BatchedLlamaBackend(smollm2_gguf, parallel=4, n_ctx=2048, n_gpu_layers=0, flash_attn=False)
    await batched.start()
    try:
        constrained = await asyncio.gather(*(batched.generate(r) for r in requests(max_tokens=48, questions=few)))
    finally:
        await batched.close()
    for reply in constrained:
        assert_formatted(reply)
    serial = LlamaCppBackend(smollm2_gguf, n_ctx=2048, n_gpu_layers=0, flash_attn=False)
    await serial.start()
    try:
        assert [await serial.generate(r) for r in requests(max_tokens=48, questions=few)] == constrained
    finally:
        await serial.close()
