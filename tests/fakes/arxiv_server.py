"""A loopback arXiv: `/abs/ID` (an HTML page with the citation meta tags) and `/pdf/ID` (the PDF bytes).

    async with ArxivStandIn({"1706.03762": REAL_PDFS / "1706.03762.pdf"}) as arxiv:
        settings = settings.model_copy(update={"arxiv_base_url": arxiv.base_url, "download_hosts": ["127.0.0.1"]})

Versioned ids (`1706.03762v5`) and a `.pdf` suffix resolve to the same file, as on arxiv.org. Unknown ids are 404.
Every request path is recorded in `requests`, so a test can assert that a download really went through it.
"""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path
from types import TracebackType

from aiohttp import web

from tests.fakes import serve_on_loopback

_VERSION = re.compile(r"v\d+$")


class ArxivStandIn:
    def __init__(
        self, pdfs: dict[str, Path], titles: dict[str, str] | None = None, *, drip_s: float | None = None
    ) -> None:
        self._pdfs = dict(pdfs)
        self._titles = dict(titles or {})
        self._drip_s = drip_s  # send PDFs 16 bytes at a time, this far apart (a slow host)
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []  # the headers of each request, in order
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pdf_url(self, arxiv_id: str) -> str:
        return f"{self.base_url}/pdf/{arxiv_id}"

    async def __aenter__(self) -> ArxivStandIn:
        app = web.Application()
        app.router.add_get("/abs/{id:.+}", self._abs)
        app.router.add_get("/pdf/{id:.+}", self._pdf)
        self._runner, self.port = await serve_on_loopback(app)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _lookup(self, raw_id: str) -> tuple[str, Path] | None:
        arxiv_id = raw_id.removesuffix(".pdf")
        for candidate in (arxiv_id, _VERSION.sub("", arxiv_id)):
            if candidate in self._pdfs:
                return candidate, self._pdfs[candidate]
        return None

    async def _abs(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        found = self._lookup(request.match_info["id"])
        if found is None:
            return web.Response(status=404, text="Article identifier not recognized", content_type="text/html")
        arxiv_id, _ = found
        title = html.escape(self._titles.get(arxiv_id, f"arXiv paper {arxiv_id}"))
        page = (
            "<!DOCTYPE html><html><head>"
            f'<meta name="citation_title" content="{title}"/>'
            f'<meta name="citation_arxiv_id" content="{arxiv_id}"/>'
            f'<meta name="citation_pdf_url" content="{self.pdf_url(arxiv_id)}"/>'
            f"<title>[{arxiv_id}] {title}</title></head><body>"
            f'<h1 class="title">{title}</h1><a href="/pdf/{arxiv_id}">View PDF</a></body></html>'
        )
        return web.Response(text=page, content_type="text/html")

    async def _pdf(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path)
        self.headers.append(dict(request.headers))
        found = self._lookup(request.match_info["id"])
        if found is None:
            return web.Response(status=404, text="not found", content_type="text/plain")
        _, path = found
        if self._drip_s is None:
            return web.Response(body=path.read_bytes(), content_type="application/pdf")
        response = web.StreamResponse(headers={"Content-Type": "application/pdf"})
        await response.prepare(request)
        body = path.read_bytes()
        for start in range(0, len(body), 16):
            await response.write(body[start : start + 16])
            await asyncio.sleep(self._drip_s)
        await response.write_eof()
        return response
