"""`paperbot` command line: each command's flags and help live here, with the command; its work is in bot.commands.

Imports stay lazy so that a command loads only what it uses: `papers`, `remove` or `status` import neither torch nor
llama.cpp's model code, and start in about a second.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import click

from bot import commands, operations
from bot.commands import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE
from rag_engine.llm.factory import load_llama_cpp_first

INDEX_HELP = "the index: a free name, or discord/GUILD/CHANNEL, slack/TEAM/CHANNEL"


def _run(handler: Callable[..., Awaitable[int]], **kwargs: Any) -> int:
    """Settings from the environment, then the handler on an event loop; a user-facing failure is one line."""
    import logging

    from bot.logging_setup import secret_values
    from bot.logs import setup_logging
    from bot.shutdown import run_until_signalled
    from rag_engine.errors import USER_FACING, IndexNotFound
    from bot.settings import Settings

    context = click.get_current_context()
    settings = Settings()
    is_server = context.info_name == "run"
    setup_logging(
        verbosity=context.obj,
        level=settings.log_level if is_server else logging.WARNING,
        fmt=settings.log_format,
        secrets=secret_values(settings),
    )
    try:
        return run_until_signalled(handler(settings, **kwargs))
    except USER_FACING as error:
        from bot.hints import cli_error

        print(f"paperbot: {cli_error(error, kwargs.get('index'))}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, IndexNotFound) else EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def index_option(default: str | None = None) -> Callable[[Any], Any]:
    """--index, required unless a default is given (click 8.3 treats an explicit default=None as a value)."""
    if default is None:
        return click.option("--index", required=True, metavar="NAME", help=INDEX_HELP)
    return click.option("--index", default=default, show_default=True, metavar="NAME", help=INDEX_HELP)


def json_option() -> Callable[[Any], Any]:
    return click.option("--json", "as_json", is_flag=True, help="print JSON instead of text (for scripts)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True,
              help="log paperbot's debug details to stderr; -vv adds the libraries' (SQL, HTTP, Discord…)")
@click.pass_context
def cli(context: click.Context, verbose: int) -> None:
    """Answers questions about the papers in a chat channel, with local models.

    Every setting is an environment variable or a line in .env (see .env.example).
    """
    context.obj = verbose


@cli.command()
@index_option()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="FILE...")
def ingest(index: str, files: tuple[Path, ...]) -> int:
    """Add PDF files to an index (created if new).

    Prints PATH<TAB>indexed: TITLE (N pages), already indexed, or failed: REASON per file; exits 1 if any failed.
    """
    return _run(commands.ingest, index=index, files=files)


@cli.command()
@index_option()
@click.option("--top-k", type=int, default=None, help="how many passages  [default: PAPERBOT_TOP_K]")
@click.option("--mode", type=click.Choice(["hybrid", "colbert", "lexical"]), default=None,
              help="ColBERT fused with BM25, ColBERT alone, or BM25 alone  [default: PAPERBOT_RETRIEVAL_MODE]")
@json_option()
@click.argument("query", nargs=-1, required=True)
def search(index: str, top_k: int | None, mode: str | None, as_json: bool, query: tuple[str, ...]) -> int:
    """Find the passages that best match QUERY."""
    if not " ".join(query).strip():
        raise click.UsageError("the query is empty: say what to look for.")
    return _run(commands.search, index=index, query=" ".join(query), top_k=top_k, mode=mode, as_json=as_json)


@cli.command()
@index_option()
@json_option()
def papers(index: str, as_json: bool) -> int:
    """List the papers of an index: id, title, pages, when added."""
    return _run(commands.papers, index=index, as_json=as_json)


@cli.command()
@index_option()
@click.argument("doc_id", type=int, metavar="DOC_ID")
def remove(index: str, doc_id: int) -> int:
    """Remove one paper (its id is in `paperbot papers`)."""
    return _run(commands.remove, index=index, doc_id=doc_id)


@cli.command()
@index_option()
def clear(index: str) -> int:
    """Remove every paper of an index."""
    return _run(commands.clear, index=index)


@cli.command()
@index_option()
@click.option("--paper", default=None, metavar="ID|TITLE",
              help="limit the question to one paper (id or part of its title)")
@json_option()
@click.argument("question", nargs=-1, required=True)
def ask(index: str, paper: str | None, as_json: bool, question: tuple[str, ...]) -> int:
    """Answer QUESTION from an index's papers: answer, reasoning, sources."""
    load_llama_cpp_first()
    return _run(commands.ask, index=index, question=" ".join(question), paper=paper, as_json=as_json)


@cli.command()
@index_option(default="default")
def chat(index: str) -> int:
    """A terminal chat: add PDFs by path, ask, list and remove papers (/help inside)."""
    load_llama_cpp_first()
    return _run(commands.chat, index=index)


@cli.command()
def status() -> int:
    """Models and where they run, indexes and their size, whether the bot runs and its queue depth."""
    return _run(commands.status)


@cli.command()
@click.argument("platform", required=False, type=click.Choice(["web", "discord", "slack"]))
def run(platform: str | None) -> int:
    """Run the bot: the local web chat, Discord or Slack.

    Without PLATFORM: Discord if DISCORD_TOKEN is set, else Slack if SLACK_BOT_TOKEN is, else the web chat.
    """
    load_llama_cpp_first()
    return _run(commands.run, platform=platform)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path), metavar="PATH")
def backup(path: Path) -> int:
    """Copy the database to PATH (SQLite's online backup: consistent, safe while the bot runs)."""
    return _run(operations.backup, path=path)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path), metavar="PATH")
def restore(path: Path) -> int:
    """Replace the database by the backup at PATH (stop the bot first; the replaced file is kept)."""
    return _run(operations.restore, path=path)


@cli.command()
def prune() -> int:
    """Delete finished jobs, orphaned papers and files, and answers past PAPERBOT_ANSWER_RETENTION_DAYS."""
    return _run(operations.prune)


def main(argv: Sequence[str] | None = None) -> int:
    """The `paperbot` entry point; returns the exit status (2 for a usage error, as argparse did)."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="paperbot", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
