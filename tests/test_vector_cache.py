"""The memory budget for decoded vectors across channels, and invalidation by the index version, also when another
process (another connection to the same file) changes the papers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest_asyncio

from rag_engine.retrieval.cache import VectorCache
from rag_engine.retrieval.compressed_scorer import CompressedScorer
from rag_engine.retrieval.scorer import BruteForceScorer
from bot.settings import Settings
from storage import CODEC_ID, Database
from tests.test_plaid import DIM, add_paper, queries, synthetic_index


@dataclass
class Blob:
    nbytes: int


def test_cache_keeps_the_most_recent_entries_within_its_budget() -> None:
    cache = VectorCache(100)
    cache.put("a", Blob(40), 1)
    cache.put("b", Blob(40), 1)
    assert cache.get("a", 1) is not None  # a is now the most recent
    cache.put("c", Blob(40), 1)
    assert cache.get("b", 1) is None and cache.get("a", 1) is not None and cache.get("c", 1) is not None
    assert cache.used_bytes == 80
    cache.put("huge", Blob(101), 1)  # larger than the whole budget: not kept, nothing else evicted for it
    assert cache.get("huge", 1) is None and cache.used_bytes == 80


def test_a_stale_version_is_a_miss_and_frees_its_memory() -> None:
    cache = VectorCache(100)
    cache.put("a", Blob(60), 3)
    assert cache.get("a", 4) is None
    assert cache.used_bytes == 0
    cache.put("a", Blob(30), 4)
    cache.put("a", Blob(50), 4)  # replacing counts the new size only
    assert cache.used_bytes == 50


def test_the_budget_is_a_setting(monkeypatch) -> None:
    monkeypatch.setenv("PAPERBOT_VECTOR_CACHE_MB", "12.5")
    assert Settings().vector_cache_mb == 12.5


@pytest_asyncio.fixture(loop_scope="function")
async def db_path(tmp_path: Path) -> Path:
    return tmp_path / "paperbot.sqlite3"


@pytest_asyncio.fixture(loop_scope="function")
async def db(db_path: Path) -> AsyncIterator[Database]:
    async with await Database.open(db_path) as db:
        yield db


async def test_channels_share_one_budget(db: Database) -> None:
    vectors, offsets = synthetic_index(400, seed=7)
    one = await db.get_or_create_index("discord/1/1", "enc", CODEC_ID, DIM)
    two = await db.get_or_create_index("discord/1/2", "enc", CODEC_ID, DIM)
    await add_paper(db, one.id, "a", vectors, offsets[:201])
    await add_paper(db, two.id, "b", vectors[offsets[200] :], offsets[200:] - offsets[200])
    q = queries(vectors, offsets, 1)[0]

    sizes = {}
    for budget_scorer in (CompressedScorer(db, min_tokens=1000, device="cpu"), BruteForceScorer(db)):
        await budget_scorer.top_k(one, q, 5)
        await budget_scorer.top_k(two, q, 5)
        sizes[type(budget_scorer).__name__] = budget_scorer._cache.used_bytes  # both indexes held: the full size
    for name, both in sizes.items():
        cache = VectorCache(both * 3 // 4)  # room for one of the two
        scorer = (
            CompressedScorer(db, cache=cache, min_tokens=1000, device="cpu")
            if name == "CompressedScorer"
            else BruteForceScorer(db, cache=cache)
        )
        first = await scorer.top_k(one, q, 5)
        await scorer.top_k(two, q, 5)
        assert 0 < cache.used_bytes <= cache.budget_bytes
        assert await scorer.top_k(one, q, 5) == first  # evicted, reloaded, same answer


async def test_papers_added_or_removed_by_another_process_are_seen_at_the_next_search(
    db: Database, db_path: Path
) -> None:
    vectors, offsets = synthetic_index(300, seed=8)
    index = await db.get_or_create_index("c", "enc", CODEC_ID, DIM)
    await add_paper(db, index.id, "a", vectors, offsets[:151])
    tail_vectors, tail_offsets = vectors[offsets[150] :], offsets[150:] - offsets[150]
    q = queries(tail_vectors, tail_offsets, 1, seed=9)[0]
    for scorer in (CompressedScorer(db, min_tokens=1000, device="cpu"), BruteForceScorer(db)):
        before = {c for c, _ in await scorer.top_k(index, q, 5)}
        async with await Database.open(db_path) as cli:  # the CLI, while the bot runs
            added = await add_paper(cli, index.id, f"b-{type(scorer).__name__}", tail_vectors, tail_offsets)
        new_ids = {c for c, _ in await scorer.top_k(index, q, 5)}
        added_chunks = {c.id for c in await db.get_chunks(list(new_ids), index.id) if c.doc_id == added}
        assert added_chunks and new_ids != before
        async with await Database.open(db_path) as cli:
            await cli.remove_document(index.id, added)
        assert {c for c, _ in await scorer.top_k(index, q, 5)} == before
