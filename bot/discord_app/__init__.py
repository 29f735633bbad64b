"""The Discord adapter: turns gateway events and slash commands into `Core` calls and renders what comes back.

Behaviour (permissions, limits, what a failure says) lives in `bot.core`; this package only knows Discord: intents,
mentions, attachments, replies, message edits at a pace Discord accepts, interactions and their 3-second window.
Message text comes from `bot.discord_app.render`.

`PaperBot` is assembled from one part per job, each in its own module:

- `app`: the client (intents, the command tree, owned tasks, shutdown); `serve`
- `events`: messages (uploaded PDFs, paper links, mentions and replies that ask), joining a guild
- `answers`: Core's answer streamed into a placeholder, then posted in pieces
- `targets`: where an answer goes: a reply message, or an interaction's deferred response
- `history`: the message a reply refers to, the answers the bot remembers, earlier turns
- `ingest`: indexing attachments and links, progress shown by editing a reply
- `slash`: `/ask` and the `/papers` group
- `feedback`: 👍/👎 reactions on answers
- `mapping`: Discord channels and members as our `Channel` and `User` (who is a moderator)
- `editing`: edits of a message being written at a pace Discord accepts; retrying sends that matter
- `render`: what the messages say (pure functions)
"""

from bot.discord_app.app import PaperBot, serve
from bot.discord_app.editing import EDIT_INTERVAL_S, ThrottledEditor, deliver
from bot.discord_app.history import MAX_HISTORY_TURNS
from bot.discord_app.ingest import DOWNLOAD_TIMEOUT_S
from bot.discord_app.mapping import PLATFORM
from bot.discord_app.targets import AnswerTarget, InteractionTarget, ReplyTarget

__all__ = [
    "DOWNLOAD_TIMEOUT_S",
    "EDIT_INTERVAL_S",
    "MAX_HISTORY_TURNS",
    "PLATFORM",
    "AnswerTarget",
    "InteractionTarget",
    "PaperBot",
    "ReplyTarget",
    "ThrottledEditor",
    "deliver",
    "serve",
]
