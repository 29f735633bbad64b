"""Prompt-lookup speculative decoding in the batched backend: drafts change how many steps a reply takes, never the
reply (greedy or seeded, with or without the reply grammar), and no token goes out past an end.

The tiny random GGUF proves the mechanics (its replies repeat themselves, so drafts are accepted often); the real
Qwen2.5-Coder-0.5B, when it is in the test cache, shows a real quote of the prompt being drafted and accepted.
Every step of the backends with drafts checks that the KV cache holds exactly the tokens each sequence has decoded:
a rejected draft left in the cache would fail it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import llama_cpp
import pytest

from rag_engine.llm.batched import BatchedLlamaBackend
from rag_engine.llm.factory import create_backend
from rag_engine.prompting import reply_grammar, split_answer
from tests.conftest import real_models_cache
from tests.test_llm_backends import ask, wait_idle

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSAGE = (
    "The Transformer is the first transduction model relying entirely on self-attention to compute representations "
    "of its input and output without using sequence-aligned RNNs or convolution."
)
# (question, max_tokens): quoting prompts and others, of different reply lengths
JOBS = [
    (f"Repeat this sentence exactly: {PASSAGE}", 40),
    (f"Quote the source word for word. Source: {PASSAGE} {PASSAGE}", 64),
    ("What is attention?", 24),
    ("1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16", 56),
    ("Why is the sky blue", 12),
]


class CheckedBackend(BatchedLlamaBackend):
    """Records each request's tokens, and checks after every step that each sequence's KV cells end right before
    its next position (no rejected draft left behind, no accepted one missing)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.emitted: dict[int, list[int]] = {}  # id(request) → tokens handed to _on_token, ends included
        self.emitted_at: dict[int, list[int]] = {}  # id(request) → the step of each of those tokens

    def _on_token(self, seq, token) -> None:
        self.emitted.setdefault(id(seq.request), []).append(token)
        self.emitted_at.setdefault(id(seq.request), []).append(self.timings.steps)
        super()._on_token(seq, token)

    def _step(self) -> None:
        super()._step()
        for seq in self._slots.active:
            assert llama_cpp.llama_memory_seq_pos_max(self._slots.mem, seq.seq_id) == seq.n_past - 1


def make(model: Path, cls: type[BatchedLlamaBackend] = CheckedBackend, **kwargs) -> BatchedLlamaBackend:
    # Small prompt chunks, so prompts are read over several steps while other sequences decode (and draft).
    options = {"parallel": 4, "n_ctx": 2048, "n_gpu_layers": 0, "flash_attn": False, "prefill_chunk": 16}
    options.update(kwargs)
    return cls(model, **options)


@pytest.fixture(scope="module")
def gguf(tiny_models: Path) -> Path:
    return tiny_models / "qwen2.gguf"


@pytest.fixture(scope="module")
async def off(gguf: Path):
    backend = make(gguf, BatchedLlamaBackend)
    await backend.start()
    yield backend
    await backend.close()


@pytest.fixture(scope="module")
async def on(gguf: Path):
    backend = make(gguf, draft_tokens=4)
    await backend.start()
    yield backend
    await backend.close()


async def together(backend: BatchedLlamaBackend, requests) -> list[str]:
    """The requests sent a few milliseconds apart (staggered admissions), all decoding together."""

    async def one(i: int, request) -> str:
        await asyncio.sleep(0.01 * i)
        return await backend.generate(request)

    return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))


# --- same replies -----------------------------------------------------------------------------------------------------
async def test_greedy_replies_are_the_same_with_and_without_drafts(on, off):
    requests = [ask(q, max_tokens=n) for q, n in JOBS]
    expected = await together(off, requests)
    before = on.timings.accepted
    assert await together(on, requests) == expected
    assert on.timings.accepted > before, "no draft token was accepted: the test proves nothing"
    await wait_idle(on)


async def test_a_seeded_sampled_reply_is_the_same_with_and_without_drafts(on, off):
    # Rows are sampled one by one while the draft holds, so the chain's random stream moves once per kept token.
    for i, (question, n) in enumerate(JOBS[:3]):
        request = ask(question, max_tokens=n, temperature=1.0, seed=5 + i)
        assert await on.generate(request) == await off.generate(request)


@pytest.mark.parametrize("sampling", ["split", "backend"])
async def test_greedy_is_the_same_when_the_graph_samples(gguf, off, sampling):
    requests = [ask(q, max_tokens=n) for q, n in JOBS[:4]]
    expected = await together(off, requests)
    backend = make(gguf, draft_tokens=4, sampling=sampling)
    await backend.start()
    try:
        assert await together(backend, requests) == expected
        assert backend.sampling == sampling and backend.timings.accepted > 0
    finally:
        await backend.close()


