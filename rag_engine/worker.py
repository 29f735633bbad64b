"""The generation queue: bounded, fair across channels, with timeouts, cancellation and live queue positions.

    worker = GenerationWorker(backend, queue_size=64, request_timeout_s=180)
    await worker.start()
    handle = worker.submit("discord/1/2", request)      # raises QueueFull when the queue is full
    async for position in handle.queue_positions():    # 1 = next; ends when generation starts
        ...
    async for delta in handle.stream():                 # text deltas, several tokens at a time when busy
        ...
    await worker.close()

Scheduling: each key (a channel) has its own FIFO; free backend slots are given round-robin over the keys that
have questions waiting, so one busy channel cannot starve the others. A key may hold at most `per_key_limit`
waiting questions, so one channel cannot fill the whole queue either. The timeout counts from `submit`
(waiting included): it bounds how long a user waits. Everything here runs on the event loop; the model runs in
the backend's own thread and only its deltas reach the loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal

from rag_engine.errors import QueueFull, RequestTimeout
from rag_engine.llm.base import GenerationRequest, LLMBackend

if TYPE_CHECKING:
    from rag_engine.settings import EngineSettings

logger = logging.getLogger(__name__)

State = Literal["queued", "generating", "done", "cancelled", "timed_out", "failed"]
_END = object()


class GenerationHandle:
    """One submitted request: its queue position, its stream of text, and a way to stop it."""

    def __init__(self, worker: GenerationWorker, request_id: int, key: str, request: GenerationRequest) -> None:
        self._worker = worker
        self.id = request_id
        self.key = key
        self.request = request
        self.state: State = "queued"
        self.submitted_at = time.monotonic()
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.error: BaseException | None = None
        self._position = 0
        self._position_changed = asyncio.Event()
        self._deltas: asyncio.Queue[object] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._chars = 0

    # --- what callers use ---------------------------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """1 = next to start, 2 = after that, …; 0 once generating (or finished)."""
        return self._position

    @property
    def done(self) -> bool:
        return self.state in ("done", "cancelled", "timed_out", "failed")

    async def queue_positions(self) -> AsyncIterator[int]:
        """The position now and each change while queued; returns when generation starts or the request ends."""
        last = None
        while self.state == "queued":
            if self._position != last:
                last = self._position
                yield last
                continue
            self._position_changed.clear()
            await self._position_changed.wait()

    async def stream(self) -> AsyncIterator[str]:
        """Text deltas until the reply ends. Raises RequestTimeout (or the backend's error); ends quietly after
        `cancel()`. Leaving the loop early or cancelling the consuming task cancels the generation."""
        try:
            while True:
                item = await self._deltas.get()
                parts: list[str] = []
                while True:  # coalesce whatever else is already waiting: one wake-up per batch, not per token
                    if item is _END:
                        break
                    if isinstance(item, BaseException):
                        if parts:
                            yield "".join(parts)
                        raise item
                    parts.append(item)  # type: ignore[arg-type]
                    if self._deltas.empty():
                        break
                    item = self._deltas.get_nowait()
                if parts:
                    yield "".join(parts)
                if item is _END:
                    return
        finally:
            if not self.done:
                self.cancel()

    async def text(self) -> str:
        """The whole reply (raises like `stream`)."""
        return "".join([delta async for delta in self.stream()])

    def cancel(self) -> None:
        """Stop this request: leave the queue, or stop its generation and free its slot. Idempotent."""
        self._worker._stop(self, "cancelled", None)

    # --- worker side --------------------------------------------------------------------------------------------------
    def _set_position(self, position: int) -> None:
        if position != self._position:
            self._position = position
            self._position_changed.set()

    def _push(self, delta: str) -> None:
        self._chars += len(delta)
        self._deltas.put_nowait(delta)

    def _end(self, state: State, error: BaseException | None) -> None:
        self.state = state
        self.error = error
        self.finished_at = time.monotonic()
        self._set_position(0)
        self._position_changed.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deltas.put_nowait(error if error is not None else _END)

    def __repr__(self) -> str:
        return f"<GenerationHandle #{self.id} key={self.key!r} {self.state} position={self._position}>"


class GenerationWorker:
    """Feeds a backend's slots from per-key queues, round-robin. One per process, owned by the bot's main()."""

    def __init__(
        self,
        backend: LLMBackend,
        *,
        queue_size: int = 64,
        request_timeout_s: float = 180.0,
        per_key_limit: int | None = None,
        slots: int | None = None,
        close_backend: bool = True,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.backend = backend
        self.queue_size = queue_size
        self.request_timeout_s = request_timeout_s
        self.per_key_limit = per_key_limit if per_key_limit is not None else max(1, queue_size // 2)
        self.slots = max(1, slots if slots is not None else backend.slots)
        self._close_backend = close_backend
        self._waiting: OrderedDict[str, deque[GenerationHandle]] = OrderedDict()
        self._rotation: deque[str] = deque()  # keys with waiting requests, in the order they will be served
        self._n_waiting = 0
        self._active: set[GenerationHandle] = set()
        self._ids = itertools.count(1)
        self._started = False
        self._closed = False
        self.started_keys: deque[str] = deque(maxlen=256)  # recent start order (status, tests)

    @classmethod
    def from_settings(cls, backend: LLMBackend, settings: EngineSettings) -> GenerationWorker:
        return cls(backend, queue_size=settings.queue_size, request_timeout_s=settings.request_timeout_s)

    # --- lifecycle ----------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._closed:
            raise RuntimeError("this worker is closed")
        await self.backend.start()
        self._started = True

    async def close(self) -> None:
        """Cancel everything queued or running, then close the backend (when this worker owns it)."""
        if self._closed:
            return
        self._closed = True
        for queue in list(self._waiting.values()):
            for handle in list(queue):
                self._stop(handle, "cancelled", None)
        tasks = [h._task for h in list(self._active) if h._task is not None]
        for handle in list(self._active):
            self._stop(handle, "cancelled", None)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._close_backend:
            await self.backend.close()

    async def __aenter__(self) -> GenerationWorker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- what callers see ---------------------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        """Started, not closed, and its backend can still generate."""
        return self._started and not self._closed and self.backend.alive()

    @property
    def depth(self) -> int:
        """Requests waiting for a slot (not counting those generating): the heartbeat's queue depth."""
        return self._n_waiting

    @property
    def active(self) -> int:
        return len(self._active)

    def submit(self, key: str, request: GenerationRequest) -> GenerationHandle:
        """Queue a request for `key` (a channel). Raises QueueFull when the queue, or this key's share, is full."""
        if not self._started or self._closed:
            raise RuntimeError("the generation worker is not running")
        waiting_here = len(self._waiting.get(key, ()))
        if self._n_waiting >= self.queue_size or waiting_here >= self.per_key_limit:
            logger.info("queue full: %d waiting (%d for %s)", self._n_waiting, waiting_here, key)
            raise QueueFull()
        loop = asyncio.get_running_loop()
        handle = GenerationHandle(self, next(self._ids), key, request)
        handle._timer = loop.call_later(self.request_timeout_s, self._expire, handle)
        if key not in self._waiting:
            self._waiting[key] = deque()
            self._rotation.append(key)
        self._waiting[key].append(handle)
        self._n_waiting += 1
        self._pump()
        self._update_positions()
        return handle

    # --- scheduling ---------------------------------------------------------------------------------------------------
    def _pump(self) -> None:
        """Start waiting requests while slots are free, taking keys in turn."""
        while self._n_waiting and len(self._active) < self.slots and not self._closed:
            key = self._rotation.popleft()
            queue = self._waiting[key]
            handle = queue.popleft()
            self._n_waiting -= 1
            if queue:
                self._rotation.append(key)
            else:
                del self._waiting[key]
            self._active.add(handle)
            handle.state = "generating"
            handle.started_at = time.monotonic()
            handle._set_position(0)
            self.started_keys.append(key)
            handle._task = asyncio.get_running_loop().create_task(self._run(handle), name=f"generate-{handle.id}")

    def _update_positions(self) -> None:
        """Positions follow the round-robin order in which the waiting requests would start."""
        iterators = [iter(self._waiting[key]) for key in self._rotation]
        position = 0
        while iterators:
            remaining = []
            for it in iterators:
                handle = next(it, None)
                if handle is not None:
                    position += 1
                    handle._set_position(position)
                    remaining.append(it)
            iterators = remaining

    async def _run(self, handle: GenerationHandle) -> None:
        stream = self.backend.stream(handle.request)
        try:
            async for delta in stream:
                if delta:
                    handle._push(delta)
            if not handle.done:
                handle._end("done", None)
        except asyncio.CancelledError:
            pass  # _stop() cancelled us and already ended the handle; the backend stream's cleanup ran
        except Exception as error:  # a backend failure ends this request only
            logger.exception("generation #%d failed", handle.id)
            if not handle.done:
                handle._end("failed", error)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # the stream already failed; don't mask the first error
                    logger.debug("closing the stream of #%d failed", handle.id, exc_info=True)
            self._active.discard(handle)
            if handle._timer is not None:
                handle._timer.cancel()
            elapsed = (handle.finished_at or time.monotonic()) - (handle.started_at or handle.submitted_at)
            logger.debug("#%d %s after %.2fs (%d chars)", handle.id, handle.state, elapsed, handle._chars)
            self._pump()
            self._update_positions()

    def _expire(self, handle: GenerationHandle) -> None:
        others = self.active + self._n_waiting - 1
        logger.info("request #%d timed out (%s; %d others running or waiting)", handle.id, handle.state, others)
        self._stop(handle, "timed_out", RequestTimeout.busy(others) if others > 0 else RequestTimeout())

    def _stop(self, handle: GenerationHandle, state: State, error: BaseException | None) -> None:
        if handle.done:
            return
        if handle.state == "queued":
            queue = self._waiting.get(handle.key)
            if queue is not None and handle in queue:
                queue.remove(handle)
                self._n_waiting -= 1
                if not queue:
                    del self._waiting[handle.key]
                    self._rotation.remove(handle.key)
            handle._end(state, error)
            self._update_positions()
            return
        handle._end(state, error)
        if handle._task is not None and not handle._task.done():
            handle._task.cancel()  # the backend stream sees CancelledError and frees the sequence
