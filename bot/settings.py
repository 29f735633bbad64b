"""The one settings object of the program: the engine's settings plus the chat platforms' (tokens, ports, channels).

Read once at an entry point (`Settings()`: the environment and `.env`), then passed down; the engine receives it as
its `EngineSettings` base and never reads the platform fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr

from rag_engine.settings import EngineSettings


def token(name: str, description: str) -> Any:
    """A platform secret, read as `PAPERBOT_<NAME>` or by its usual name `<NAME>` (and `<NAME>_FILE`)."""
    return Field(None, validation_alias=AliasChoices(f"PAPERBOT_{name}", name), description=description)


class Settings(EngineSettings):
    """Every knob of paperbot. Each field is `PAPERBOT_<NAME>` in the environment (tokens also by their usual names)."""

    # --- running -----------------------------------------------------------------------------------------------------
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR, for `paperbot run`.")
    log_format: Literal["text", "json"] = Field("text", description="One line per event: plain text or JSON.")
    health_host: str = Field("127.0.0.1", description="Where `paperbot run` serves /healthz and /readyz.")
    health_port: int = Field(8321, ge=0, le=65535, description="Port of /healthz and /readyz; 0 turns them off.")

    # --- chat surfaces -----------------------------------------------------------------------------------------------
    web_host: str = Field("127.0.0.1", description="Where the web chat listens; it has no login, so keep it local.")
    web_port: int = Field(7860, description="Port of the web chat.")
    discord_token: SecretStr | None = token(
        "DISCORD_TOKEN", "The Discord bot token (Developer Portal → Bot → Reset Token)."
    )
    slack_bot_token: SecretStr | None = token("SLACK_BOT_TOKEN", "The Slack bot token (xoxb-…).")
    slack_app_token: SecretStr | None = token(
        "SLACK_APP_TOKEN", "The Slack app-level token for Socket Mode (xapp-…, scope connections:write)."
    )
    slack_signing_secret: SecretStr | None = token("SLACK_SIGNING_SECRET", "The Slack signing secret (http mode).")
    slack_mode: Literal["socket", "http"] = Field(
        "socket", description="socket (Socket Mode, no public URL) or http (events POSTed to slack_http_port)."
    )
    slack_http_host: str = Field("0.0.0.0", description="Where the Slack HTTP endpoint listens (http mode).")
    slack_http_port: int = Field(3000, description="Port of the Slack HTTP endpoint (http mode).")
    allowed_channels: list[str] = Field(default_factory=list, description="If set, the bot only acts in these channels.")
    download_hosts: list[str] = Field(
        default_factory=lambda: ["cdn.discordapp.com", "media.discordapp.net", "files.slack.com", "arxiv.org", "export.arxiv.org"],
        description="Hosts the bot may download PDFs from.",
    )
    arxiv_base_url: str = Field("https://arxiv.org", description="Where arXiv links are fetched from.")
    download_deadline_s: float = Field(120.0, gt=0, description="Longest a whole download may take, in seconds.")
    bot_name: str = Field("paperbot", description="The name the bot introduces itself by.")
    user_rate_per_minute: int = Field(6, ge=1, description="Questions one user may ask per minute.")
