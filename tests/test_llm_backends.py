"""The in-process llama.cpp backends on the tiny real GGUF (random weights: mechanics, never wording).

The strongest check of the batched backend's KV-cache and sequence bookkeeping: greedy decoding of the same prompt
gives the same text whether the request runs alone through plain `Llama` or interleaved with others (staggered
admissions, prompts read in small chunks between decoding steps) in one shared llama.cpp context.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from pathlib import Path

import llama_cpp
import pytest

from rag_engine.errors import InvalidQuestion, QueueFull, RequestTimeout
from rag_engine.llm.base import ChatMessage, GenerationRequest
from rag_engine.llm.batch_sequence import BatchSequence
from rag_engine.llm.batched import BatchedLlamaBackend
from rag_engine.llm.factory import create_backend
from rag_engine.llm.llama_cpp_backend import LlamaCppBackend
from rag_engine.llm.openai_http import OpenAIHTTPBackend
from rag_engine.llm.scheduling import PromptsFirst
from rag_engine.worker import GenerationWorker

# Module-scoped backends live on the session's event loop (pyproject: asyncio_default_fixture_loop_scope).
pytestmark = pytest.mark.asyncio(loop_scope="session")

# Prompts whose greedy replies differ from each other on the tiny model (checked in test_flood), so a reply that
# reached the wrong request would show.
PROMPTS = [
    "What is attention?",
    "Explain transformers in detail please",
    "Why is the sky blue",
    "1 2 3 4",
    "¿Qué es un modelo de lenguaje? 日本語",
]


def ask(question: str, max_tokens: int = 48, temperature: float = 0.0, **kwargs) -> GenerationRequest:
    messages = (ChatMessage("system", "You answer questions about papers."), ChatMessage("user", question))
    return GenerationRequest(messages, max_tokens=max_tokens, temperature=temperature, **kwargs)


def make_batched(model: Path, **kwargs) -> BatchedLlamaBackend:
    options = {"parallel": 4, "n_ctx": 2048, "n_gpu_layers": 0, "flash_attn": False}  # as the `settings` fixture
    options.update(kwargs)
    return BatchedLlamaBackend(model, **options)


@pytest.fixture(scope="module")
def gguf(tiny_models: Path) -> Path:
    return tiny_models / "qwen2.gguf"


@pytest.fixture(scope="module")
async def serial(gguf: Path):
    backend = LlamaCppBackend(gguf, n_ctx=2048, n_gpu_layers=0, flash_attn=False)
    await backend.start()
    yield backend
    await backend.close()


@pytest.fixture(scope="module")
async def batched(gguf: Path):
    # Small prompt chunks, so prompts are read over several steps while other sequences decode.
    backend = make_batched(gguf, prefill_chunk=16)
    await backend.start()
    yield backend
    await backend.close()


@pytest.fixture(scope="module")
async def expected(serial: LlamaCppBackend) -> dict[str, str]:
    """Greedy replies of plain `Llama`, one request at a time: the reference."""
    return {prompt: await serial.generate(ask(prompt)) for prompt in PROMPTS}


def assert_idle(backend: BatchedLlamaBackend) -> None:
    """No sequence, KV cell or sampler is left behind."""
    slots = backend._slots
    assert slots.active == [] and not backend._inbox
    assert slots.free_ids == list(range(backend.parallel))
    for seq_id in range(backend.parallel):
        assert llama_cpp.llama_memory_seq_pos_max(slots.mem, seq_id) == -1


async def until(condition, what: str, timeout: float = 10.0) -> None:
    """Wait until `condition()` holds (checked every few milliseconds), failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.005)


async def wait_idle(backend: BatchedLlamaBackend, timeout: float = 5.0) -> None:
    await until(lambda: not backend._slots.active and not backend._inbox, "the model thread did not free the sequences")
    assert_idle(backend)


# --- settings → backend -----------------------------------------------------------------------------------------------
async def test_factory_builds_what_settings_ask_for(settings, gguf):
    batched = create_backend(settings, model_path=gguf)
    assert isinstance(batched, BatchedLlamaBackend)
    assert (batched.parallel, batched.n_ctx, batched.n_gpu_layers) == (4, 2048, 0)
    serial = create_backend(settings.model_copy(update={"batched": False}), model_path=gguf)
    assert isinstance(serial, LlamaCppBackend) and serial.slots == 1
    remote = create_backend(settings.model_copy(update={"llm_backend": "openai", "llm_base_url": "http://127.0.0.1:9/v1"}))
    assert isinstance(remote, OpenAIHTTPBackend) and remote.slots == 4 and remote.model is None


