"""Our own types at the platform edge: adapters turn platform payloads into these at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from rag_engine.types import AnswerEvent, Failed, Final, Partial, Queued, Turn

__all__ = [
    "APOLOGY", "AnswerEvent", "Channel", "Failed", "Final", "PaperInfo", "Partial", "Queued", "StatusInfo", "Turn",
    "User",
]

#: What a user reads when something failed on our side (the cause is logged); every surface says the same.
APOLOGY = "Sorry, something went wrong on my side. The error was logged; please try again."


@dataclass(frozen=True, slots=True)
class Channel:
    """Where something happened. Threads are given as their parent channel, so they share its index."""

    platform: str  # "discord" | "slack" | "web" | "cli"
    workspace: str  # Discord guild id, Slack team id, or "local"
    channel: str  # channel id, or a free index name for web/cli

    @property
    def index_name(self) -> str:
        if self.platform in ("web", "cli"):
            return self.channel
        return f"{self.platform}/{self.workspace}/{self.channel}"


@dataclass(frozen=True, slots=True)
class User:
    id: str
    name: str
    is_moderator: bool = False  # Discord "Manage Messages", Slack workspace admin/owner


@dataclass(frozen=True, slots=True)
class PaperInfo:
    doc_id: int
    title: str
    pages: int
    added: str
    uploader: str | None = None
    filename: str = ""


@dataclass(frozen=True, slots=True)
class StatusInfo:
    index_name: str
    papers: int
    chunks: int
    model: str
    runs_on: str  # e.g. "CUDA (all 37 layers offloaded)" or "CPU"
    encoder: str
    queue_depth: int
    extra: dict[str, str] = field(default_factory=dict)
