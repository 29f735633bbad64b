"""The terminal chat: the same core as the chat platforms, reading lines from stdin."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TextIO

from bot.core import Core
from bot.formatting import plural, source_lines
from bot.hints import for_console
from bot.messages import Channel, Failed, Final, Partial, Queued, Turn, User
from rag_engine.errors import USER_FACING

HELP = """Commands: /add PATH…  /papers  /remove ID  /clear  /status  /help  /quit — anything else is a question.
Ask about one paper with: /ask ID question"""

LOCAL_USER = User(id="local", name="you", is_moderator=True)
COMMANDS = ("/add", "/papers", "/remove", "/clear", "/status", "/help", "/quit", "/exit", "/ask")


class ConsoleChat:
    def __init__(self, core: Core, index: str, out: TextIO = sys.stdout) -> None:
        self.core = core
        self.channel = Channel("cli", "local", index)
        self.out = out
        self.history: list[Turn] = []
        # A progress line is redrawn in place on a terminal; piped output gets no escape codes and no progress.
        self.interactive = out.isatty()

    def say(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    async def handle(self, line: str) -> bool:
        """Act on one input line; False means quit."""
        line = line.strip()
        if not line:
            return True
        command, _, rest = line.partition(" ")
        try:
            if command in ("/quit", "/exit"):
                return False
            if command == "/help":
                self.say(HELP)
            elif command == "/add":
                for path in rest.split():
                    await self.add(Path(path).expanduser())
            elif command == "/papers":
                papers = await self.core.list_papers(self.channel)
                listing = "\n".join(f"{p.doc_id}\t{p.title} ({plural(p.pages, 'page')})" for p in papers)
                self.say(listing or "No papers yet: /add PATH")
            elif command == "/remove":
                paper = await self.core.remove_paper(self.channel, LOCAL_USER, int(rest))
                self.say(f"Removed {paper.title}.")
            elif command == "/clear":
                self.say(f"Removed {plural(await self.core.clear(self.channel, LOCAL_USER), 'paper')}.")
            elif command == "/status":
                s = await self.core.status(self.channel)
                size = f"{plural(s.papers, 'paper')}, {plural(s.chunks, 'passage')}"
                self.say(f"{size} · model {s.model} on {s.runs_on} · queue {s.queue_depth}")
            elif command == "/ask":
                paper, _, question = rest.partition(" ")
                await self.ask(question, paper)
            elif command.startswith("/") and command not in COMMANDS:
                self.say(f"Unknown command {command}; /help lists them.")
            else:
                await self.ask(line)
        except USER_FACING as error:
            self.say(for_console(str(error)))
        except ValueError:
            self.say("That needs a number: /remove ID (see /papers).")
        return True

    async def add(self, path: Path) -> None:
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as error:
            self.say(f"{path}: cannot read it ({error.strerror}).")
            return

        async def progress(message: str) -> None:
            self.say(f"\r\033[K  {message}", end="")

        report = await self.core.ingest_upload(
            self.channel, LOCAL_USER, path.name, data, progress if self.interactive else None
        )
        if self.interactive:
            self.say("\r\033[K", end="")  # wipe the progress line
        if report.status == "indexed":
            self.say(f"Indexed {report.title} ({plural(report.pages, 'page')}, {plural(report.chunks, 'passage')}).")
        elif report.status == "duplicate":
            self.say(report.message or "Already indexed.")
        else:
            self.say(f"{path.name}: {report.message}")

    async def ask(self, question: str, paper: str | None = None) -> None:
        shown = 0
        async for event in self.core.ask(self.channel, LOCAL_USER, question, self.history[-3:], paper):
            if isinstance(event, Queued):
                self.say(f"(waiting for the model: position {event.position})")
            elif isinstance(event, Partial):
                self.say(event.answer[shown:], end="")
                shown = len(event.answer)
            elif isinstance(event, Final):
                answer = event.answer
                self.say(answer.answer[shown:] if answer.answer.startswith(answer.answer[:shown]) else "\n" + answer.answer)
                if answer.reasoning:
                    self.say(f"  reasoning: {answer.reasoning}")
                for line in source_lines(answer):
                    self.say(f"  {line}")
                self.history.append(Turn(question, answer.answer))
            elif isinstance(event, Failed):
                self.say(for_console(event.message))


async def run_console(core: Core, index: str, stdin: TextIO = sys.stdin) -> None:
    """Read-eval loop until end of input or /quit."""
    chat = ConsoleChat(core, index)
    chat.say(f"paperbot — index '{index}'. {HELP}")
    while True:
        chat.say("> ", end="")
        line = await asyncio.to_thread(stdin.readline)
        if not line or not await chat.handle(line):
            break