async def test_all_layers_go_to_the_gpu_only_when_the_build_can_offload(gguf):
    offload = llama_cpp.llama_supports_gpu_offload()
    assert make_batched(gguf, n_gpu_layers=-1).n_gpu_layers == (-1 if offload else 0)
    assert LlamaCppBackend(gguf, n_gpu_layers=-1).n_gpu_layers == (-1 if offload else 0)


async def test_info_says_where_the_model_runs(batched, serial):
    info = batched.info()
    assert (info.backend, info.runs_on, info.n_ctx, info.parallel) == ("llama_cpp_batched", "CPU", 2048, 4)
    assert serial.info().parallel == 1 and serial.info().runs_on == "CPU"
    assert batched.count_tokens("hello world") == serial.count_tokens("hello world") == 2


# --- streaming --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["serial", "batched"])
async def test_a_reply_streams_as_several_deltas(which, request):
    backend = request.getfixturevalue(which)
    deltas = [d async for d in backend.stream(ask(PROMPTS[1], max_tokens=48))]
    assert len(deltas) >= 2 and all(deltas)
    assert len("".join(deltas)) > 10


async def test_batched_greedy_equals_serial_greedy_for_concurrent_staggered_requests(batched, expected):
    started = [asyncio.Event() for _ in PROMPTS]

    async def run(i: int, prompt: str) -> str:
        if i:
            await started[i - 1].wait()
        parts = []
        async for delta in batched.stream(ask(prompt)):
            started[i].set()
            parts.append(delta)
        started[i].set()
        return "".join(parts)

    # Each request arrives once the one before it is decoding; five requests on four slots: one waits for a slot.
    steps_before = batched.steps
    replies = await asyncio.gather(*(run(i, p) for i, p in enumerate(PROMPTS)))
    assert replies == [expected[p] for p in PROMPTS]
    # Decoded together: far fewer llama_decode calls than the tokens generated one request at a time.
    assert batched.steps - steps_before < sum(48 for _ in PROMPTS)
    await wait_idle(batched)


async def test_a_request_ending_mid_batch_leaves_the_sequence_ids_contiguous(batched, serial, expected):
    # Per-sequence KV: llama.cpp runs one micro-batch per run of consecutive ids, so when the second of four ends,
    # the fourth moves into its id (its KV stream copied) and must go on exactly as if nothing happened.
    assert not batched.kv_unified
    short = ask(PROMPTS[1], max_tokens=4)
    requests = [ask(PROMPTS[0]), short, ask(PROMPTS[2]), ask(PROMPTS[3])]
    tasks = [asyncio.create_task(batched.generate(r)) for r in requests]  # admitted together: ids 0, 1, 2, 3
    await tasks[1]
    ids = {seq.request.messages[-1].content: seq.seq_id for seq in list(batched._slots.active)}
    assert ids == {PROMPTS[0]: 0, PROMPTS[3]: 1, PROMPTS[2]: 2}
    replies = await asyncio.gather(*tasks)
    assert replies[1] == await serial.generate(short)
    assert [replies[0], *replies[2:]] == [expected[p] for p in (PROMPTS[0], *PROMPTS[2:4])]
    await wait_idle(batched)


async def test_greedy_is_the_same_on_every_sampling_path(gguf, expected):
    for options in ({"sampling": "backend"}, {"sampling": "split"}, {"sampler_threads": 3}):
        backend = make_batched(gguf, **options)
        await backend.start()
        try:
            replies = await asyncio.gather(*(backend.generate(ask(p)) for p in PROMPTS[:4]))
        finally:
            await backend.close()
        assert replies == [expected[p] for p in PROMPTS[:4]], options


