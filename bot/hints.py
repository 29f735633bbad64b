"""Each surface names its own commands: library messages name the chat platforms' (`/papers list`); the CLI, the
terminal chat and the web chat put theirs in its place.

>>> for_cli("No paper here matches 'x'. `/papers list` shows the titles and ids.", "ml")
"No paper here matches 'x'. `paperbot papers --index ml` shows the titles and ids."
>>> for_console("There is no paper with id 9 in 'ml'. `/papers list` shows the ids.")
"There is no paper with id 9 in 'ml'. /papers shows the ids."
>>> for_web("There is no paper with id 9 in 'ml'. `/papers list` shows the ids.")
"There is no paper with id 9 in 'ml'. The Papers list shows the ids."
"""

from __future__ import annotations

from rag_engine.errors import LIST_PAPERS


def for_cli(message: str, index: str) -> str:
    """`message` naming `paperbot papers` instead of the chat's listing command."""
    return message.replace(LIST_PAPERS, f"`paperbot papers --index {index}`")


def cli_error(error: Exception, index: str | None) -> str:
    """A user-facing failure as the CLI prints it: its own commands named, and how to start an unknown index."""
    from rag_engine.errors import IndexNotFound

    message = for_cli(str(error), index) if index else str(error)
    if isinstance(error, IndexNotFound):
        message = message.rstrip(".") + f": paperbot ingest --index {error.name} FILE"
    return message


def for_console(message: str) -> str:
    """`message` naming the terminal chat's `/papers` instead of the chat platforms' `/papers list`."""
    return message.replace(LIST_PAPERS, "/papers")


def for_web(message: str) -> str:
    """`message` pointing at the web chat's Papers list instead of the chat platforms' `/papers list`."""
    return message.replace(LIST_PAPERS, "The Papers list")
