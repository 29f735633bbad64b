"""An OpenAI-compatible server as the backend (llama.cpp's llama-server with parallel slots, vLLM, …).

For when one GPU or one machine is not enough: the server batches, this client only streams
`POST {base_url}/chat/completions` with `stream: true` (server-sent events) through httpx. Closing a stream
closes its HTTP response, which is how such servers learn to stop generating. The server tokenizes the messages
itself, so special-token text in them (`<|im_start|>` in a passage) is broken up before sending
(`special_tokens.neutralise_special_tokens`). A request's grammar goes in the body's `grammar` field, which
llama.cpp's server reads; a server that refuses the field is asked again without it, and not sent one again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from rag_engine.errors import ModelUnavailable
from rag_engine.llm.base import BackendInfo, GenerationRequest, LLMBackend
from rag_engine.llm.special_tokens import neutralise_special_tokens

logger = logging.getLogger(__name__)


class OpenAIHTTPBackend(LLMBackend):
    """Streams chat completions from an OpenAI-compatible HTTP server."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        parallel: int = 8,
        n_ctx: int = 8192,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 180.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.slots = parallel
        self.n_ctx = n_ctx
        self._timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self.grammar_accepted: bool | None = None  # unknown until a request with a grammar was answered

    async def start(self) -> None:
        if self._client is not None:
            return
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url + "/",
            headers=headers,
            timeout=self._timeout,
            transport=self._transport,
            limits=httpx.Limits(max_connections=max(self.slots * 2, 10)),
        )
        try:
            response = await self._client.get("models")
            response.raise_for_status()
            served = [m.get("id") for m in response.json().get("data", [])]
        except (httpx.HTTPError, ValueError) as error:
            await self.close()
            raise ModelUnavailable(
                f"The model server at {self.base_url} is not answering ({error.__class__.__name__}). "
                "Start it, or set PAPERBOT_LLM_BACKEND=llama_cpp to run the model in process."
            ) from error
        if self.model is None or (served and self.model not in served):
            if self.model is not None:
                logger.info("model %r is not served at %s; using %r", self.model, self.base_url, served[0])
            self.model = served[0] if served else self.model
        logger.info("using %s at %s", self.model, self.base_url)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def info(self) -> BackendInfo:
        return BackendInfo(
            backend="openai",
            model=self.model or "(server default)",
            runs_on=self.base_url,
            n_ctx=self.n_ctx,
            parallel=self.slots,
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        if self._client is None:
            raise RuntimeError("the backend is not started: await start() first")
        body: dict[str, Any] = {
            # the server tokenizes: special-token text in content must not reach it as such (issue 9, defect 3)
            "messages": [{"role": m.role, "content": neutralise_special_tokens(m.content)} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": True,
        }
        if self.model:
            body["model"] = self.model
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        if request.grammar is not None and self.grammar_accepted is not False:
            body["grammar"] = request.grammar.gbnf  # llama.cpp's server (and llama-cpp-python's) take GBNF here
        try:
            async for text in self._completion(body):
                yield text
        except _GrammarRefused:
            # a server without grammars (the OpenAI API, vLLM) refuses the unknown field: ask again without it
            logger.info("the model server at %s takes no grammar; replies are not constrained", self.base_url)
            self.grammar_accepted = False
            del body["grammar"]
            async for text in self._completion(body):
                yield text

    async def _completion(self, body: dict[str, Any]) -> AsyncIterator[str]:
        assert self._client is not None
        async with self._client.stream("POST", "chat/completions", json=body) as response:
            if response.status_code != 200:
                detail = (await response.aread()).decode(errors="replace")[:300]
                if "grammar" in body and response.status_code in (400, 422) and "grammar" in detail.lower():
                    raise _GrammarRefused(detail)
                raise RuntimeError(f"the model server answered {response.status_code}: {detail}")
            if "grammar" in body:
                self.grammar_accepted = True
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank lines, comments, `event:` fields
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    chunk = json.loads(data)
                except ValueError:
                    logger.warning("unreadable event from the model server: %.100s", data)
                    continue
                if "error" in chunk:
                    raise RuntimeError(f"the model server failed: {chunk['error']}")
                for choice in chunk.get("choices", ()):
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield text


class _GrammarRefused(Exception):
    """The server refused the request because of its `grammar` field."""