async def test_top_k_in_the_graph_samples_what_the_host_chain_samples(gguf, batched):
    # `split` runs the chain's top-k inside llama.cpp's graph and the rest on the host over those 40 candidates:
    # with the same seed it must pick the very tokens the whole chain picks on the host. One request at a time, so
    # that both runs decode identical batches (batch shapes change the float rounding, and so temperature-1 samples).
    requests = [ask(p, temperature=1.0, seed=11 + i) for i, p in enumerate(PROMPTS[:3])]
    on_host = [await batched.generate(r) for r in requests]
    backend = make_batched(gguf, sampling="split")
    await backend.start()
    try:
        split = [await backend.generate(r) for r in requests]
        assert backend.sampling == "split"  # it did not fall back to the host chain
    finally:
        await backend.close()
    assert split == on_host
    assert len(set(on_host)) == 3


async def test_a_seeded_sampled_reply_is_reproducible(batched):
    first = await batched.generate(ask(PROMPTS[0], temperature=1.0, seed=7))
    again = await batched.generate(ask(PROMPTS[0], temperature=1.0, seed=7))
    other = await batched.generate(ask(PROMPTS[0], temperature=1.0, seed=8))
    assert first == again and first != other


@pytest.mark.parametrize("which", ["serial", "batched"])
async def test_a_stop_string_ends_the_reply_just_before_it(which, request, expected):
    backend = request.getfixturevalue(which)
    full = expected[PROMPTS[1]]
    stop = full[12:16]
    reply = await backend.generate(ask(PROMPTS[1], stop=(stop,)))
    assert reply == full[: full.index(stop)]


async def test_max_tokens_bounds_the_reply(batched, serial):
    short = await batched.generate(ask(PROMPTS[1], max_tokens=3))
    assert short == (await serial.generate(ask(PROMPTS[1], max_tokens=3)))
    assert 0 < batched.count_tokens(short) <= 3


async def test_multibyte_characters_split_across_tokens_arrive_whole(gguf):
    backend = make_batched(gguf)
    await asyncio.to_thread(backend._load)  # the vocabulary only; no model thread
    try:
        text = "naïve 🦜 𝔘𝔫𝔦 日本語"
        tokens = backend.tokenize(text)
        pieces = [backend.vocab.token_bytes(t) for t in tokens]
        assert b"".join(pieces).decode() == text
        assert any(_invalid_utf8(p) for p in pieces), "the test needs a character split across tokens"
        seq = BatchSequence(ask("x", max_tokens=len(tokens) + 5), asyncio.get_running_loop())
        for token in tokens:
            backend._on_token(seq, token)
        backend._finish(seq)
        backend._bridge.flush()
        items = [await asyncio.wait_for(seq.queue.get(), 5)]
        while isinstance(items[-1], str):
            items.append(await asyncio.wait_for(seq.queue.get(), 5))
        deltas = items[:-1]
        assert "".join(deltas) == text and not any("\ufffd" in d for d in deltas)
    finally:
        backend._free()


def _invalid_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return True
    return False


async def test_a_prompt_longer_than_the_context_is_refused(batched):
    with pytest.raises(InvalidQuestion):
        await batched.generate(ask("word " * 3000))


# --- cancellation, timeouts, the event loop ---------------------------------------------------------------------------
async def test_closing_a_stream_frees_its_slot_and_kv_cells(gguf):
    backend = make_batched(gguf, parallel=1)
    await backend.start()
    try:
        stream = backend.stream(ask(PROMPTS[0], max_tokens=1500))
        got = [await anext(stream), await anext(stream)]
        assert all(got)
        await stream.aclose()
        # The only slot is free again: the next request runs to its end.
        reply = await asyncio.wait_for(backend.generate(ask(PROMPTS[1], max_tokens=5)), 10)
        assert reply
        await wait_idle(backend)
    finally:
        await backend.close()


async def test_cancelling_through_the_worker_stops_generation(batched):
    async with GenerationWorker(batched, close_backend=False) as worker:
        steps = batched.steps
        handle = worker.submit("c", ask(PROMPTS[0], max_tokens=1500))
        async for _ in handle.stream():
            break  # leaving the loop cancels it
        await until(lambda: handle.state == "cancelled", "the handle was not cancelled")
        await wait_idle(batched)  # the model thread let go of the sequence: nothing left to decode
        assert batched.steps - steps < 500, "the model kept decoding a cancelled request"


async def test_a_timeout_stops_the_generation_and_frees_the_slot(batched):
    async with GenerationWorker(batched, request_timeout_s=0.3, close_backend=False) as worker:
        handle = worker.submit("c", ask(PROMPTS[0], max_tokens=1900))
        with pytest.raises(RequestTimeout):
            await handle.text()
        await wait_idle(batched)


