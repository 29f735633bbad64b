"""llama.cpp's load-time chatter goes through Python logging at debug level, not straight to stderr.

Each check loads both in-process backends in a fresh interpreter (the log callback is process-wide state) and reads
what reached its stderr: llama.cpp writes there from C, so only a separate process shows it faithfully.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

LOAD_BOTH = """
import asyncio, logging, sys
from rag_engine.llm.batched import BatchedLlamaBackend
from rag_engine.llm.llama_cpp_backend import LlamaCppBackend

if sys.argv[2] == "debug":
    logging.basicConfig(level=logging.DEBUG)

async def main():
    for backend in (
        BatchedLlamaBackend(sys.argv[1], parallel=1, n_ctx=256, n_gpu_layers=0, flash_attn=False),
        LlamaCppBackend(sys.argv[1], n_ctx=256, n_gpu_layers=0, flash_attn=False),
    ):
        await backend.start()
        await backend.close()
    print("loaded")

asyncio.run(main())
"""

CHATTER = "control-looking token"


def load_both(gguf: Path, level: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", LOAD_BOTH, str(gguf), level], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0 and "loaded" in done.stdout, done.stderr[-2000:]
    return done.stderr


@pytest.fixture(scope="module")
def gguf(tiny_models: Path) -> Path:
    return tiny_models / "qwen2.gguf"


def test_llama_cpp_chatter_stays_off_stderr_at_the_default_level(gguf):
    assert CHATTER not in load_both(gguf, "default")


def test_llama_cpp_chatter_shows_with_debug_logging(gguf):
    # the same line, through the `llama_cpp` logger: it is routed, not dropped
    stderr = load_both(gguf, "debug")
    assert f"DEBUG:llama_cpp:load: {CHATTER}" in stderr
