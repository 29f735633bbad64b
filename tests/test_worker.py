"""The generation queue's mechanics, against a scripted backend (a subclass of our own LLMBackend).

Fairness, positions, bounds, timeouts and cancellation do not depend on the model; the real llama.cpp path
through the same worker is in test_llm_backends.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rag_engine.errors import QueueFull, RequestTimeout
from rag_engine.llm.base import BackendInfo, ChatMessage, GenerationRequest, LLMBackend
from rag_engine.worker import GenerationWorker


class ScriptedBackend(LLMBackend):
    """Streams `request.max_tokens` deltas "<question>:<i> ", one per `step_s`, recording starts and cancellations."""

    def __init__(self, slots: int = 1, step_s: float = 0.005) -> None:
        self.slots = slots
        self.step_s = step_s
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []
        self.open_streams = 0
        self.max_open = 0
        self.gate: asyncio.Event | None = None  # when set, streams wait for it before their first delta

    def info(self) -> BackendInfo:
        return BackendInfo("scripted", "script", "nowhere", 1024, self.slots)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        question = request.messages[-1].content
        self.started.append(question)
        self.open_streams += 1
        self.max_open = max(self.max_open, self.open_streams)
        try:
            if self.gate is not None:
                await self.gate.wait()
            for i in range(request.max_tokens):
                await asyncio.sleep(self.step_s)
                yield f"{question}:{i} "
            self.finished.append(question)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled.append(question)
            raise
        finally:
            self.open_streams -= 1


def ask(question: str, tokens: int = 3) -> GenerationRequest:
    return GenerationRequest((ChatMessage("user", question),), max_tokens=tokens)


# Fixtures run on the session's event loop (pyproject: asyncio_default_fixture_loop_scope); tests share it.
pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def make_worker():
    workers: list[GenerationWorker] = []

    async def make(backend: LLMBackend, **kwargs) -> GenerationWorker:
        worker = GenerationWorker(backend, **kwargs)
        await worker.start()
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        await worker.close()


async def test_stream_gives_the_whole_reply_and_frees_the_slot(make_worker):
    backend = ScriptedBackend()
    worker = await make_worker(backend)
    handle = worker.submit("c1", ask("q", tokens=4))
    assert await handle.text() == "q:0 q:1 q:2 q:3 "
    assert handle.state == "done" and worker.active == 0 and worker.depth == 0


async def test_slots_round_robin_over_channels_and_positions_follow_that_order(make_worker):
    backend = ScriptedBackend(slots=1)
    backend.gate = asyncio.Event()
    worker = await make_worker(backend, queue_size=20)
    first = worker.submit("A", ask("A0"))  # starts at once: the slot is free
    handles = [worker.submit("A", ask(f"A{i}")) for i in range(1, 5)]
    handles += [worker.submit("B", ask(f"B{i}")) for i in range(2)]
    handles += [worker.submit("C", ask(f"C{i}")) for i in range(2)]
    assert first.position == 0 and first.state == "generating"
    by_question = {h.request.messages[-1].content: h for h in handles}
    expected = ["A1", "B0", "C0", "A2", "B1", "C1", "A3", "A4"]
    assert [q for q, _ in sorted(((q, h.position) for q, h in by_question.items()), key=lambda x: x[1])] == expected
    assert sorted(h.position for h in handles) == list(range(1, 9))
    assert worker.depth == 8

    backend.gate.set()
    await asyncio.gather(first.text(), *(h.text() for h in handles))
    assert backend.started == ["A0", *expected]
    assert backend.max_open == 1


async def test_queue_positions_stream_counts_down_to_the_start(make_worker):
    backend = ScriptedBackend(slots=1, step_s=0.01)
    worker = await make_worker(backend)
    worker.submit("A", ask("A0", tokens=2))
    worker.submit("A", ask("A1", tokens=2))
    last = worker.submit("B", ask("B0", tokens=2))
    seen = [p async for p in last.queue_positions()]
    assert seen == [2, 1]
    assert last.state == "generating"
    assert await last.text() == "B0:0 B0:1 "


async def test_a_full_queue_refuses_with_queue_full_and_one_channel_cannot_fill_it(make_worker):
    backend = ScriptedBackend(slots=1)
    backend.gate = asyncio.Event()
    worker = await make_worker(backend, queue_size=4, per_key_limit=2)
    worker.submit("A", ask("running"))
    worker.submit("A", ask("a1"))
    worker.submit("A", ask("a2"))
    with pytest.raises(QueueFull) as refused:
        worker.submit("A", ask("a3"))  # A has its share; others still get in
    assert "try again" in str(refused.value)
    worker.submit("B", ask("b1"))
    worker.submit("C", ask("c1"))
    with pytest.raises(QueueFull):
        worker.submit("D", ask("d1"))  # 4 waiting: the queue is full
    assert worker.depth == 4
    backend.gate.set()


async def test_cancel_while_queued_leaves_the_queue_and_renumbers(make_worker):
    backend = ScriptedBackend(slots=1)
    backend.gate = asyncio.Event()
    worker = await make_worker(backend)
    worker.submit("A", ask("running"))
    doomed = worker.submit("B", ask("doomed"))
    after = worker.submit("C", ask("after"))
    assert (doomed.position, after.position) == (1, 2)
    doomed.cancel()
    assert doomed.state == "cancelled" and after.position == 1 and worker.depth == 1
    assert [d async for d in doomed.stream()] == []  # a cancelled stream just ends
    backend.gate.set()
    await after.text()
    assert "doomed" not in backend.started


async def test_cancel_while_generating_stops_the_backend_and_starts_the_next(make_worker):
    backend = ScriptedBackend(slots=1, step_s=0.01)
    worker = await make_worker(backend)
    long = worker.submit("A", ask("long", tokens=1000))
    nxt = worker.submit("B", ask("next", tokens=2))
    async for delta in long.stream():
        assert delta.startswith("long:")
        long.cancel()
    assert long.state == "cancelled"
    assert await nxt.text() == "next:0 next:1 "
    assert backend.cancelled == ["long"] and "long" not in backend.finished


async def test_cancelling_the_consumer_task_cancels_the_generation(make_worker):
    backend = ScriptedBackend(slots=1, step_s=0.01)
    worker = await make_worker(backend)
    handle = worker.submit("A", ask("long", tokens=1000))
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in handle.stream():
            got_one.set()

    task = asyncio.create_task(consume())
    await got_one.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    assert handle.state == "cancelled" and backend.cancelled == ["long"] and worker.active == 0


async def test_timeout_while_generating_raises_and_frees_the_slot(make_worker):
    backend = ScriptedBackend(slots=1, step_s=0.01)
    worker = await make_worker(backend, request_timeout_s=0.15)
    handle = worker.submit("A", ask("slow", tokens=1000))
    deltas: list[str] = []
    with pytest.raises(RequestTimeout, match="Try a shorter question"):  # alone: nothing else to blame
        async for delta in handle.stream():
            deltas.append(delta)
    assert deltas and handle.state == "timed_out"
    await asyncio.sleep(0.02)
    assert backend.cancelled == ["slow"] and worker.active == 0


async def test_timeout_counts_the_wait_in_the_queue(make_worker):
    backend = ScriptedBackend(slots=1)
    backend.gate = asyncio.Event()
    worker = await make_worker(backend, request_timeout_s=0.1)
    worker.submit("A", ask("stuck"))
    waiting = worker.submit("B", ask("waiting"))
    with pytest.raises(RequestTimeout, match=r"answering 1 other question at the same time"):
        await waiting.text()  # the load is why, not the question: the user is told so
    assert waiting.state == "timed_out" and worker.depth == 0 and "waiting" not in backend.started


async def test_a_failing_backend_fails_that_request_only(make_worker):
    class Failing(ScriptedBackend):
        async def stream(self, request):
            if request.messages[-1].content == "bad":
                raise RuntimeError("boom")
                yield ""  # pragma: no cover - makes this an async generator
            async for delta in super().stream(request):
                yield delta

    worker = await make_worker(Failing(slots=2))
    bad, good = worker.submit("A", ask("bad")), worker.submit("B", ask("good", tokens=1))
    with pytest.raises(RuntimeError, match="boom"):
        await bad.text()
    assert await good.text() == "good:0 "
    assert bad.state == "failed" and worker.active == 0


async def test_deltas_are_coalesced_for_a_slow_consumer(make_worker):
    backend = ScriptedBackend(slots=1, step_s=0)
    worker = await make_worker(backend)
    handle = worker.submit("A", ask("q", tokens=50))
    await asyncio.sleep(0.05)  # let the whole reply arrive before reading
    chunks = [d async for d in handle.stream()]
    assert "".join(chunks) == "".join(f"q:{i} " for i in range(50))
    assert len(chunks) < 5


async def test_close_cancels_queued_and_running_requests():
    backend = ScriptedBackend(slots=1, step_s=0.01)
    worker = GenerationWorker(backend)
    await worker.start()
    running = worker.submit("A", ask("running", tokens=1000))
    queued = worker.submit("B", ask("queued"))
    await asyncio.sleep(0.03)
    await worker.close()
    assert running.state == queued.state == "cancelled"
    assert backend.cancelled == ["running"] and backend.open_streams == 0
    with pytest.raises(RuntimeError):
        worker.submit("A", ask("late"))
