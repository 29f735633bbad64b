"""What the engine needs to know: storage, retrieval, input limits, generation.

The one settings object the program reads is `bot.settings.Settings`, a subclass that adds the chat platforms' knobs
(tokens, ports, channels); it is read once at an entry point from the environment and `.env`, then passed down. The
engine, training/ and bench/ type against `EngineSettings` and so never see a platform token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_COLBERT_MODEL = "colbert-ir/colbertv2.0"
DEFAULT_LLM_MODEL = "Qwen/Qwen2.5-3B-Instruct-GGUF:qwen2.5-3b-instruct-q4_k_m.gguf"


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("paperbot", appauthor=False))


class EngineSettings(BaseSettings):
    """The engine's knobs. Each field is `PAPERBOT_<NAME>` in the environment (secrets also by their usual names)."""

    model_config = SettingsConfigDict(
        env_prefix="PAPERBOT_", env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    # --- where things live -------------------------------------------------------------------------------------------
    data_dir: Path = Field(default_factory=_default_data_dir, description="Holds the database, uploads and models.")
    # --- retrieval ---------------------------------------------------------------------------------------------------
    colbert_model: str = Field(DEFAULT_COLBERT_MODEL, description="Local checkpoint folder, or a Hugging Face model id.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where ColBERT runs: auto = CUDA if any.")
    chunk_tokens: int = Field(180, ge=32, le=512, description="Largest chunk, in the encoder's tokens (doc_maxlen).")
    chunk_overlap: int = Field(32, ge=0, le=256, description="Tokens shared by neighbouring chunks.")
    encode_batch_size: int = Field(32, ge=1, description="Passages encoded together when indexing.")
    retrieval_mode: Literal["hybrid", "colbert", "lexical"] = Field(
        "hybrid", description="hybrid (ColBERT and BM25, fused), colbert, or lexical (BM25 only)."
    )
    top_k: int = Field(5, ge=1, le=50, description="Passages given to the model for one question.")
    min_relevance: float = Field(
        0.45,
        description="Below this ColBERT score (best passage, per query token, 0..1) the question is declined without "
        "asking the model. It depends on the encoder: 0.45 was chosen for all-MiniLM-L6 in the colbert-ir layout "
        "(docs/evaluation.md); colbert-ir/colbertv2.0 is untested.",
    )
    rerank_depth: int = Field(
        32, ge=0, description="A compressed index's best passages re-scored exactly from their float16 vectors on disk "
        "(0: the compressed scores alone).",
    )
    vector_cache_mb: float = Field(
        1024.0, ge=0, description="Decoded token vectors kept in memory across all channels (MiB), least recent out first."
    )

    # --- input limits ------------------------------------------------------------------------------------------------
    max_file_mb: float = Field(50.0, gt=0, description="Largest PDF accepted, in MiB.")
    max_pages: int = Field(600, ge=1, description="PDFs with more pages are refused.")
    pdf_cpu_seconds: float = Field(
        120.0, gt=0, description="CPU time reading one PDF may take (in a child process) before it is refused."
    )
    pdf_memory_mb: int = Field(2048, ge=256, description="Address space reading one PDF may use, in MiB.")
    pdf_readers: int = Field(
        0, ge=0, description="PDFs read at the same time, each in its own child process; more uploads wait their turn "
        "(0: one per CPU core, at most 8).",
    )
    max_question_chars: int = Field(2000, ge=10, description="Longer questions are refused.")
    job_retention_days: float = Field(30.0, gt=0, description="Finished ingestion jobs are pruned after this many days.")
    answer_retention_days: float = Field(
        0.0, ge=0, description="Posted answers and their votes are deleted after this many days (0 keeps them)."
    )
    drop_papers_when_channel_gone: bool = Field(
        False, description="Delete a channel's papers when the bot leaves it or the channel is deleted."
    )
    job_lease_s: float = Field(
        60.0, gt=0, description="An ingestion job not renewed for this long is presumed dead and resumed by another process."
    )

    # --- generation --------------------------------------------------------------------------------------------------
    llm_model: str = Field(DEFAULT_LLM_MODEL, description="A local .gguf path, or `owner/repo:file.gguf`.")
    llm_backend: Literal["llama_cpp", "openai"] = Field(
        "llama_cpp", description="llama_cpp (in-process) or openai (an OpenAI-compatible server: llama-server, vLLM)."
    )
    llm_base_url: str = Field("http://127.0.0.1:8080/v1", description="OpenAI-compatible server, for llm_backend=openai.")
    llm_api_key: SecretStr = Field(SecretStr("not-needed"), description="API key of that server, if it wants one.")
    n_ctx: int = Field(8192, ge=512, description="Context window shared by all parallel sequences' slots, per slot.")
    n_gpu_layers: int = Field(-1, description="-1 offloads every layer when the build has CUDA.")
    n_threads: int | None = Field(None, description="CPU threads for llama.cpp (default: the physical cores).")
    flash_attn: bool = Field(True, description="Flash attention in llama.cpp.")
    parallel: int = Field(8, ge=1, le=64, description="Questions decoded together in one batch.")
    batched: bool = Field(True, description="Decode concurrent questions in one batch (False: one at a time).")
    speculative: bool = Field(
        False,
        description="Prompt-lookup speculative decoding in the batched backend: fewer decode steps; off by default "
        "because a greedy reply can change where two tokens nearly tie (batched rows round differently).",
    )
    draft_tokens: int = Field(3, ge=1, le=16, description="Most draft tokens a reply decodes in one step (speculative).")
    max_new_tokens: int = Field(512, ge=16, description="Longest reply (reasoning and answer), in tokens.")
    llm_grammar: Literal["on", "off"] = Field(
        "on", description="on: every reply is reasoning, a ##### line, then an answer (a llama.cpp grammar); off: free."
    )
    temperature: float = Field(0.2, ge=0, description="Sampling temperature; 0 is greedy.")
    queue_size: int = Field(64, ge=1, description="Questions waiting for the model before new ones are refused.")
    request_timeout_s: float = Field(180.0, gt=0, description="A question unanswered after this many seconds fails.")

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, values: dict) -> dict:
        """`SLACK_BOT_TOKEN_FILE=/run/secrets/x` reads a secret from that file (Docker/Kubernetes secrets).

        Every `SecretStr` field of the class (subclasses' too) can be given this way.
        """
        import os

        for name, field in cls.model_fields.items():
            if "SecretStr" not in str(field.annotation):
                continue
            for env_name in (f"PAPERBOT_{name.upper()}_FILE", f"{name.upper()}_FILE"):
                path = os.environ.get(env_name)
                if path and not values.get(name):
                    values[name] = Path(path).read_text(encoding="utf-8").strip()
        return values

    @property
    def database_path(self) -> Path:
        return self.data_dir / "paperbot.sqlite3"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"
