"""The settings split: the engine's object holds no platform field; the program's one reads both, secrets from files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Settings
from rag_engine.settings import EngineSettings


def test_engine_settings_have_no_platform_fields() -> None:
    platform = {"discord_token", "slack_bot_token", "slack_mode", "web_port", "health_port", "allowed_channels", "bot_name"}
    assert not platform & set(EngineSettings.model_fields)
    assert platform <= set(Settings.model_fields)
    assert set(EngineSettings.model_fields) <= set(Settings.model_fields)


def test_secrets_are_read_from_files_for_both_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "discord").write_text("discord-secret\n", encoding="utf-8")
    (tmp_path / "api").write_text("api-secret\n", encoding="utf-8")
    monkeypatch.setenv("DISCORD_TOKEN_FILE", str(tmp_path / "discord"))
    monkeypatch.setenv("PAPERBOT_LLM_API_KEY_FILE", str(tmp_path / "api"))
    monkeypatch.setenv("PAPERBOT_SLACK_MODE", "http")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.discord_token is not None and settings.discord_token.get_secret_value() == "discord-secret"
    assert settings.llm_api_key.get_secret_value() == "api-secret"
    assert settings.slack_mode == "http"
    engine = EngineSettings(_env_file=None)  # type: ignore[call-arg]
    assert engine.llm_api_key.get_secret_value() == "api-secret"
    assert not hasattr(engine, "discord_token")
