"""Downloads bounded in total time and sending tokens over https only; index names checked with a clear message."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from bot.download import Downloader, DownloadFailed
from bot.settings import Settings
from storage.codec import CODEC_ID
from storage.db import Database
from storage.errors import InvalidIndexName
from tests.conftest import EDGE_PDFS
from tests.fakes.arxiv_server import ArxivStandIn
from tests.test_cli import cli_env

PDF = EDGE_PDFS / "ok_minimal.pdf"


async def test_a_slow_drip_is_stopped_at_the_total_deadline() -> None:
    # 16 bytes every 0.2 s: each read is quick, so only a deadline for the whole download can stop it.
    async with ArxivStandIn({"1234.5678": PDF}, drip_s=0.2) as arxiv:
        downloader = Downloader(["127.0.0.1"], max_bytes=1 << 20, timeout_s=5, deadline_s=1)
        try:
            with pytest.raises(DownloadFailed, match="took longer than 1 s"):
                await asyncio.wait_for(downloader.fetch(arxiv.pdf_url("1234.5678")), timeout=60)
        finally:
            await downloader.close()


async def test_host_headers_go_over_https_only(monkeypatch: pytest.MonkeyPatch) -> None:
    downloader = Downloader(["files.example.com", "127.0.0.1"], max_bytes=1 << 20)
    token = {"Authorization": "Bearer xoxb-secret"}
    downloader.set_headers("files.example.com", token)
    assert downloader.headers_for("https://files.example.com/a.pdf") == token
    assert downloader.headers_for("http://files.example.com/a.pdf") == {}
    downloader.set_headers("127.0.0.1", token)
    assert downloader.headers_for("http://127.0.0.1:8000/a.pdf") == token  # this machine: the loopback stand-ins

    # On the wire: a plain-http host that is not this machine gets no token.
    monkeypatch.setattr("bot.download._is_loopback", lambda host: False)
    async with ArxivStandIn({"1234.5678": PDF}) as arxiv:
        try:
            assert await downloader.fetch(arxiv.pdf_url("1234.5678")) == PDF.read_bytes()
        finally:
            await downloader.close()
    assert "Authorization" not in arxiv.headers[0]


@pytest.mark.parametrize("name", ["", "   ", " ml", "ml\n", "a\u202eb", "x" * 201])
async def test_bad_index_names_are_refused_with_a_reason(tmp_path, name: str) -> None:
    async with await Database.open(tmp_path / "p.sqlite3") as db:
        with pytest.raises(InvalidIndexName, match="cannot name an index"):
            await db.get_or_create_index(name, "enc", CODEC_ID, 4)
        assert await db.list_indexes() == []
        assert (await db.get_or_create_index("discord/1/2", "enc", CODEC_ID, 4)).name == "discord/1/2"


def test_the_cli_answers_an_index_name_of_spaces_with_one_line(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True)
    run = subprocess.run(
        [sys.executable, "-m", "bot.cli", "ingest", "--index", "   ", str(PDF)],
        env=cli_env(settings),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr
    assert "cannot name an index: it is empty" in run.stderr + run.stdout
