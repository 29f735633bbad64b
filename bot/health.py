"""`/healthz` and `/readyz` for a running bot (Docker's HEALTHCHECK, a load balancer, a monitoring probe).

- `/healthz`, alive: the event loop answers (the server runs on it, so a blocked loop makes the probe time out) and
  the generation worker can still generate. 503 means "restart me".
- `/readyz`, ready to answer: alive, and the database answers, the models are loaded, the platform is connected.
  503 while the models load or the platform reconnects.

Both answer JSON with every check, for a person reading `curl`. `python -m bot.health [--ready]` is the probe the
Docker image runs: exit 0 when healthy (or ready), 1 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import logging
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from rag_engine.errors import PaperbotError

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger(__name__)

#: A check of the platform connection: True while connected.
Probe = Callable[[], "bool | Awaitable[bool]"]

DB_TIMEOUT_S = 3.0
LAG_INTERVAL_S = 1.0



class HealthPortTaken(PaperbotError):
    """The health endpoint's port is in use (another paperbot on this machine?)."""


_current: contextvars.ContextVar[Health | None] = contextvars.ContextVar("paperbot_health", default=None)


class Health:
    """What the endpoints report. `paperbot run` makes one, attaches the core once the models are loaded (`watch`),
    and the platform adapter registers how to tell it is connected (`set_platform`)."""

    def __init__(self) -> None:
        self._core: Core | None = None
        self._platform: tuple[str, Probe] | None = None
        self.loop_lag_s = 0.0

    def watch(self, core: Core) -> None:
        """The core is open: database and models loaded, worker started."""
        self._core = core

    def set_platform(self, name: str, probe: Probe) -> None:
        self._platform = (name, probe)

    async def liveness(self) -> tuple[bool, dict[str, Any]]:
        worker = "starting" if self._core is None else "alive" if self._core.answerer.worker.alive else "dead"
        checks = {"event_loop": "responsive", "loop_lag_s": round(self.loop_lag_s, 3), "worker": worker}
        return worker != "dead", checks

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        alive, checks = await self.liveness()
        checks["models"] = "loaded" if self._core is not None else "loading"
        checks["database"] = await self._database()
        checks["platform"] = await self._platform_state()
        ready = alive and checks["worker"] == "alive" and checks["database"] == "ok" and checks["platform"] == "connected"
        return ready, checks

    async def _database(self) -> str:
        if self._core is None:
            return "not open"
        try:
            await asyncio.wait_for(self._core.engine.has_index(""), DB_TIMEOUT_S)
        except Exception as error:  # any failure is the answer, not a crash of the probe
            return f"error: {type(error).__name__}"
        return "ok"

    async def _platform_state(self) -> str:
        if self._platform is None:
            return "not started"
        name, probe = self._platform
        try:
            result = probe()
            connected = await result if inspect.isawaitable(result) else result
        except Exception as error:
            return f"{name}: error: {type(error).__name__}"
        return "connected" if connected else f"{name}: disconnected"

    async def _measure_lag(self) -> None:
        """How late the loop wakes a sleeper: a loop busy with blocking work shows here before it stops answering."""
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LAG_INTERVAL_S)
            self.loop_lag_s = max(0.0, loop.time() - start - LAG_INTERVAL_S)


def current() -> Health | None:
    """The Health of the running `paperbot run`, for adapters to register their platform probe; None elsewhere."""
    return _current.get()


def set_platform(name: str, probe: Probe) -> None:
    """Register the platform's connection probe with the running bot's Health, if there is one."""
    health = current()
    if health is not None:
        health.set_platform(name, probe)


def build_app(health: Health) -> web.Application:
    async def respond(check: Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]) -> web.Response:
        ok, checks = await check()
        return web.json_response({"ok": ok, **checks}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/healthz", lambda _request: respond(health.liveness))
    app.router.add_get("/readyz", lambda _request: respond(health.readiness))
    return app


@contextlib.asynccontextmanager
async def serving(host: str, port: int) -> AsyncIterator[tuple[Health, int]]:
    """Serve the endpoints on host:port (0 picks a free port) while the block runs; yields the Health and the port.

    The Health is also made `current()` for code running in this task (the adapters' `serve`).
    """
    health = Health()
    runner = web.AppRunner(build_app(health), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as error:
            raise HealthPortTaken(
                f"the health endpoint cannot listen on {host}:{port} ({error.strerror}); set PAPERBOT_HEALTH_PORT "
                "to a free port, or 0 to turn it off"
            ) from error
        bound = runner.addresses[0][1]
        log.info("health endpoints on http://%s:%d/healthz and /readyz", host, bound)
        lag = asyncio.create_task(health._measure_lag(), name="health-loop-lag")
        token = _current.set(health)
        try:
            yield health, bound
        finally:
            _current.reset(token)
            lag.cancel()
            await asyncio.gather(lag, return_exceptions=True)
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def maybe_serving(host: str, port: int) -> AsyncIterator[Health | None]:
    """`serving` unless port is 0 (health endpoints off)."""
    if port == 0:
        yield None
        return
    async with serving(host, port) as (health, _port):
        yield health


def probe(url: str, timeout_s: float = 5.0) -> tuple[bool, str]:
    """GET a health URL: (healthy, body). Used by the container's HEALTHCHECK."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - a local http URL
            return response.status == 200, response.read().decode()
    except urllib.error.HTTPError as error:
        return False, error.read().decode()
    except OSError as error:
        return False, json.dumps({"ok": False, "error": str(error)})


def main(argv: list[str]) -> int:
    """`python -m bot.health [--ready]`: ask the running bot (settings' health host and port); exit 0 if it is ok."""
    from bot.settings import Settings

    settings = Settings()
    host = "127.0.0.1" if settings.health_host in ("0.0.0.0", "::", "") else settings.health_host
    path = "/readyz" if "--ready" in argv else "/healthz"
    started = time.perf_counter()
    ok, body = probe(f"http://{host}:{settings.health_port}{path}")
    print(body, f"({time.perf_counter() - started:.2f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
