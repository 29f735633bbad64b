"""Fetching a linked or attached PDF: allowed hosts only, size-capped while streaming, redirects re-checked."""

from __future__ import annotations

import logging
from urllib.parse import urljoin

import httpx

from bot.links import host_allowed
from rag_engine.errors import PaperbotError, TooLarge

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3


class DownloadFailed(PaperbotError):
    pass


class Downloader:
    def __init__(self, allowed_hosts: list[str], max_bytes: int, timeout_s: float = 60.0) -> None:
        self._allowed = allowed_hosts
        self._max_bytes = max_bytes
        self._headers: dict[str, dict[str, str]] = {}
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, headers={"User-Agent": "paperbot"})

    def set_headers(self, host: str, headers: dict[str, str]) -> None:
        self._headers[host.lower()] = headers

    async def close(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str) -> bytes:
        """The body of `url`, or DownloadFailed / TooLarge with a sentence for the user."""
        for _ in range(MAX_REDIRECTS + 1):
            if not host_allowed(url, self._allowed):
                raise DownloadFailed(
                    "I only download papers from the chat's own file storage and arXiv; "
                    "upload the PDF as an attachment instead."
                )
            host = httpx.URL(url).host.lower()
            try:
                async with self._client.stream("GET", url, headers=self._headers.get(host, {})) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code != 200:
                        raise DownloadFailed(f"The download failed (HTTP {response.status_code}). Is the link right?")
                    declared = int(response.headers.get("content-length") or 0)
                    if declared > self._max_bytes:
                        raise TooLarge(self._too_large())
                    body = bytearray()
                    async for part in response.aiter_bytes():
                        body += part
                        if len(body) > self._max_bytes:
                            raise TooLarge(self._too_large())
                    return bytes(body)
            except httpx.HTTPError as error:
                log.info("download of %s failed: %r", url, error)
                raise DownloadFailed("I couldn't download that file (network error); try again later.") from error
        raise DownloadFailed("That link redirects too often; upload the PDF instead.")

    def _too_large(self) -> str:
        return f"That file is larger than the {self._max_bytes // (1024 * 1024)} MiB limit."
