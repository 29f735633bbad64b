"""A Discord-only deployment, installed as a user would: a fresh venv (no system site-packages, not the test venv),
`pip install .[discord]` pinned by constraints.txt (through docker/install.sh, the image's install steps), then the installed `paperbot` ingests a paper and `paperbot run
discord` connects to the loopback Discord stand-in and answers a mention.

Expensive (an install of torch, transformers, PyMuPDF… from the package index): slow, but part of `make test`.
llama-cpp-python is not compiled again: its wheel, in PAPERBOT_WHEEL_CACHE (~/.cache/paperbot-tests/wheels), is packed
from the test venv's own build (see _llama_wheel).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import aiohttp
import pytest

from bot.discord_app import render
from bot.settings import Settings
from tests.conftest import REAL_PDFS, make_settings
from tests.fakes.discord_server import FakeDiscord
from tests.test_cli import cli_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "constraints.txt"
WHEELS = Path(os.environ.get("PAPERBOT_WHEEL_CACHE", Path.home() / ".cache" / "paperbot-tests" / "wheels"))
# Discord's token shape (id.timestamp.hmac); the fake accepts any token, the logs must show none.
# Token-shaped but fake; joined at run time so that no secret scanner takes the source for a leak.
TOKEN = ".".join(("MTA5ODc2NTQzMjEwOTg3NjU0", "GaBcDe", "fAkEtOkEnfAkEtOkEnfAkEtOkEnfAkE12"))

# `paperbot run discord` from the installed package, with discord.py's two URLs pointed at the stand-in (as the
# in-process Discord tests do); refuses to run from a source checkout so the test proves the install.
BOOT = """
import os, sys
import bot, discord, yarl
assert "site-packages" in bot.__file__, bot.__file__
discord.http.Route.BASE = os.environ["FAKE_DISCORD_API"]
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ["FAKE_DISCORD_GATEWAY"])
from bot.cli import main
sys.argv = ["paperbot", "run", "discord"]
sys.exit(main())
"""


def _pinned(name: str) -> str:
    match = re.search(rf"^{re.escape(name)}==(\S+)$", CONSTRAINTS.read_text(), re.MULTILINE)
    assert match, f"{name} is not pinned in constraints.txt"
    return match.group(1)


def _llama_wheel() -> None:
    """Put a llama-cpp-python wheel of the pinned version into WHEELS, unless one is there.

    Compiling llama.cpp takes ~18 minutes on 2 cores and `make test` has just done it for the test venv, so the wheel is
    packed from that installed build (its RECORD lists every file); only without a matching install is it compiled.
    """
    version = _pinned("llama-cpp-python")
    if list(WHEELS.glob(f"llama_cpp_python-{version}-*.whl")):
        return
    WHEELS.mkdir(parents=True, exist_ok=True)
    try:
        installed = importlib.metadata.distribution("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed is not None and installed.version == version:
        _repack(installed)
        return
    env = dict(os.environ, CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
    if platform.machine() == "x86_64":  # as scripts/bootstrap.sh: no AMX kernels (they crash on Q4_K)
        no_amx = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
        env.setdefault("CMAKE_ARGS", f"-DCMAKE_C_FLAGS='{no_amx}' -DCMAKE_CXX_FLAGS='{no_amx}'")
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(WHEELS), f"llama-cpp-python=={version}"]
    subprocess.run(command, env=env, check=True)


def _repack(dist: importlib.metadata.Distribution) -> None:
    """An installed distribution back into a wheel: its files as RECORD lists them, with a fresh RECORD."""
    tag = next(line.split(": ", 1)[1] for line in (dist.read_text("WHEEL") or "").splitlines() if line.startswith("Tag:"))
    name = f"llama_cpp_python-{dist.version}-{tag}.whl"
    info = f"llama_cpp_python-{dist.version}.dist-info"
    records = []
    partial = WHEELS / (name + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as wheel:
        for file in dist.files or []:
            path = str(file)
            if path.endswith(".pyc") or path.endswith(("/RECORD", "/INSTALLER", "/direct_url.json", "/REQUESTED")):
                continue
            data = Path(dist.locate_file(file)).read_bytes()
            wheel.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{path},sha256={digest},{len(data)}")
        records.append(f"{info}/RECORD,,")
        wheel.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
    partial.rename(WHEELS / name)


@pytest.fixture(scope="module")
def discord_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv made by the Docker image's own install steps (docker/install.sh) with only the discord extra."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    _llama_wheel()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_CONSTRAINT"))}
    env.update(
        # The llama-cpp-python wheel built above, instead of compiling it again (pip prefers a wheel of the same version).
        PIP_FIND_LINKS=" ".join(filter(None, [str(WHEELS), os.environ.get("PIP_FIND_LINKS")])),
        # A CPU build of torch, as the image's CPU target and scripts/bootstrap.sh install it (the default is CUDA's).
        TORCH_SPEC=f"torch=={_pinned('torch')}+cpu",
    )
    subprocess.run([str(REPO / "docker" / "install.sh"), str(venv), "discord"], cwd=REPO, env=env, check=True)
    return venv


def test_the_discord_extra_installs_no_gradio_and_no_slack(discord_venv: Path) -> None:
    listing = subprocess.run(
        [str(discord_venv / "bin" / "python"), "-c", "import importlib.metadata as m; "
         "print('\\n'.join(sorted(d.metadata['Name'].lower() for d in m.distributions())))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert "paperbot" in listing and "discord.py" in listing and "aiohttp" in listing
    for absent in ("gradio", "gradio-client", "slack-bolt", "slack-sdk", "fastapi", "uvicorn"):
        assert absent not in listing


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _status(port: int, path: str) -> int:
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
            return response.status
    except aiohttp.ClientError:
        return 0


async def test_paperbot_run_discord_from_the_fresh_install_answers_a_mention(
    discord_venv: Path, tiny_models: Path, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path / "data", tiny_models)
    settings.data_dir.mkdir(parents=True)
    health_port = _free_port()
    env = _env(settings, health_port)
    async with FakeDiscord(token=TOKEN) as fake:
        lab = fake.add_guild("lab")
        papers = fake.add_channel(lab, "papers")
        alice = fake.add_member(lab, "alice")
        ingest = await asyncio.to_thread(
            subprocess.run,
            [str(discord_venv / "bin" / "paperbot"), "ingest", "--index", f"discord/{lab.id}/{papers.id}",
             str(REAL_PDFS / "1706.03762.pdf")],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )
        assert ingest.returncode == 0, ingest.stderr[-3000:]

        env.update(FAKE_DISCORD_API=fake.api_base, FAKE_DISCORD_GATEWAY=fake.gateway_url)
        log_path = tmp_path / "bot.log"
        with open(log_path, "w") as log_file:
            bot = subprocess.Popen(
                [str(discord_venv / "bin" / "python"), "-c", BOOT],
                env=env, cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT,
            )
            try:
                await fake.wait_ready(timeout=300)  # loads the models, then connects
                await _until_ready(health_port, 60)
                question = await fake.post(papers, alice, f"{fake.mention()} how does multi-head attention work?")
                answer = await fake.wait_for(
                    lambda: (r := fake.replies_to(question)) and _finished(r[0].content) and r[0], 120, "an answer"
                )
                assert render.SOURCES_HEADER in "\n".join(m.content for m in fake.replies_to(question))
                assert "went wrong" not in answer.content
            finally:
                bot.send_signal(signal.SIGINT)
                try:
                    await asyncio.to_thread(bot.wait, 30)
                except subprocess.TimeoutExpired:
                    bot.kill()
    log = log_path.read_text()
    assert TOKEN not in log and TOKEN not in ingest.stderr
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(r["msg"] == "answered" and r.get("platform") == "discord" for r in records), log[-3000:]


async def _until_ready(port: int, timeout: float) -> None:
    """Poll /readyz (another process: nothing to wait on but its answer) until it says 200."""
    deadline = time.monotonic() + timeout
    while (status := await _status(port, "/readyz")) != 200:
        assert time.monotonic() < deadline, f"/readyz still answers {status}"
        await asyncio.sleep(0.5)


def _finished(content: str) -> bool:
    return bool(content) and not content.startswith(render.THINKING) and "▌" not in content


def _env(settings: Settings, health_port: int) -> dict[str, str]:
    """The CLI tests' environment, less this checkout on PYTHONPATH (the fresh install must be what runs)."""
    env = {k: v for k, v in cli_env(settings).items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(
        PAPERBOT_PARALLEL="2",
        PAPERBOT_HEALTH_PORT=str(health_port),
        PAPERBOT_LOG_FORMAT="json",
        DISCORD_TOKEN=TOKEN,
    )
    return env
