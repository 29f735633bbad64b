"""The Discord adapter: turns gateway events and slash commands into `Core` calls and renders what comes back.

Behaviour (permissions, limits, what a failure says) lives in `bot.core`; this module only knows Discord: intents,
mentions, attachments, replies, message edits at a pace Discord accepts, interactions and their 3-second window.
Message text comes from `bot.discord_render`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import discord
from discord import app_commands

from bot import discord_render as render
from bot.core import Core
from bot.formatting import split_message
from bot.messages import Channel, Failed, Final, Partial, Queued, Turn, User
from rag_engine.errors import USER_FACING
from rag_engine.settings import Settings
from rag_engine.types import Answer

log = logging.getLogger(__name__)

PLATFORM = "discord"
#: Discord answers edits of one channel's messages with 429 beyond about five in five seconds; once a second per
#: message keeps a single stream well inside that and still looks live.
EDIT_INTERVAL_S = 1.0
DOWNLOAD_TIMEOUT_S = 120.0
MAX_HISTORY_TURNS = 6
_EXCHANGE_CACHE = 2000


# --- pacing edits -----------------------------------------------------------------------------------------------------
class ThrottledEditor:
    """Shows the latest text of a message being written, editing it at most once per `interval` seconds.

    `update` only records the newest text and never waits for Discord; one flush task (owned here) sends it when the
    interval allows, skipping texts that a newer one replaced meanwhile. `final` waits for an edit in flight, drops
    anything pending and always sends its text.
    """

    def __init__(self, edit: Callable[[str], Awaitable[Any]], interval: float) -> None:
        self._edit = edit
        self._interval = interval
        self._shown = ""
        self._pending: str | None = None
        self._last = -math.inf
        self._lock = asyncio.Lock()  # one edit at a time
        self._flusher: asyncio.Task[None] | None = None
        self.edits = 0

    def mark_sent(self, text: str) -> None:
        """The message was just created with `text` (counts towards the interval)."""
        self._shown, self._last = text, time.monotonic()

    async def update(self, text: str) -> None:
        self._pending = None if text == self._shown else text
        if self._pending is not None and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush(), name="discord-edit-flush")

    async def final(self, text: str) -> None:
        async with self._lock:
            await self._stop_flusher()
            if text != self._shown:
                await self._send(text, final=True)

    async def close(self) -> None:
        """Stop the flush task after any edit in flight, dropping a pending text; safe to call more than once."""
        async with self._lock:
            await self._stop_flusher()

    async def _stop_flusher(self) -> None:
        # Called with the lock held, so the flusher is asleep or waiting for the lock, never mid-edit.
        self._pending = None
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            await asyncio.wait([flusher])  # unlike `await flusher`, a cancel of *our* caller still propagates

    async def _flush(self) -> None:
        while self._pending is not None:
            wait = self._last + self._interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            async with self._lock:
                text, self._pending = self._pending, None
                if text is None:
                    return
                try:
                    await self._send(text, final=False)
                except Exception:  # noqa: BLE001 - nobody awaits this task; the next edit carries the full text
                    log.warning("discord: edit failed", exc_info=True)

    async def _send(self, text: str, *, final: bool) -> None:
        try:
            if final:
                await deliver(lambda: self._edit(text))
            else:
                await self._edit(text)
        except discord.HTTPException as error:
            # A lost intermediate edit is harmless (the next one carries the full text); a lost final one is not.
            log.warning("discord: edit failed (%s %s, final=%s)", error.status, error.code, final)
            if final:
                raise
            return
        finally:
            self._last = time.monotonic()  # a failed edit still counts against Discord's rate limit
        self._shown = text
        self.edits += 1


T = TypeVar("T")
_RETRY_DELAYS_S = (2.0, 5.0)


async def deliver(call: Callable[[], Awaitable[T]]) -> T:
    """Make a Discord call whose loss a user would notice (the final text of an answer), trying again a little
    later when Discord was overloaded or kept rate limiting after discord.py's own retries."""
    for delay in (*_RETRY_DELAYS_S, None):
        try:
            return await call()
        except discord.HTTPException as error:
            if delay is None or not (error.status == 429 or error.status >= 500):
                raise
            log.warning("discord: %s %s, trying again in %.0f s", error.status, error.code, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


# --- where an answer goes ---------------------------------------------------------------------------------------------
class AnswerTarget:
    """A placeholder being turned into an answer: a reply message, or an interaction's deferred response."""

    async def edit(self, text: str) -> int:
        """Replace the first message's text; returns its id."""
        raise NotImplementedError

    async def send_more(self, text: str) -> int:
        """Post one more piece after the first; returns its id."""
        raise NotImplementedError


class ReplyTarget(AnswerTarget):
    def __init__(self, placeholder: discord.Message) -> None:
        self.placeholder = placeholder

    async def edit(self, text: str) -> int:
        await self.placeholder.edit(content=text)
        return self.placeholder.id

    async def send_more(self, text: str) -> int:
        message = await self.placeholder.channel.send(
            text, reference=self.placeholder.to_reference(fail_if_not_exists=False), mention_author=False
        )
        return message.id


class InteractionTarget(AnswerTarget):
    def __init__(self, interaction: discord.Interaction, ephemeral: bool = False) -> None:
        self.interaction = interaction
        self.ephemeral = ephemeral

    async def edit(self, text: str) -> int:
        message = await self.interaction.edit_original_response(content=text)
        return message.id

    async def send_more(self, text: str) -> int:
        message = await self.interaction.followup.send(text, ephemeral=self.ephemeral, wait=True)
        return message.id


@dataclass(frozen=True, slots=True)
class _Exchange:
    """A posted answer: its question and answer, and the answer that question replied to (for longer threads)."""

    turn: Turn
    previous: int | None


# --- the client -------------------------------------------------------------------------------------------------------
class PaperBot(discord.Client):
    """paperbot on Discord. One instance per running bot; `serve` runs it."""

    def __init__(
        self, core: Core, settings: Settings, *, edit_interval: float = EDIT_INTERVAL_S, **options: Any
    ) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        # Nothing the bot writes may ping anyone: answers quote papers, and papers can say "@everyone".
        options.setdefault("allowed_mentions", discord.AllowedMentions.none())
        super().__init__(intents=intents, **options)
        self.core = core
        self.settings = settings
        self.edit_interval = edit_interval
        self.tree = app_commands.CommandTree(self)
        self.tree.error(self._on_command_error)
        _add_commands(self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._exchanges: OrderedDict[int, _Exchange] = OrderedDict()

    # --- lifecycle --------------------------------------------------------------------------------------------------
    async def setup_hook(self) -> None:
        synced = await self.tree.sync()
        log.info("discord: synced %d application commands", len(synced))

    async def close(self) -> None:
        """Stop the work this bot started (uploads, answers), then disconnect."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        await super().close()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `coro` as a task this bot owns: cancelled on close, its failures logged."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    async def run_owned(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run `coro` as an owned task and wait for it (slash commands: discord.py starts their tasks, not us).
        Its failure is raised here, where the command tree reports it."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("discord task %s failed", task.get_name(), exc_info=error)

    async def on_ready(self) -> None:
        log.info("discord: connected as %s in %d guilds", getattr(self.user, "id", "?"), len(self.guilds))

    # --- mapping Discord onto our types -----------------------------------------------------------------------------
    async def channel_of(self, guild_id: int, channel: Any, channel_id: int) -> Channel:
        """Threads use their parent channel's index."""
        if channel is None:
            channel = self.get_channel(channel_id)
        if channel is None or isinstance(channel, discord.PartialMessageable):
            try:
                channel = await self.fetch_channel(channel_id)
            except discord.HTTPException:
                log.warning("discord: could not resolve channel %s; using it as its own index", channel_id)
                return Channel(PLATFORM, str(guild_id), str(channel_id))
        parent_id = getattr(channel, "parent_id", None) if isinstance(channel, discord.Thread) else None
        return Channel(PLATFORM, str(guild_id), str(parent_id or channel.id))

    @staticmethod
    def user_of(member: discord.abc.User, channel: Any) -> User:
        """Moderator = Manage Messages in that channel."""
        moderator = False
        if isinstance(member, discord.Member) and channel is not None and hasattr(channel, "permissions_for"):
            moderator = channel.permissions_for(member).manage_messages
        return User(id=str(member.id), name=member.display_name, is_moderator=moderator)

    # --- messages ---------------------------------------------------------------------------------------------------
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.user is None or message.author.id == self.user.id or message.guild is None:
            return
        self.spawn(self.handle_message(message), name=f"discord-message-{message.id}")

    async def handle_message(self, message: discord.Message) -> None:
        assert message.guild is not None and self.user is not None
        channel = await self.channel_of(message.guild.id, message.channel, message.channel.id)
        if not self.core.is_allowed(channel):
            return
        user = self.user_of(message.author, message.channel)
        pdfs = [a for a in message.attachments if _is_pdf(a)]
        links = self.core.paper_links(message.content)
        for attachment in pdfs:
            await self.ingest_attachment(message, channel, user, attachment)
        for url in links:
            await self.ingest_link(message, channel, user, url)

        referenced = await self._referenced(message)
        own_role = message.guild.self_role
        mentioned = re.search(rf"<@!?{self.user.id}>", message.content) is not None or (
            own_role is not None and own_role in message.role_mentions
        )
        replying_to_bot = referenced is not None and referenced.author.id == self.user.id
        if not (mentioned or replying_to_bot):
            return
        question = _question_text(message.content, self.user.id, links, own_role.id if own_role else None)
        if not question:
            if not pdfs and not links:
                await self._reply(message, self.core.help_text())
            return
        history = self._history(referenced) if replying_to_bot and referenced is not None else []
        previous = referenced.id if referenced is not None and referenced.id in self._exchanges else None
        placeholder = await self._reply(message, render.THINKING)
        if placeholder is None:
            return
        log.info(
            "discord: question %s in %s by %s (%d earlier turns)", message.id, channel.index_name, user.id, len(history)
        )
        await self.stream_answer(channel, user, question, ReplyTarget(placeholder), history=history, previous=previous)

    async def _referenced(self, message: discord.Message) -> discord.Message | None:
        """The message this one replies to. Discord sends it along; it is fetched only when the bot was pinged."""
        reference = message.reference
        if reference is None or reference.message_id is None:
            return None
        if isinstance(reference.resolved, discord.Message):
            return reference.resolved
        if isinstance(reference.cached_message, discord.Message):
            return reference.cached_message
        if self.user not in message.mentions:
            return None
        try:
            return await message.channel.fetch_message(reference.message_id)
        except discord.HTTPException:
            return None

    def _history(self, answer_message: discord.Message) -> list[Turn]:
        """Earlier turns of a conversation, oldest first, following replies back from `answer_message`."""
        turns: list[Turn] = []
        cursor: int | None = answer_message.id
        while cursor is not None and len(turns) < MAX_HISTORY_TURNS:
            exchange = self._exchanges.get(cursor)
            if exchange is None:
                break
            turns.append(exchange.turn)
            cursor = exchange.previous
        if not turns:
            # Not remembered (e.g. after a restart): use the answer text the message itself shows.
            body = render.answer_body(answer_message.content)
            if body:
                turns.append(Turn(question="", answer=body))
        return list(reversed(turns))

    def _remember(self, message_ids: Sequence[int], question: str, answer: Answer, previous: int | None) -> None:
        exchange = _Exchange(Turn(question=question, answer=answer.answer), previous)
        for message_id in message_ids:
            self._exchanges[message_id] = exchange
            self._exchanges.move_to_end(message_id)
        while len(self._exchanges) > _EXCHANGE_CACHE:
            self._exchanges.popitem(last=False)

    async def _reply(self, message: discord.Message, text: str) -> discord.Message | None:
        """Reply in the message's channel; None (logged) when Discord refuses, e.g. no permission to post there."""
        try:
            return await message.reply(text, mention_author=False)
        except discord.HTTPException as error:
            log.warning("discord: cannot reply in channel %s (%s %s)", message.channel.id, error.status, error.code)
            return None

    # --- papers -----------------------------------------------------------------------------------------------------
    async def ingest_attachment(
        self, message: discord.Message, channel: Channel, user: User, attachment: discord.Attachment
    ) -> None:
        limit = int(self.settings.max_file_mb * 2**20)
        if attachment.size > limit:  # before downloading a byte of it
            log.info("discord: refused %s (%d bytes) in %s", attachment.id, attachment.size, channel.index_name)
            text = render.too_large(attachment.filename, attachment.size, self.settings.max_file_mb)
            await self._reply(message, text)
            return
        status = await self._reply(message, render.ingest_started(attachment.filename))
        if status is None:
            return
        editor = ThrottledEditor(lambda text: status.edit(content=text), self.edit_interval)
        editor.mark_sent(status.content)
        try:
            try:
                data = await asyncio.wait_for(attachment.read(), DOWNLOAD_TIMEOUT_S)
            except (discord.HTTPException, aiohttp.ClientError, asyncio.TimeoutError) as error:
                log.warning("discord: download of attachment %s failed: %r", attachment.id, error)
                await editor.final(render.download_failed(attachment.filename))
                return

            async def progress(line: str) -> None:
                await editor.update(render.ingest_progress(attachment.filename, line))

            text = await self._guard(
                lambda: self.core.ingest_upload(channel, user, attachment.filename, data, progress),
                lambda report: render.ingest_report(report, attachment.filename),
                f"ingesting attachment {attachment.id}",
            )
            await editor.final(text)
        except discord.HTTPException as error:  # e.g. someone deleted the status message meanwhile
            log.warning("discord: could not show the outcome of %s (%s %s)", attachment.id, error.status, error.code)
        finally:
            await editor.close()

    async def ingest_link(self, message: discord.Message, channel: Channel, user: User, url: str) -> None:
        status = await self._reply(message, render.ingest_started(url))
        if status is None:
            return
        editor = ThrottledEditor(lambda text: status.edit(content=text), self.edit_interval)
        editor.mark_sent(status.content)

        async def progress(line: str) -> None:
            await editor.update(render.ingest_progress(url, line))

        try:
            text = await self._guard(
                lambda: self.core.ingest_url(channel, user, url, progress),
                lambda report: render.ingest_report(report, url),
                "ingesting a link",
            )
            await editor.final(text)
        except discord.HTTPException as error:
            log.warning("discord: could not show the outcome of a link (%s %s)", error.status, error.code)
        finally:
            await editor.close()

    async def _guard(self, call: Callable[[], Awaitable[Any]], show: Callable[[Any], str], what: str) -> str:
        """Run a Core call; a user-facing error becomes its message, anything else is logged as a bug."""
        try:
            return show(await call())
        except USER_FACING as error:
            return render.failed(str(error))
        except Exception:
            log.exception("discord: failed %s", what)
            return render.apology()

    # --- answers ----------------------------------------------------------------------------------------------------
    async def stream_answer(
        self,
        channel: Channel,
        user: User,
        question: str,
        target: AnswerTarget,
        *,
        history: Sequence[Turn] = (),
        paper: str | None = None,
        previous: int | None = None,
        shown: str = render.THINKING,
    ) -> None:
        """Stream Core's answer into `target`: queue position, the answer as it grows, then the final pieces."""
        editor = ThrottledEditor(target.edit, self.edit_interval)
        editor.mark_sent(shown)
        started = time.monotonic()
        # aclosing: leaving early, or being cancelled at shutdown, closes the stream, and that stops the generation.
        events = contextlib.aclosing(self.core.ask(channel, user, question, history=history, paper=paper))
        try:
            async with events as stream:
                async for event in stream:
                    if isinstance(event, Queued):
                        await editor.update(render.queued(event.position))
                    elif isinstance(event, Partial):
                        await editor.update(render.streaming(event))
                    elif isinstance(event, Final):
                        await editor.close()
                        await self._post_answer(channel, question, event.answer, target, previous)
                        log.info("discord: answered in %s after %.1fs", channel.index_name, time.monotonic() - started)
                        return
                    elif isinstance(event, Failed):
                        await editor.final(render.failed(event.message))
                        return
            log.error("discord: answer stream ended without Final or Failed")  # a bug in Core
            await editor.final(render.apology())
        except USER_FACING as error:
            await editor.final(render.failed(str(error)))
        except discord.HTTPException as error:
            log.warning("discord: could not show an answer in %s (%s %s)", channel.index_name, error.status, error.code)
        except Exception:
            log.exception("discord: answering failed in %s", channel.index_name)
            await editor.final(render.apology())
        finally:
            await editor.close()

    async def _post_answer(
        self, channel: Channel, question: str, answer: Answer, target: AnswerTarget, previous: int | None
    ) -> None:
        pieces = render.answer_pieces(answer)
        ids = [await deliver(lambda: target.edit(pieces[0]))]
        for piece in pieces[1:]:
            ids.append(await deliver(lambda piece=piece: target.send_more(piece)))
        self._remember(ids, question, answer, previous)
        for message_id in ids:
            try:
                await self.core.answer_posted(channel, str(message_id), question, answer)
            except USER_FACING as error:
                log.warning("discord: could not remember answer %s: %s", message_id, error)

    # --- reactions and joins ----------------------------------------------------------------------------------------
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if payload.guild_id is None or self.user is None or payload.user_id == self.user.id:
            return
        if payload.member is not None and payload.member.bot:
            return
        vote = render.vote(str(payload.emoji))
        if vote is None:
            return
        self.spawn(self.record_vote(payload, vote), name=f"discord-vote-{payload.message_id}")

    async def record_vote(self, payload: discord.RawReactionActionEvent, vote: int) -> None:
        assert payload.guild_id is not None
        channel = await self.channel_of(payload.guild_id, None, payload.channel_id)
        name = payload.member.display_name if payload.member is not None else str(payload.user_id)
        user = User(id=str(payload.user_id), name=name)
        try:
            known = await self.core.record_feedback(channel, user, str(payload.message_id), vote)
        except USER_FACING as error:
            log.warning("discord: feedback on %s not recorded: %s", payload.message_id, error)
            return
        log.info("discord: vote %+d on %s %s", vote, payload.message_id, "recorded" if known else "ignored (no answer)")

    async def on_guild_join(self, guild: discord.Guild) -> None:
        self.spawn(self.introduce(guild), name=f"discord-join-{guild.id}")

    async def introduce(self, guild: discord.Guild) -> None:
        """Introduce the bot in the first channel where it may post (the system channel when it can)."""
        me = guild.me
        candidates = ([guild.system_channel] if guild.system_channel else []) + sorted(
            guild.text_channels, key=lambda c: c.position
        )
        for channel in candidates:
            permissions = channel.permissions_for(me)
            if not (permissions.view_channel and permissions.send_messages):
                continue
            if not self.core.is_allowed(Channel(PLATFORM, str(guild.id), str(channel.id))):
                continue
            try:
                await channel.send(self.core.introduction())
            except discord.HTTPException as error:
                log.warning("discord: introduction refused in %s (%s %s)", channel.id, error.status, error.code)
                continue
            log.info("discord: joined guild %s; introduced in %s", guild.id, channel.id)
            return
        log.info("discord: joined guild %s; no channel to introduce myself in", guild.id)

    # --- slash commands ---------------------------------------------------------------------------------------------
    async def command_context(self, interaction: discord.Interaction) -> tuple[Channel, User] | None:
        """The channel and user of a deferred command, or None after telling the user the channel is not enabled."""
        assert interaction.guild_id is not None
        channel = await self.channel_of(interaction.guild_id, interaction.channel, interaction.channel_id or 0)
        if not self.core.is_allowed(channel):
            await interaction.edit_original_response(content=render.not_allowed())
            return None
        member = interaction.user
        user = User(id=str(member.id), name=member.display_name, is_moderator=interaction.permissions.manage_messages)
        return channel, user

    async def respond(self, interaction: discord.Interaction, pieces: Sequence[str], *, ephemeral: bool) -> None:
        """Fill a deferred response; pieces past the first become followups."""
        await interaction.edit_original_response(content=pieces[0])
        for piece in pieces[1:]:
            await interaction.followup.send(piece, ephemeral=ephemeral)

    async def slash_ask(self, interaction: discord.Interaction, question: str, paper: str | None) -> None:
        await interaction.response.defer(thinking=True)  # first: the 3-second window
        context = await self.command_context(interaction)
        if context is None:
            return
        channel, user = context
        await self.stream_answer(channel, user, question, InteractionTarget(interaction), paper=paper, shown="")

    async def slash_list(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        context = await self.command_context(interaction)
        if context is None:
            return
        try:
            pieces = render.papers_list(await self.core.list_papers(context[0]))
        except USER_FACING as error:
            pieces = [render.failed(str(error))]
        await self.respond(interaction, pieces, ephemeral=True)

    async def slash_status(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        context = await self.command_context(interaction)
        if context is not None:
            text = await self._guard(lambda: self.core.status(context[0]), render.status, "reading the status")
            await self.respond(interaction, [text], ephemeral=True)

    async def slash_help(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.respond(interaction, split_message(self.core.help_text(), render.MESSAGE_LIMIT), ephemeral=True)

    async def slash_remove(self, interaction: discord.Interaction, paper: int) -> None:
        # Ephemeral, so a refusal is seen only by who asked; the channel hears about a removal through a followup.
        await interaction.response.defer(ephemeral=True, thinking=True)
        context = await self.command_context(interaction)
        if context is None:
            return
        channel, user = context
        try:
            info = await self.core.remove_paper(channel, user, paper)
        except USER_FACING as error:
            await interaction.edit_original_response(content=render.failed(str(error)))
            return
        await interaction.edit_original_response(content=render.removed(info))
        await interaction.followup.send(render.removed_notice(interaction.user.mention, info), ephemeral=False)

    async def slash_clear(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        context = await self.command_context(interaction)
        if context is None:
            return
        channel, user = context
        try:
            count = await self.core.clear(channel, user)
        except USER_FACING as error:
            await interaction.edit_original_response(content=render.failed(str(error)))
            return
        await interaction.edit_original_response(content=render.cleared(count))
        await interaction.followup.send(render.cleared_notice(interaction.user.mention, count), ephemeral=False)

    async def paper_choices(self, interaction: discord.Interaction, current: str) -> list[tuple[int, str]]:
        """(doc id, label) of this channel's papers matching what the user typed, for autocomplete."""
        if interaction.guild_id is None:
            return []
        channel = await self.channel_of(interaction.guild_id, interaction.channel, interaction.channel_id or 0)
        if not self.core.is_allowed(channel):
            return []
        try:
            papers = await self.core.list_papers(channel)
        except USER_FACING:
            return []
        needle = current.strip().lower()
        matches = [p for p in papers if needle in p.title.lower() or needle == str(p.doc_id)]
        return [(p.doc_id, f"{p.doc_id}: {p.title}"[:100]) for p in matches[:25]]

    async def _on_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        original = getattr(error, "original", error)
        if isinstance(original, USER_FACING):
            text = render.failed(str(original))
        else:
            name = getattr(interaction.command, "qualified_name", "?")
            log.error("discord: command %s failed", name, exc_info=original)
            text = render.apology()
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            log.warning("discord: could not report a command error to the user")


def _add_commands(bot: PaperBot) -> None:
    tree = bot.tree

    async def paper_title_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        choices = await bot.paper_choices(interaction, current)
        return [app_commands.Choice(name=label, value=str(doc_id)) for doc_id, label in choices]

    async def paper_id_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[int]]:
        choices = await bot.paper_choices(interaction, current)
        return [app_commands.Choice(name=label, value=doc_id) for doc_id, label in choices]

    @tree.command(name="ask", description="Ask a question about the papers in this channel")
    @app_commands.describe(question="Your question", paper="Only this paper (its id or part of its title)")
    @app_commands.autocomplete(paper=paper_title_choices)
    @app_commands.guild_only()
    async def ask(interaction: discord.Interaction, question: str, paper: str | None = None) -> None:
        await bot.run_owned(bot.slash_ask(interaction, question, paper), _task_name(interaction))

    papers = app_commands.Group(name="papers", description="The papers in this channel", guild_only=True)

    @papers.command(name="list", description="List the papers in this channel")
    async def list_(interaction: discord.Interaction) -> None:
        await bot.run_owned(bot.slash_list(interaction), _task_name(interaction))

    @papers.command(name="remove", description="Remove one paper (its uploader or a moderator)")
    @app_commands.describe(paper="The paper's id (see /papers list)")
    @app_commands.autocomplete(paper=paper_id_choices)
    async def remove(interaction: discord.Interaction, paper: int) -> None:
        await bot.run_owned(bot.slash_remove(interaction, paper), _task_name(interaction))

    @papers.command(name="clear", description="Remove every paper from this channel (moderators)")
    async def clear(interaction: discord.Interaction) -> None:
        await bot.run_owned(bot.slash_clear(interaction), _task_name(interaction))

    @papers.command(name="status", description="Papers, model and queue at a glance")
    async def status(interaction: discord.Interaction) -> None:
        await bot.run_owned(bot.slash_status(interaction), _task_name(interaction))

    @papers.command(name="help", description="How to use paperbot")
    async def help_(interaction: discord.Interaction) -> None:
        await bot.run_owned(bot.slash_help(interaction), _task_name(interaction))

    tree.add_command(papers)


# --- helpers ----------------------------------------------------------------------------------------------------------
def _task_name(interaction: discord.Interaction) -> str:
    return f"discord-command-{interaction.id}"


def _is_pdf(attachment: discord.Attachment) -> bool:
    return attachment.filename.lower().endswith(".pdf") or (attachment.content_type or "").startswith("application/pdf")


def _question_text(content: str, bot_id: int, links: Sequence[str], role_id: int | None = None) -> str:
    """The message without the bot's mention and without paper links (those are being added, not asked about)."""
    text = re.sub(rf"<@!?{bot_id}>", " ", content)
    if role_id is not None:
        text = text.replace(f"<@&{role_id}>", " ")
    for url in links:
        text = text.replace(url, " ")
    text = re.sub(r"https?://(?:www\.)?(?:export\.)?arxiv\.org/(?:abs|pdf)/\S+", " ", text)
    return " ".join(text.split())


# --- entry point ------------------------------------------------------------------------------------------------------
async def serve(core: Core, settings: Settings) -> None:
    """Run the Discord bot until cancelled (`paperbot run discord`)."""
    if settings.discord_token is None:
        raise ValueError("Set DISCORD_TOKEN (or PAPERBOT_DISCORD_TOKEN) to the bot's token from the developer portal.")
    bot = PaperBot(core, settings)
    try:
        async with bot:
            await bot.start(settings.discord_token.get_secret_value())
    except discord.LoginFailure as error:
        message = "Discord refused DISCORD_TOKEN; copy the bot token again from the developer portal."
        raise ValueError(message) from error
    except discord.PrivilegedIntentsRequired as error:
        raise ValueError(
            "Turn on the Message Content intent for this bot (developer portal → Bot → Privileged Gateway Intents)."
        ) from error
