"""Stored uploads: concurrent writes of the same file, permissions, and deleting a paper's file with its last use."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rag_engine.engine import Engine
from rag_engine.ingest import Ingestor
from bot.settings import Settings
from storage.codec import CODEC_ID
from tests.conftest import REAL_PDFS


def test_the_same_upload_written_concurrently_is_stored_whole(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    data = bytes(range(256)) * 8192  # 2 MiB: long enough writes for the threads to overlap
    sha = hashlib.sha256(data).hexdigest()
    writers = 4
    for _ in range(20):
        ingestor = Ingestor(None, None, settings)  # type: ignore[arg-type]  # storing needs neither db nor models
        start = threading.Barrier(writers)

        def store() -> Path:
            start.wait()
            return ingestor._store_upload(sha, data)

        with ThreadPoolExecutor(writers) as pool:
            paths = list(pool.map(lambda _: store(), range(writers)))
        assert set(paths) == {settings.uploads_dir / f"{sha}.pdf"}
        assert paths[0].read_bytes() == data
        assert [p.name for p in settings.uploads_dir.iterdir()] == [f"{sha}.pdf"]  # no temporary file left
        paths[0].unlink()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_data_folder_database_and_uploads_are_private_whatever_the_umask(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    settings.data_dir.mkdir()
    older = settings.database_path
    older.write_bytes(b"")
    os.chmod(older, 0o644)  # left world-readable by an older version
    previous = os.umask(0o000)  # the most permissive umask there is
    try:
        async with Engine.open(settings) as engine:
            index = await engine.db.get_or_create_index("x", "enc", CODEC_ID, 4)  # a write: the WAL exists now
            stored = engine.ingestor._store_upload("ab" * 32, b"%PDF-1.4 test")
            await engine.db.create_job(index.id, str(stored), "a.pdf", "ab" * 32, None)
            wal = Path(f"{settings.database_path}-wal")
            shm = Path(f"{settings.database_path}-shm")
            assert wal.exists() and shm.exists()
            for folder in (settings.data_dir, settings.uploads_dir, settings.models_dir):
                assert _mode(folder) == 0o700, folder
            for file in (settings.database_path, wal, shm, stored):
                assert _mode(file) == 0o600, file
    finally:
        os.umask(previous)


async def test_a_papers_stored_file_goes_with_its_last_use(settings: Settings) -> None:
    data = REAL_PDFS.joinpath("distillation.pdf").read_bytes()
    stored = settings.uploads_dir / f"{hashlib.sha256(data).hexdigest()}.pdf"
    async with Engine.open(settings) as engine:
        first = await engine.ingest("first", data, "distillation.pdf")
        second = await engine.ingest("second", data, "distillation.pdf")
        assert (first.status, second.status) == ("indexed", "indexed") and stored.exists()

        await engine.remove("first", first.doc_id)
        assert stored.exists()  # the other index still has this paper
        assert await engine.clear("second") == 1
        assert not stored.exists()

        again = await engine.ingest("first", data, "distillation.pdf")
        assert again.status == "indexed" and stored.read_bytes() == data
        await engine.remove("first", again.doc_id)
        assert list(settings.uploads_dir.iterdir()) == []
