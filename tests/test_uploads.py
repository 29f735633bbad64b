"""Stored uploads: concurrent writes of the same file, permissions, and deleting a paper's file with its last use."""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rag_engine.ingest import Ingestor
from rag_engine.settings import Settings


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
