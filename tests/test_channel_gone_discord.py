"""Discord: with drop_papers_when_channel_gone on, a deleted channel, or a server the bot is removed from, loses its
papers and their stored files (through the loopback Discord stand-in and the real discord.py client)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import discord
import pytest
import yarl

from bot.discord_app import PaperBot
from bot.messages import Channel, User
from bot.runtime import open_core
from tests.conftest import EDGE_PDFS, make_settings
from tests.fakes.discord_server import FakeDiscord

PDF = EDGE_PDFS / "ok_minimal.pdf"


async def _until(condition: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


async def test_deleted_channels_and_left_servers_lose_their_papers(tiny_models: Path, tmp_path: Path) -> None:
    fake = FakeDiscord()
    lab = fake.add_guild("lab")
    doomed, kept = fake.add_channel(lab, "doomed"), fake.add_channel(lab, "kept")
    other = fake.add_guild("other")
    elsewhere = fake.add_channel(other, "general")
    settings = make_settings(tmp_path / "data", tiny_models, drop_papers_when_channel_gone=True)
    channels = {c.id: Channel("discord", str(c.guild_id), str(c.id)) for c in (doomed, kept, elsewhere)}
    async with fake:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(discord.http.Route, "BASE", fake.api_base)
            patch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))
            async with open_core(settings, heartbeat=False) as core:
                loader = User("loader", "loader")
                for channel in channels.values():
                    assert (await core.ingest_upload(channel, loader, "p.pdf", PDF.read_bytes())).status == "indexed"
                [stored] = settings.uploads_dir.glob("*.pdf")
                bot = PaperBot(core, settings, guild_ready_timeout=0.1)
                task = asyncio.create_task(bot.start(fake.token))
                try:
                    await fake.wait_ready()
                    await asyncio.wait_for(bot.wait_until_ready(), 10)

                    async def has(channel: Channel) -> bool:
                        return await core.engine.has_index(channel.index_name)

                    await fake.dispatch("CHANNEL_DELETE", doomed.payload(fake.bot.id))
                    await _until(lambda: _not(has(channels[doomed.id])))
                    assert await has(channels[kept.id]) and await has(channels[elsewhere.id])

                    await fake.dispatch("GUILD_DELETE", {"id": str(other.id)})  # removed from the server
                    await _until(lambda: _not(has(channels[elsewhere.id])))
                    assert await has(channels[kept.id]) and stored.exists()  # 'kept' still needs the file
                finally:
                    await bot.close()
                    await asyncio.wait_for(task, 10)


async def _not(value: Awaitable[bool]) -> bool:
    return not await value
