"""`paperbot` command line: parses flags, calls the library, prints. No behaviour of its own."""

from __future__ import annotations

# llama.cpp's libraries are loaded before numpy on purpose: with some numpy builds (2.5 with scipy-openblas) loading
# numpy first makes llama.cpp's CUDA model load crash (seen on an H100 image; bench/README.md).
try:
    import llama_cpp  # noqa: F401
except ImportError:  # pragma: no cover - the CLI still works for ingest/search without it
    pass

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from rag_engine.errors import USER_FACING, IndexNotFound
from rag_engine.settings import Settings

log = logging.getLogger("paperbot")

EXIT_FAILED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paperbot", description="Answers questions about the papers in a chat channel.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_index(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--index", required=True, help="a free name, or discord/GUILD/CHANNEL, slack/TEAM/CHANNEL")
        return p

    p = with_index(commands.add_parser("ingest", help="add PDF files to an index (creates it)"))
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")

    p = with_index(commands.add_parser("search", help="find passages"))
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--mode", choices=["hybrid", "colbert", "lexical"], default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("query", nargs="+")

    p = with_index(commands.add_parser("papers", help="list the papers of an index"))
    p.add_argument("--json", action="store_true")

    p = with_index(commands.add_parser("remove", help="remove one paper"))
    p.add_argument("doc_id", type=int, metavar="DOC_ID")

    with_index(commands.add_parser("clear", help="remove every paper of an index"))

    p = with_index(commands.add_parser("ask", help="answer a question from an index's papers"))
    p.add_argument("--paper", default=None, help="limit the question to one paper (id or part of its title)")
    p.add_argument("--json", action="store_true")
    p.add_argument("question", nargs="+")

    p = commands.add_parser("chat", help="a terminal chat (add PDFs by path, ask, list/remove papers)")
    p.add_argument("--index", default="default")

    commands.add_parser("status", help="models, where they run, indexes, queue depth")

    p = commands.add_parser("run", help="run the bot: web chat (default), discord or slack")
    p.add_argument("platform", nargs="?", choices=["web", "discord", "slack"], default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.command != "run" else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    settings = Settings()
    if args.command == "run":
        logging.getLogger().setLevel(settings.log_level)
    from bot import commands as handlers
    from bot.shutdown import run_until_signalled

    handler = getattr(handlers, f"cmd_{args.command}")
    try:
        return run_until_signalled(handler(args, settings))
    except USER_FACING as error:
        print(f"paperbot: {error}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, IndexNotFound) else EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def print_json(value: object) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=_jsonable))


def _jsonable(value: object) -> object:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)  # type: ignore[arg-type]
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
