"""The Discord adapter: turns gateway events and slash commands into `Core` calls and renders what comes back.

Behaviour (permissions, limits, what a failure says) lives in `bot.core`; this package only knows Discord: intents,
mentions, attachments, replies, message edits at a pace Discord accepts, interactions and their 3-second window.

`PaperBot` (a discord.Client) is composed of one object per job, each given what it needs:

- `app`: the client, its owned tasks and shutdown, the gateway events (messages, reactions, joining); `serve`
- `mapping`: `Places` (which index a Discord channel uses), `user_of` (who is a moderator)
- `conversations`: the message a reply refers to, the answers the bot remembers, earlier turns
- `answers`: where an answer goes (reply or interaction) and `Answering`, Core's answer streamed into it
- `ingest`: `Ingestion`, attachments and links indexed with progress shown by editing a reply
- `slash`: `SlashCommands`, `/ask` and the `/papers` group (on `bot.slash.run_command`)
- `editing`: edits of a message being written at a pace Discord accepts; retrying sends that matter; replies
- `render`: what the messages say (pure functions)
"""

from bot.discord_app.answers import AnswerTarget, InteractionTarget, ReplyTarget
from bot.discord_app.app import PaperBot, serve
from bot.discord_app.conversations import MAX_HISTORY_TURNS
from bot.discord_app.editing import EDIT_INTERVAL_S, ThrottledEditor, deliver
from bot.discord_app.ingest import DOWNLOAD_TIMEOUT_S
from bot.discord_app.mapping import PLATFORM

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