async def test_the_event_loop_keeps_running_during_generation(batched):
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    async with GenerationWorker(batched, close_backend=False) as worker:
        handles = [worker.submit(f"c{i}", ask(p, max_tokens=48)) for i, p in enumerate(PROMPTS[:4])]
        await asyncio.gather(*(h.text() for h in handles))
    elapsed = time.perf_counter() - t0
    stop.set()
    await tick
    assert max(gaps) < 0.25, f"the loop was blocked for {max(gaps):.3f}s"
    assert len(gaps) > elapsed / 0.005 / 4


# --- a flood ----------------------------------------------------------------------------------------------------------
def round_robin(queues: dict[str, list[int]]) -> list[int]:
    """The start order a fair scheduler gives: one from each channel in turn, channels in order of arrival."""
    order: list[int] = []
    pending = {k: list(v) for k, v in queues.items() if v}
    while pending:
        for key in list(pending):
            order.append(pending[key].pop(0))
            if not pending[key]:
                del pending[key]
    return order


@pytest.mark.slow
async def test_flood_of_50_questions_from_5_channels(batched):
    # Each channel asks its own question with its own reply length, so a reply that reached the wrong request shows.
    lengths = {p: 4 + 2 * i for i, p in enumerate(PROMPTS)}
    references = {p: await batched.generate(ask(p, max_tokens=lengths[p])) for p in PROMPTS}
    assert len(set(references.values())) == len(PROMPTS), "channels must get distinct replies to detect a mix-up"
    queue_size = 20

    async def flood() -> tuple[list, list[str], int]:
        async with GenerationWorker(batched, queue_size=queue_size, close_backend=False) as worker:
            accepted, refused = [], 0
            for channel, prompt in enumerate(PROMPTS):  # a burst per channel, one channel after the other
                for _ in range(10):
                    try:
                        accepted.append(worker.submit(f"ch{channel}", ask(prompt, max_tokens=lengths[prompt])))
                    except QueueFull:
                        refused += 1
            waiting = {f"ch{c}": [h.id for h in accepted if h.key == f"ch{c}" and h.state == "queued"] for c in range(5)}
            assert worker.depth == queue_size
            replies = await asyncio.gather(*(h.text() for h in accepted))
            started = [h.id for h in sorted(accepted, key=lambda h: h.started_at)]
            assert started[batched.parallel :] == round_robin(waiting)  # queued ones start fairly
            assert worker.depth == 0 and worker.active == 0
            return accepted, replies, refused

    accepted, replies, refused = await flood()
    assert len(accepted) == batched.parallel + queue_size and refused == 50 - len(accepted)
    for handle, reply in zip(accepted, replies):  # every accepted question got its own answer, once
        assert handle.state == "done"
        assert reply == references[handle.request.messages[-1].content]
    await wait_idle(batched)

    tracemalloc.start()
    await flood()
    first = tracemalloc.get_traced_memory()[0]
    await flood()
    second = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert second - first < 256 * 1024, "memory grows with every flood"
    await wait_idle(batched)


async def test_prompts_are_read_first_but_streams_wait_at_most_the_stall_limit():
    # Scheduling only (no model): generating sequences sit out steps while a prompt is read, so that a burst of
    # questions decodes in full batches, but never longer than max_decode_stall_s.
    schedule = PromptsFirst(max_decode_stall_s=0.25)
    loop = asyncio.get_running_loop()
    generating, reading = BatchSequence(ask("a"), loop), BatchSequence(ask("b"), loop)
    generating.prompt, generating.n_read, generating.seq_id = [1, 2], 2, 1
    reading.prompt, reading.n_read, reading.seq_id = [1, 2, 3], 0, 0
    assert schedule.decoding([generating], now=10.0) == [generating]
    active = [generating, reading]
    assert schedule.decoding(active, now=10.0) == []  # held from 10.0
    assert schedule.decoding(active, now=10.2) == []
    assert schedule.decoding(active, now=10.26) == [generating]  # waited long enough: this step carries both
    assert schedule.decoding(active, now=10.27) == []  # held again from 10.27
    reading.n_read = 3
    assert schedule.decoding(active, now=10.28) == [reading, generating]  # all generating, in seq-id order
