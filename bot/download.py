"""Fetching a linked or attached PDF: allowed hosts only, size-capped while streaming, redirects re-checked."""

from __future__ import annotations

import asyncio
import ipaddress
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
    def __init__(
        self, allowed_hosts: list[str], max_bytes: int, timeout_s: float = 60.0, deadline_s: float = 120.0
    ) -> None:
        self._allowed = allowed_hosts
        self._max_bytes = max_bytes
        self._deadline_s = deadline_s  # for the whole download: httpx's timeout is per read, so a slow drip never ends
        self._headers: dict[str, dict[str, str]] = {}
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False, headers={"User-Agent": "paperbot"})

    def set_headers(self, host: str, headers: dict[str, str]) -> None:
        """Headers (a token, say) sent to `host`, over https only."""
        self._headers[host.lower()] = headers

    def headers_for(self, url: str) -> dict[str, str]:
        """What `set_headers` gave for this URL's host when the URL is https; nothing over plain http, where anyone
        on the way could read a token (except to this machine itself, which is how the loopback stand-ins run)."""
        parsed = httpx.URL(url)
        host = parsed.host.lower()
        if parsed.scheme != "https" and not _is_loopback(host):
            return {}
        return self._headers.get(host, {})

    async def close(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str) -> bytes:
        """The body of `url`, or DownloadFailed / TooLarge with a sentence for the user."""
        try:
            async with asyncio.timeout(self._deadline_s):
                return await self._fetch(url)
        except TimeoutError as error:
            log.info("download of %s took longer than %.0f s", url, self._deadline_s)
            raise DownloadFailed(
                f"That download took longer than {self._deadline_s:.0f} s, so I stopped it; upload the PDF instead."
            ) from error

    async def _fetch(self, url: str) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            if not host_allowed(url, self._allowed):
                raise DownloadFailed(
                    "I only download papers from the chat's own file storage and arXiv; "
                    "upload the PDF as an attachment instead."
                )
            try:
                async with self._client.stream("GET", url, headers=self.headers_for(url)) as response:
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
