"""SIGINT (Ctrl-C) and SIGTERM stop a command cleanly: an ingestion in progress is kept and resumes next start."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag_engine.engine import Engine
from bot.settings import Settings
from storage.lock import DatabaseLock
from tests.conftest import REAL_PDFS
from tests.test_cli import cli_env


@pytest.fixture
def cli_settings(settings: Settings) -> Settings:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


async def _signal_mid_document(settings: Settings, process: subprocess.Popen[bytes], signum: int) -> None:
    """Send `signum` once the command is writing a document (a job with its half-written paper attached)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if settings.database_path.exists():
            async with Engine.open(settings) as engine:
                if await engine.has_index("sig") and any(
                    j.document_id is not None for j in await engine.db.unfinished_jobs()
                ):
                    process.send_signal(signum)
                    return
        time.sleep(0.02)
    raise AssertionError("the ingest ended before it could be signalled mid-document")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_stop_signal_mid_ingest_keeps_the_job_and_its_upload(cli_settings: Settings, signum: int) -> None:
    paper = REAL_PDFS / "distillation.pdf"
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "ingest", "--index", "sig", str(paper)],
        env=cli_env(cli_settings),
        cwd=cli_settings.data_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        await _signal_mid_document(cli_settings, process, signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 128 + signum, stderr.decode()
    assert b"Traceback" not in stderr, stderr.decode()

    async with Engine.open(cli_settings) as engine:
        assert await engine.db.integrity_check() == "ok"
        jobs = await engine.db.unfinished_jobs()
        assert [(j.status, j.document_id, j.attempts) for j in jobs] == [("pending", None, 0)]
        assert Path(jobs[0].path).read_bytes() == paper.read_bytes()  # the stored upload is kept
        assert await engine.papers("sig") == []  # the half-written paper never became visible and is gone

        reports = await engine.resume_jobs()
        assert [r.status for r in reports] == ["indexed"]
        assert [d.title for d in await engine.papers("sig")] == ["Distilling the Knowledge in a Neural Network"]
        assert await engine.db.unfinished_jobs() == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_paperbot_run_stops_cleanly_on_a_signal(cli_settings: Settings, signum: int) -> None:
    env = {**cli_env(cli_settings), "PAPERBOT_WEB_PORT": "0", "PAPERBOT_HEALTH_PORT": "0", "PAPERBOT_LOG_LEVEL": "INFO"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "web"],
        env=env,
        cwd=cli_settings.data_dir.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        assert process.stderr is not None
        for line in process.stderr:  # wait until it serves
            seen.append(line)
            if "web chat on" in line:
                break
        assert any("web chat on" in line for line in seen), "".join(seen)
        process.send_signal(signum)
        _, rest = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    log = "".join(seen) + rest
    assert process.returncode == 128 + signum, log
    assert "Traceback" not in log, log
    with DatabaseLock(cli_settings.database_path, exclusive=True):  # it closed the database: a restore may go ahead
        pass
