"""The Slack adapter: slack-bolt events and slash commands in, Core calls, Block Kit out.

One workspace per running bot (a bot token, plus an app token for Socket Mode or a signing secret for HTTP mode);
multi-workspace OAuth installs are out of scope. Events are acknowledged by Bolt before any work starts; the work runs
in tasks this adapter owns and cancels on shutdown.

`SlackBot` is composed of one object per job, each given what it needs:

- `app`: tokens, the Bolt app and which listener handles what, connecting (Socket Mode or HTTP), owned tasks; `serve`
- `events`: `Events`, mentions, channel messages (PDFs, paper links, thread replies), joining a channel, 👍/👎
- `threads`: `Threads`, answering in a thread (Core's answer streamed into one message) and reading threads back
- `ingest`: `Ingestion`, an uploaded PDF or a paper link indexed, its progress shown in one message
- `slash`: `SlashCommands`, `/ask` and `/papers` (on `bot.slash.run_command`)
- `mapping`: `People`, Slack channels and users as our `Channel` and `User` (who is a moderator)
- `editing`: throttled chat.update of a message being written, within the workspace's rate tier
- `api`: what the parts share about Web API calls: errors, chat.postMessage, the bot's `Identity`
- `blocks`: Block Kit messages for what Core returns, plain text from Slack markup (pure functions)
"""

from bot.slack_app.app import SlackBot, SlackSetupError, serve
from bot.slack_app.editing import EditBudget, LiveMessage
from bot.slack_app.threads import ANSWER_METADATA, HISTORY_TURNS, STOPPED

__all__ = [
    "ANSWER_METADATA",
    "HISTORY_TURNS",
    "STOPPED",
    "EditBudget",
    "LiveMessage",
    "SlackBot",
    "SlackSetupError",
    "serve",
]
