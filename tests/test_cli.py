"""The `paperbot` command line as scripts use it: output lines, JSON shapes, exit codes, and a SIGKILL mid-ingest."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from bot.cli import cli
from rag_engine.engine import Engine
from bot.settings import Settings
from tests.conftest import EDGE_PDFS, REAL_PDFS

REPO = Path(__file__).resolve().parents[1]


def cli_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAPERBOT_")}
    env.update(
        PAPERBOT_DATA_DIR=str(settings.data_dir),
        PAPERBOT_COLBERT_MODEL=settings.colbert_model,
        PAPERBOT_LLM_MODEL=settings.llm_model,
        PAPERBOT_DEVICE="cpu",
        PAPERBOT_N_GPU_LAYERS="0",
        PAPERBOT_N_CTX="2048",
        PAPERBOT_MAX_NEW_TOKENS="32",
        PAPERBOT_FLASH_ATTN="false",
        PYTHONPATH=str(REPO),
    )
    return env


def paperbot(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=cli_env(settings),
        cwd=settings.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli_settings(settings: Settings) -> Settings:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


def test_ingest_search_papers_remove_clear(cli_settings: Settings) -> None:
    good = REAL_PDFS / "distillation.pdf"
    bad = EDGE_PDFS / "encrypted_user_password.pdf"
    run = paperbot(cli_settings, "ingest", "--index", "ml", str(good), str(bad))
    assert run.returncode == 1, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[0] == f"{good}\tindexed: Distilling the Knowledge in a Neural Network (9 pages)"
    assert lines[1].startswith(f"{bad}\tfailed: ") and "password" in lines[1]

    again = paperbot(cli_settings, "ingest", "--index", "ml", str(good))
    assert (again.returncode, again.stdout.strip()) == (0, f"{good}\talready indexed")

    found = paperbot(cli_settings, "search", "--index", "ml", "--top-k", "3", "--mode", "lexical", "--json", "soft targets")
    hits = json.loads(found.stdout)
    assert len(hits) == 3
    assert set(hits[0]) == {"doc_id", "chunk_id", "title", "page_start", "page_end", "text", "score"}
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)

    papers = json.loads(paperbot(cli_settings, "papers", "--index", "ml", "--json").stdout)
    assert [(p["title"], p["pages"]) for p in papers] == [("Distilling the Knowledge in a Neural Network", 9)]
    assert set(papers[0]) == {"id", "title", "pages", "added"}

    missing = paperbot(cli_settings, "remove", "--index", "ml", "999")
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "paperbot: There is no paper with id 999 in 'ml'. `paperbot papers --index ml` shows the ids."
    )
    assert paperbot(cli_settings, "remove", "--index", "ml", str(papers[0]["id"])).returncode == 0
    assert json.loads(paperbot(cli_settings, "papers", "--index", "ml", "--json").stdout) == []
    assert paperbot(cli_settings, "clear", "--index", "ml").returncode == 0


def test_unknown_index_exits_2_with_a_message(cli_settings: Settings) -> None:
    for args in (["search", "--index", "nope", "q"], ["papers", "--index", "nope"], ["clear", "--index", "nope"],
                 ["remove", "--index", "nope", "1"], ["ask", "--index", "nope", "why?"]):
        run = paperbot(cli_settings, *args)
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        assert run.stderr.strip().splitlines()[-1] == (
            "paperbot: There is no index named 'nope'. Add a paper to it first: paperbot ingest --index nope FILE"
        ), args


def _mid_document(db_path: Path) -> bool:
    """Some paper is ready and an unfinished job's document is still being written (read-only: the writer is stopped
    and may hold the write lock)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)) as conn:
            half = conn.execute(
                "SELECT count(*) FROM jobs j JOIN documents d ON d.id = j.document_id "
                "WHERE j.status IN ('pending', 'running') AND d.status = 'processing'"
            ).fetchone()[0]
            ready = conn.execute("SELECT count(*) FROM documents WHERE status = 'ready'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return False
    return half > 0 and ready > 0


async def test_sigkill_mid_ingest_leaves_no_half_document_and_the_job_resumes(cli_settings: Settings) -> None:
    files = [str(p) for p in sorted(REAL_PDFS.glob("*.pdf"))]
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "ingest", "--index", "crash", *files],
        env=cli_env(cli_settings),
        cwd=cli_settings.data_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    db_path = cli_settings.database_path
    deadline = time.monotonic() + 240
    killed_while_processing = False
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if db_path.exists():
                # Frozen while we look, so the kill lands in the state we saw (with the tiny encoder a paper can
                # finish between a look and a kill).
                process.send_signal(signal.SIGSTOP)
                if _mid_document(db_path):
                    process.send_signal(signal.SIGKILL)
                    killed_while_processing = True
                    break
                process.send_signal(signal.SIGCONT)
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait()
    assert killed_while_processing, "the ingest finished before it could be killed mid-document"

    async with Engine.open(cli_settings) as engine:
        assert await engine.db.integrity_check() == "ok"
        visible = await engine.papers("crash")
        # several files are in flight at once (one being encoded, the next ones being read)
        interrupted = await engine.db.unfinished_jobs()
        halves = {job.document_id for job in interrupted if job.document_id is not None}
        assert interrupted and all(job.status in ("pending", "running") for job in interrupted)
        assert halves and not halves & {d.id for d in visible}
        hits = (await engine.search("crash", "the model training data results", k=200, mode="lexical")).hits
        assert not halves & {h.doc_id for h in hits}
        assert {h.doc_id for h in hits} <= {d.id for d in visible}

        reports = await engine.resume_jobs()
        assert [r.status for r in reports] == ["indexed"] * len(interrupted)
        assert await engine.db.unfinished_jobs() == []
        assert len(await engine.papers("crash")) == len(visible) + len(interrupted)


