"""A question looks its index up once: the answerer passes the record on to search, paper and listing calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_engine.answer import Answerer
from rag_engine.engine import Engine
from rag_engine.settings import EngineSettings
from rag_engine.types import Final
from storage.codec import CODEC_ID


async def test_one_question_looks_its_index_up_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = EngineSettings(_env_file=None, data_dir=tmp_path, retrieval_mode="lexical")  # type: ignore[call-arg]
    async with Engine.open(settings) as engine:
        await engine.db.get_or_create_index("lookups", "encoder", CODEC_ID, 8)
        lookups: list[str] = []
        get_index = engine.db.get_index

        async def counted(name: str):  # type: ignore[no-untyped-def]
            lookups.append(name)
            return await get_index(name)

        monkeypatch.setattr(engine.db, "get_index", counted)
        # no model is needed: an index without papers is answered before generation
        answerer = Answerer(engine, backend=None, worker=None, settings=settings)  # type: ignore[arg-type]
        events = [event async for event in answerer.answer("lookups", "what is attention?")]
    assert isinstance(events[-1], Final) and events[-1].answer.abstained
    assert lookups == ["lookups"]
