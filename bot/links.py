"""Recognising paper links in chat messages and checking where a download may come from."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_ARXIV = re.compile(
    r"https?://(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/"
    r"(?P<id>\d{4}\.\d{4,5}|[a-z\-]+(?:\.[A-Z]{2})?/\d{7})(?P<version>v\d+)?(?:\.pdf)?",
    re.IGNORECASE,
)


def arxiv_pdf_links(text: str, base_url: str = "https://arxiv.org") -> list[str]:
    """PDF URLs for the arXiv abs/pdf links in `text`, in order, without repeats.

    >>> arxiv_pdf_links("see <https://arxiv.org/abs/1706.03762v5> and https://arxiv.org/pdf/1706.03762v5.pdf")
    ['https://arxiv.org/pdf/1706.03762v5']
    """
    out: list[str] = []
    for match in _ARXIV.finditer(text):
        url = f"{base_url.rstrip('/')}/pdf/{match.group('id')}{match.group('version') or ''}"
        if url not in out:
            out.append(url)
    return out


def host_allowed(url: str, allowed_hosts: list[str]) -> bool:
    """True for http(s) URLs whose host is an allowed host or one of its subdomains.

    >>> host_allowed("https://files.slack.com/x.pdf", ["files.slack.com"])
    True
    >>> host_allowed("https://files.slack.com.evil.io/x.pdf", ["files.slack.com"])
    False
    >>> host_allowed("file:///etc/passwd", ["files.slack.com"])
    False
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    host = parts.hostname.lower()
    return any(host == h.lower() or host.endswith("." + h.lower()) for h in allowed_hosts)