def test_ask_json_status_and_the_terminal_chat(cli_settings: Settings) -> None:
    paper = REAL_PDFS / "distillation.pdf"
    assert paperbot(cli_settings, "ingest", "--index", "ml", str(paper)).returncode == 0

    asked = paperbot(cli_settings, "ask", "--index", "ml", "--json", "What are soft targets?")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert set(answer) == {"reasoning", "answer", "abstained", "sources"}
    for source in answer["sources"]:
        assert set(source) == {"n", "doc_id", "chunk_id", "title", "page_start", "page_end"}
        assert source["title"] == "Distilling the Knowledge in a Neural Network"

    scoped = paperbot(cli_settings, "ask", "--index", "ml", "--paper", "nothing like it", "--json", "why?")
    assert scoped.returncode == 1 and "No paper here matches" in scoped.stderr
    assert "`paperbot papers --index ml` shows the titles and ids" in scoped.stderr and "/papers" not in scoped.stderr

    status = paperbot(cli_settings, "status")
    assert status.returncode == 0, status.stderr
    assert "llama.cpp on the CPU" in status.stdout and "ml\t1 paper, " in status.stdout
    assert "bot:         not running" in status.stdout

    chat = subprocess.run(
        [sys.executable, "-m", "bot.cli", "chat", "--index", "talk"],
        input=f"/add {EDGE_PDFS / 'ok_minimal.pdf'}\n/papers\n/bogus\n/remove 999\nWhat is on the first page?\n/quit\n",
        env=cli_env(cli_settings),
        cwd=cli_settings.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert chat.returncode == 0, chat.stderr
    assert re.search(r"Indexed .+ \(2 pages, \d+ passages\)", chat.stdout)
    assert re.search(r"^> \d+\t.+ \(2 pages\)$", chat.stdout, re.MULTILINE)  # /papers lists it
    assert re.search(r"^  \[1\] .+, pp?\. [12]", chat.stdout, re.MULTILINE)  # the answer's sources
    assert "> Unknown command /bogus; /help lists them.\n" in chat.stdout  # not sent to the model
    assert "There is no paper with id 999 in 'talk'. /papers shows the ids." in chat.stdout
    assert "\x1b" not in chat.stdout  # piped: no terminal escape codes


def test_every_command_and_option_has_help() -> None:
    assert cli.help
    for name, command in cli.commands.items():
        assert command.help, name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, (name, param.name)


def test_usage_errors_exit_2(cli_settings: Settings) -> None:
    for args in (["frobnicate"], ["search", "q"], ["remove", "--index", "ml", "one"], ["run", "telegram"],
                 ["search", "--index", "ml", " "]):
        run = paperbot(cli_settings, *args)
        assert run.returncode == 2, (args, run.stdout, run.stderr)
        assert run.stderr.startswith("Usage: paperbot"), run.stderr


def test_commands_that_need_no_model_import_none(cli_settings: Settings) -> None:
    probe = (
        "import sys; from bot.cli import main; code = main(sys.argv[1:]); "
        "print(sorted(m for m in ('torch', 'llama_cpp', 'transformers', 'pymupdf', 'langchain_text_splitters') "
        "if m in sys.modules), code)"
    )
    # Listing, removing and status read the database only: PDF reading and chunking (~0.7 s of imports) wait too.
    for args in (["papers", "--index", "nope"], ["remove", "--index", "nope", "1"], ["status"]):
        run = subprocess.run([sys.executable, "-c", probe, *args], env=cli_env(cli_settings), capture_output=True,
                             text=True, timeout=120)
        assert run.stdout.splitlines()[-1] in ("[] 0", "[] 2"), (args, run.stdout, run.stderr)


def test_an_empty_search_is_refused(cli_settings: Settings) -> None:
    run = paperbot(cli_settings, "search", "--index", "ml", "")
    assert run.returncode == 2 and run.stderr.endswith("Error: the query is empty: say what to look for.\n")


def test_every_missing_model_is_named_in_one_run(cli_settings: Settings) -> None:
    missing = cli_settings.model_copy(
        update={"colbert_model": "/nonexistent/colbert", "llm_model": "/nonexistent/m.gguf"}
    )
    run = paperbot(missing, "ask", "--index", "ml", "why?")
    assert run.returncode == 1
    assert "PAPERBOT_COLBERT_MODEL=/nonexistent/colbert" in run.stderr
    assert "PAPERBOT_LLM_MODEL=/nonexistent/m.gguf" in run.stderr


def test_verbose_logs_paperbot_then_libraries_each_statement_once(cli_settings: Settings) -> None:
    one = paperbot(cli_settings, "-v", "papers", "--index", "nope").stderr
    assert "DEBUG storage.connection: opened" in one and "aiosqlite" not in one and "asyncio" not in one
    two = paperbot(cli_settings, "-vv", "papers", "--index", "nope").stderr
    statements = re.findall(r"DEBUG aiosqlite: executing .*'SELECT id, name, encoder_id", two)
    assert len(statements) == 1 and " completed" not in two


async def test_the_ingest_progress_rate_counts_passages_encoded_while_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import tqdm.std

    from bot.commands import ProgressBar
    from rag_engine.types import IngestProgress

    clock = [1000.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: clock[0])
    out = io.StringIO()
    bar = ProgressBar("paper.pdf", file=out)
    await bar(IngestProgress("encoding", done=90, total=200))  # 90 were encoded before the bar appeared
    for done in range(100, 201, 10):
        clock[0] += 5.0
        await bar(IngestProgress("encoding", done=done, total=200))
    shown = out.getvalue().split("\r")[-1]
    assert "200/200" in shown and "2.00passage/s" in shown, shown
    bar.close()


def test_the_tests_name_missing_shared_data_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PAPERBOT_SHARED_DIR": str(tmp_path / "nowhere"), "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_codec.py"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout
    [line] = [l for l in run.stdout.splitlines() if "shared data folder" in l]
    assert f"{tmp_path / 'nowhere'}/data/pdfs/real" in line and "PAPERBOT_SHARED_DIR" in line
