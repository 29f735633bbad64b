"""The Slack adapter: slack-bolt events and slash commands in, Core calls, Block Kit out.

One workspace per running bot (a bot token, plus an app token for Socket Mode or a signing secret for HTTP mode);
multi-workspace OAuth installs are out of scope. Events are acknowledged by Bolt before any work starts; the work runs
in tasks this adapter owns and cancels on shutdown.

`SlackBot` is assembled from one part per job, each in its own module:

- `app`: tokens, the Bolt app and which listener handles what, connecting (Socket Mode or HTTP), owned tasks; `serve`
- `events`: mentions, channel messages (uploaded PDFs, paper links, replies in a thread), the bot joining a channel
- `answers`: answering in a thread, Core's answer streamed into one message
- `history`: which thread messages are the bot's answers; the earlier turns of a thread
- `ingest`: indexing an uploaded PDF or a paper link, its progress shown in one message
- `slash`: `/ask` and `/papers`
- `feedback`: 👍/👎 reactions on answers
- `mapping`: Slack channels and users as our `Channel` and `User` (who is a moderator)
- `editing`: throttled chat.update of a message being written, within the workspace's rate tier
- `api`: what the parts share about Web API calls: the errors they raise, chat.postMessage
- `recent`: a bounded map for what the bot remembers (events seen, threads, users)
- `blocks`: Block Kit messages for what Core returns, plain text from Slack markup (pure functions)
"""

from bot.slack_app.answers import STOPPED
from bot.slack_app.api import APOLOGY
from bot.slack_app.app import SlackBot, SlackSetupError, serve
from bot.slack_app.editing import EditBudget, LiveMessage
from bot.slack_app.history import ANSWER_METADATA, HISTORY_TURNS

__all__ = [
    "ANSWER_METADATA",
    "APOLOGY",
    "HISTORY_TURNS",
    "STOPPED",
    "EditBudget",
    "LiveMessage",
    "SlackBot",
    "SlackSetupError",
    "serve",
]
