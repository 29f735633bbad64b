"""/healthz and /readyz: not ready until the models are loaded and the platform connected; unhealthy once the
generation worker dies; the Docker probe (`python -m bot.health`) exits by what they say."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from bot import health
from bot.runtime import open_core
from rag_engine.llm.base import ChatMessage, GenerationRequest
from bot.settings import Settings

pytestmark = [
    pytest.mark.slow,  # loads the tiny models
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),  # the thread that dies
]


async def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.json()


async def test_ready_only_once_models_are_loaded_and_platform_connected_and_unhealthy_when_the_worker_dies(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with health.serving("127.0.0.1", 0) as (monitor, port):
        assert health.current() is monitor
        # Started before the models load (as `paperbot run` does): alive, not ready.
        status, body = await get(port, "/healthz")
        assert (status, body["worker"]) == (200, "starting")
        status, body = await get(port, "/readyz")
        assert status == 503 and body["models"] == "loading" and body["ok"] is False

        async with open_core(settings, heartbeat=False) as core:
            monitor.watch(core)
            status, body = await get(port, "/readyz")
            assert status == 503 and body["models"] == "loaded" and body["database"] == "ok"
            assert body["platform"] == "not started"

            connected = True
            health.set_platform("test", lambda: connected)
            status, body = await get(port, "/readyz")
            assert (status, body["platform"], body["worker"]) == (200, "connected", "alive")
            connected = False
            assert (await get(port, "/readyz"))[0] == 503
            connected = True

            # The decoding thread fails the way a CUDA error would; the worker can no longer generate.
            backend = core.answerer.backend
            thread = backend._thread
            monkeypatch.setattr(backend, "_step", _raise_step)
            handle = core.answerer.worker.submit("k", GenerationRequest((ChatMessage("user", "hi"),), max_tokens=4))
            with pytest.raises(RuntimeError):
                await handle.text()
            await asyncio.to_thread(thread.join, 30)
            assert not thread.is_alive()

            status, body = await get(port, "/healthz")
            assert (status, body["worker"]) == (503, "dead")
            assert (await get(port, "/readyz"))[0] == 503


def _raise_step() -> None:
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


async def test_docker_probe_exits_by_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    async with health.serving("127.0.0.1", 0) as (monitor, port):
        monkeypatch.setenv("PAPERBOT_HEALTH_PORT", str(port))
        assert await asyncio.to_thread(health.main, []) == 0  # alive while the models load
        assert await asyncio.to_thread(health.main, ["--ready"]) == 1  # not ready
    assert await asyncio.to_thread(health.main, []) == 1  # nothing listens any more


async def test_a_taken_health_port_is_one_clear_error() -> None:
    async with health.serving("127.0.0.1", 0) as (_monitor, port):
        with pytest.raises(health.HealthPortTaken, match="PAPERBOT_HEALTH_PORT"):
            async with health.serving("127.0.0.1", port):
                pass