async def test_grammar_replies_are_the_same_and_still_parse(on, off):
    before = on.timings.accepted
    for temperature, seed in ((0.0, None), (0.8, 3)):
        grammar = reply_grammar(48)
        requests = [ask(q, max_tokens=48, temperature=temperature, seed=seed, grammar=grammar) for q, _ in JOBS]
        replies = await together(on, requests)
        assert replies == await together(off, requests)
        for reply in replies:
            reasoning, answer, separated = split_answer(reply)
            assert separated and reasoning and answer, reply
    assert on.timings.accepted > before
    await wait_idle(on)


# --- ends inside an accepted draft ------------------------------------------------------------------------------------
def full_drafts(backend: BatchedLlamaBackend):
    """`_draft` without its room check: drafts run past max_tokens, so only the per-token checks stop a reply."""

    def draft(seq):
        return seq.lookup.draft(backend.draft_tokens) if seq.lookup is not None else []

    return draft


async def test_max_tokens_holds_when_a_step_accepts_several_tokens(on, off, monkeypatch):
    monkeypatch.setattr(on, "_draft", full_drafts(on))
    on.emitted.clear()  # keyed by id(): entries of requests gone may share it
    on.emitted_at.clear()
    question = JOBS[0][0]  # its tiny-model reply repeats one word: long accepted drafts
    before = on.timings.accepted
    for max_tokens in (1, 2, 3, 5, 9, 17):
        request = ask(question, max_tokens=max_tokens)
        reply = await on.generate(request)
        assert reply == await off.generate(request)
        assert len(on.emitted.pop(id(request))) == max_tokens  # never a token past the budget
    assert on.timings.accepted > before
    await wait_idle(on)


async def test_an_end_token_inside_an_accepted_draft_ends_the_reply(on, off, monkeypatch):
    monkeypatch.setattr(on, "_draft", full_drafts(on))
    on.emitted.clear()  # keyed by id(): entries of requests gone may share it
    on.emitted_at.clear()
    request = ask(JOBS[0][0], max_tokens=40)
    await on.generate(request)
    tokens = on.emitted.pop(id(request))
    steps = on.emitted_at.pop(id(request))
    # a token accepted from a draft with more accepted after it in the same step: it is made the end

    end = next(i for i in range(1, len(steps) - 1) if steps[i - 1] == steps[i] == steps[i + 1])

    def nth_is_the_end(counts: dict[int, int]):
        def is_eog(token: int) -> bool:  # called once per token handed on, one request at a time
            counts[0] = counts.get(0, 0) + 1
            return counts[0] == end + 1

        return is_eog

    for backend in (on, off):
        monkeypatch.setattr(backend.vocab, "is_eog", nth_is_the_end({}))
    reply = await on.generate(request)
    assert reply == await off.generate(request)
    assert on.emitted.pop(id(request)) == tokens[: end + 1]  # nothing after the end was handed on
    await wait_idle(on)


async def test_a_stop_string_inside_an_accepted_draft_ends_the_reply(on, off):
    question, n = JOBS[1]
    full = await off.generate(ask(question, max_tokens=n))
    stop = full[20:26]
    request = ask(question, max_tokens=n, stop=(stop,))
    reply = await on.generate(request)
    assert reply == await off.generate(request) == full[: full.index(stop)]
    await wait_idle(on)


# --- settings ---------------------------------------------------------------------------------------------------------
async def test_the_settings_turn_drafts_on_and_size_them(settings, gguf):
    assert create_backend(settings, model_path=gguf).draft_tokens == 0  # off by default
    on = create_backend(settings.model_copy(update={"speculative": True}), model_path=gguf)
    assert on.draft_tokens == 3
    bigger = create_backend(settings.model_copy(update={"speculative": True, "draft_tokens": 6}), model_path=gguf)
    assert bigger.draft_tokens == 6


# --- a real quote -----------------------------------------------------------------------------------------------------
@pytest.mark.slow
async def test_a_real_model_quoting_its_prompt_accepts_most_drafts():
    model = real_models_cache() / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    if not model.exists():
        pytest.skip(f"{model} is not in the test cache (python -m training.real_models --qwen)")
    request = ask(JOBS[0][0], max_tokens=32)
    replies = {}
    for draft_tokens in (0, 3):
        backend = make(model, draft_tokens=draft_tokens, prefill_chunk=512)
        await backend.start()
        try:
            replies[draft_tokens] = await backend.generate(request)
        finally:
            await backend.close()
    assert replies[3] == replies[0]
    assert "self-attention" in replies[0]  # it did quote the passage
    timings = backend.timings
    assert timings.drafted >= 10 and timings.acceptance is not None and timings.acceptance >= 0.5
