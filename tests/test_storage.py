"""The storage layer against real SQLite files: schema, visibility, atomicity, isolation, cascades, search, jobs."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from storage import CODEC_ID, Database
from storage.connection import Transaction
from storage.errors import (
    DocumentNotFound,
    DocumentNotProcessing,
    DuplicateDocument,
    EncoderMismatch,
    IndexNotFound,
    JobNotFound,
    SchemaTooNew,
)
from storage.migrations import MIGRATIONS, V1_INITIAL
from storage.records import IndexRecord, NewChunk

DIM = 8
ENCODER = "tiny-colbert@abc123"


@pytest_asyncio.fixture(loop_scope="function")
async def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "nested" / "paperbot.sqlite3"


@pytest_asyncio.fixture(loop_scope="function")
async def db(db_path: Path) -> AsyncIterator[Database]:
    async with await Database.open(db_path) as db:
        yield db


def make_chunks(texts: list[str], seed: int = 0, tokens: int = 3) -> list[NewChunk]:
    rng = np.random.default_rng(seed)
    return [
        NewChunk(
            text=text,
            page_start=i + 1,
            page_end=i + 2,
            section=f"S{i}" if i % 2 else None,
            ordinal=i,
            embedding=rng.standard_normal((tokens + i, DIM)).astype(np.float32),
        )
        for i, text in enumerate(texts)
    ]


async def add_paper(
    db: Database, index: IndexRecord, sha: str, texts: list[str], title: str = "Paper", seed: int = 0
) -> int:
    doc = await db.create_document(index.id, sha, title, f"{title}.pdf", "alice", page_count=len(texts) + 1)
    await db.complete_document(doc.id, make_chunks(texts, seed))
    return doc.id


def raw(db_path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Look at the file the way another process would, beneath the repository's filters."""
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql, params).fetchall()


def raw_count(db_path: Path, table: str) -> int:
    return raw(db_path, f"SELECT count(*) FROM {table}")[0][0]


def fts_rowids(db_path: Path, word: str) -> list[int]:
    """Rowids the full-text index itself still holds for `word` (no join to chunks)."""
    return [row[0] for row in raw(db_path, "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?", (f'"{word}"',))]


# --- opening and migrations -------------------------------------------------------------------------------------------
async def test_open_creates_folders_sets_pragmas_and_migrates_once(db_path: Path) -> None:
    async with await Database.open(db_path) as db:
        assert db_path.exists()
        assert await db.schema_version() == len(MIGRATIONS)
        pragmas = await db.pragmas()
        assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "synchronous": 1, "busy_timeout": 5000}
        index = await db.get_or_create_index("papers", ENCODER, CODEC_ID, DIM)

    # Reopening applies nothing again (a second CREATE TABLE would fail) and keeps the data.
    async with await Database.open(db_path) as db:
        assert await db.schema_version() == len(MIGRATIONS)
        assert await db.get_index("papers") == index


async def test_migrations_run_in_order_exactly_once(db_path: Path) -> None:
    calls: list[int] = []

    async def seed(conn) -> None:  # a function step sees the tables of the steps before it
        calls.append(1)
        await conn.execute("INSERT INTO extra (x) VALUES ('seeded')")

    steps = (V1_INITIAL, ("CREATE TABLE extra (x TEXT)",), seed)
    for _ in range(3):
        async with await Database.open(db_path, migrations=steps) as db:
            assert await db.schema_version() == 3
    assert calls == [1]
    assert raw(db_path, "SELECT x FROM extra") == [("seeded",)]

    # An older paperbot must not write into a file a newer one has migrated.
    with pytest.raises(SchemaTooNew, match="schema version 3"):
        await Database.open(db_path, migrations=MIGRATIONS[:2])


async def test_a_failing_migration_is_rolled_back_whole(db_path: Path) -> None:
    async with await Database.open(db_path, migrations=(V1_INITIAL,)):
        pass
    broken = (V1_INITIAL, ("CREATE TABLE half_done (x)", "THIS IS NOT SQL"))
    with pytest.raises(sqlite3.OperationalError):
        await Database.open(db_path, migrations=broken)
    async with await Database.open(db_path, migrations=(V1_INITIAL,)) as db:
        assert await db.schema_version() == 1
        assert await db.integrity_check() == "ok"
    assert raw(db_path, "SELECT name FROM sqlite_master WHERE name = 'half_done'") == []


# --- indexes ----------------------------------------------------------------------------------------------------------
async def test_get_or_create_index_is_idempotent_and_refuses_another_encoder(db: Database) -> None:
    created = await db.get_or_create_index("discord/111/222", ENCODER, CODEC_ID, DIM)
    assert await db.get_or_create_index("discord/111/222", ENCODER, CODEC_ID, DIM) == created
    assert created.version == 0
    assert datetime.fromisoformat(created.created_at).utcoffset() == timedelta(0)

    for encoder, dim in (("other-model", DIM), (ENCODER, DIM * 2)):
        with pytest.raises(EncoderMismatch) as caught:
            await db.get_or_create_index("discord/111/222", encoder, CODEC_ID, dim)
        message = str(caught.value)
        assert "discord/111/222" in message and ENCODER in message and encoder in message
    with pytest.raises(ValueError, match="unknown embedding codec"):
        await db.get_or_create_index("discord/111/222", ENCODER, "pq-v9", DIM)

    assert await db.list_indexes() == [created]  # nothing was overwritten or added


async def test_get_index_unknown_name(db: Database) -> None:
    with pytest.raises(IndexNotFound, match="slack/T1/C1"):
        await db.get_index("slack/T1/C1")


async def test_concurrent_get_or_create_makes_one_index(db: Database) -> None:
    results = await asyncio.gather(*(db.get_or_create_index("shared", ENCODER, CODEC_ID, DIM) for _ in range(8)))
    assert len({r.id for r in results}) == 1
    assert len(await db.list_indexes()) == 1


# --- visibility and atomicity -----------------------------------------------------------------------------------------
async def test_processing_document_is_invisible_until_complete(db: Database) -> None:
    index = await db.get_or_create_index("papers", ENCODER, CODEC_ID, DIM)
    doc = await db.create_document(index.id, "sha-a", "Attention", "attention.pdf", "alice", page_count=9)
    assert doc.status == "processing" and doc.chunk_count == 0

    async def visible() -> bool:
        found = [
            bool(await db.list_documents(index.id)),
            bool(await db.lexical_search(index.id, "transformer attention", 10)),
            len((await db.load_embeddings(index.id)).chunk_ids) > 0,
            bool(await db.get_chunks([1, 2])),
        ]
        assert len(set(found)) == 1, found  # every read path agrees
        return found[0]

    assert not await visible()
    with pytest.raises(DocumentNotFound):
        await db.get_document(index.id, doc.id)
    stats = await db.index_stats(index.id)
    assert (stats.papers, stats.processing, stats.chunks) == (0, 1, 0)

    ready = await db.complete_document(doc.id, make_chunks(["the transformer uses attention", "more attention"]))

    assert await visible()
    assert ready.status == "ready" and ready.chunk_count == 2
    assert await db.get_document(index.id, doc.id) == ready
    assert await db.index_version(index.id) == 1
    stats = await db.index_stats(index.id)
    assert (stats.papers, stats.processing, stats.chunks, stats.tokens) == (1, 0, 2, 3 + 4)
    assert stats.embedding_bytes == (3 + 4) * 2 * DIM
    with pytest.raises(DocumentNotProcessing):  # completing twice would duplicate its chunks
        await db.complete_document(doc.id, make_chunks(["again"]))


async def test_reads_during_the_completing_transaction_see_nothing_of_it(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one connection, a read issued while complete_document's transaction is open sees its uncommitted rows;
    the ready filter (and flipping the status last) must still hide them."""
    index = await db.get_or_create_index("papers", ENCODER, CODEC_ID, DIM)
    doc = await db.create_document(index.id, "sha", "T", "t.pdf", None, page_count=1)
    seen: list[tuple] = []
    original = Transaction.executemany

    async def executemany_then_peek(self: Transaction, sql: str, rows) -> int:
        result = await original(self, sql, rows)
        seen.append(
            (
                await db.lexical_search(index.id, "pelican", 10),
                (await db.load_embeddings(index.id)).chunk_ids.tolist(),
                await db.get_chunks([1, 2]),
                await db.list_documents(index.id),
                (await db.index_stats(index.id)).chunks,
            )
        )
        return result

    monkeypatch.setattr(Transaction, "executemany", executemany_then_peek)
    await db.complete_document(doc.id, make_chunks(["pelican one", "pelican two"]))
    monkeypatch.undo()

    assert len(seen) == 2  # after the chunk rows, and after the embedding rows
    assert all(view == ([], [], [], [], 0) for view in seen), seen
    assert len(await db.lexical_search(index.id, "pelican", 10)) == 2


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda chunks: chunks.append(chunks[0]), id="duplicate-ordinal"),  # fails inside the INSERTs
        pytest.param(
            lambda chunks: chunks.insert(2, NewChunk("x", 1, 1, None, 9, np.ones((2, DIM + 1), np.float32))),
            id="wrong-dim",
        ),
        pytest.param(
            lambda chunks: chunks.insert(2, NewChunk("x", 1, 1, None, 9, np.ones((0, DIM), np.float32))),
            id="no-tokens",
        ),
    ],
)
async def test_complete_document_is_all_or_nothing(db: Database, db_path: Path, spoil) -> None:
    index = await db.get_or_create_index("papers", ENCODER, CODEC_ID, DIM)
    kept = await add_paper(db, index, "sha-kept", ["a zebra in the kept paper"])
    doc = await db.create_document(index.id, "sha-bad", "Bad", "bad.pdf", None, page_count=3)
    chunks = make_chunks(["alpha zebra", "beta zebra", "gamma zebra"])
    spoil(chunks)
    before = [raw_count(db_path, table) for table in ("chunks", "embeddings", "chunks_fts_docsize")]

    with pytest.raises(ValueError):
        await db.complete_document(doc.id, chunks)

    after = [raw_count(db_path, table) for table in ("chunks", "embeddings", "chunks_fts_docsize")]
    assert after == before  # not one row of the failed paper, in any table
    assert [cid for cid, _ in await db.lexical_search(index.id, "zebra", 10)] == [1]
    assert (await db.load_embeddings(index.id)).chunk_ids.tolist() == [1]
    assert [d.id for d in await db.list_documents(index.id)] == [kept]
    assert await db.index_version(index.id) == 1
    assert await db.integrity_check() == "ok"

    # The document is still 'processing', so the pipeline can retry it or mark it failed.
    fixed = await db.complete_document(doc.id, make_chunks(["alpha zebra", "beta zebra"]))
    assert fixed.status == "ready" and len(await db.lexical_search(index.id, "zebra", 10)) == 3


async def test_fail_document_allows_reupload_of_the_same_file(db: Database) -> None:
    index = await db.get_or_create_index("papers", ENCODER, CODEC_ID, DIM)
    first = await db.create_document(index.id, "sha-x", "X", "x.pdf", "bob", page_count=1)
    assert await db.find_document(index.id, "sha-x") == first  # processing blocks a second upload…
    with pytest.raises(DuplicateDocument) as caught:
        await db.create_document(index.id, "sha-x", "X", "x.pdf", "carol", page_count=1)
    assert caught.value.existing == first and "already being indexed" in str(caught.value)

    failed = await db.fail_document(first.id, "no text layer")
    assert (failed.status, failed.error) == ("failed", "no text layer")
    assert await db.find_document(index.id, "sha-x") is None  # …a failed one does not
    second = await db.create_document(index.id, "sha-x", "X", "x.pdf", "carol", page_count=1)
    assert second.id != first.id
    with pytest.raises(DocumentNotProcessing):
        await db.fail_document(first.id, "twice")


async def test_duplicates_are_per_index(db: Database) -> None:
    a = await db.get_or_create_index("discord/1/a", ENCODER, CODEC_ID, DIM)
    b = await db.get_or_create_index("discord/1/b", ENCODER, CODEC_ID, DIM)
    doc_a = await add_paper(db, a, "same-bytes", ["shared text"])
    found = await db.find_document(a.id, "same-bytes")
    assert found is not None and found.id == doc_a and found.status == "ready"
    with pytest.raises(DuplicateDocument, match="already here"):
        await db.create_document(a.id, "same-bytes", "Paper", "p.pdf", None, page_count=1)
    assert await db.find_document(b.id, "same-bytes") is None
    assert await add_paper(db, b, "same-bytes", ["shared text"]) != doc_a


# --- isolation between indexes ----------------------------------------------------------------------------------------
async def test_one_index_never_sees_another(db: Database) -> None:
    a = await db.get_or_create_index("slack/T/A", ENCODER, CODEC_ID, DIM)
    b = await db.get_or_create_index("slack/T/B", ENCODER, CODEC_ID, DIM)
    doc_a = await add_paper(db, a, "sha-1", ["quantum annealing schedules", "annealing again"], "A", seed=1)
    doc_b = await add_paper(db, b, "sha-2", ["quantum annealing hardware"], "B", seed=2)
    ids_a = {c for c, _ in await db.lexical_search(a.id, "quantum annealing", 10)}
    ids_b = {c for c, _ in await db.lexical_search(b.id, "quantum annealing", 10)}
    assert len(ids_a) == 2 and len(ids_b) == 1 and not ids_a & ids_b
    assert {c.doc_id for c in await db.get_chunks(sorted(ids_a))} == {doc_a}

    assert set((await db.load_embeddings(a.id)).chunk_ids.tolist()) == ids_a
    assert set((await db.load_embeddings(b.id)).chunk_ids.tolist()) == ids_b
    assert await db.get_chunks(sorted(ids_b), index_id=a.id) == []
    assert await db.lexical_search(a.id, "quantum", 10, doc_id=doc_b) == []
    with pytest.raises(DocumentNotFound, match="slack/T/A"):
        await db.get_document(a.id, doc_b)
    with pytest.raises(DocumentNotFound):
        await db.remove_document(a.id, doc_b)
    assert [d.id for d in await db.list_documents(b.id)] == [doc_b]
    assert await db.index_version(b.id) == 1  # A's changes did not bump B


# --- removing and clearing --------------------------------------------------------------------------------------------
async def test_remove_document_cascades_everywhere(db: Database, db_path: Path) -> None:
    index = await db.get_or_create_index("papers", ENCODER, CODEC_ID, DIM)
    keep = await add_paper(db, index, "sha-keep", ["giraffe necks are long"], "Keep")
    gone = await add_paper(db, index, "sha-gone", ["okapi stripes", "okapi forest"], "Gone")
    job = await db.create_job(index.id, "/up/gone.pdf", "gone.pdf", "sha-gone", "alice")
    await db.finish_job(job.id, gone)
    assert len(fts_rowids(db_path, "okapi")) == 2
    version = await db.index_version(index.id)

    removed = await db.remove_document(index.id, gone)

    assert removed.id == gone and removed.title == "Gone"
    assert fts_rowids(db_path, "okapi") == []  # the full-text index itself forgot the rows
    assert raw(db_path, "SELECT count(*) FROM chunks WHERE document_id = ?", (gone,)) == [(0,)]
    assert raw_count(db_path, "embeddings") == 1
    assert await db.lexical_search(index.id, "okapi", 10) == []
    assert [d.id for d in await db.list_documents(index.id)] == [keep]
    assert await db.index_version(index.id) == version + 1
    assert (await db.get_job(job.id)).document_id is None  # the job history stays, unlinked
    assert await db.integrity_check() == "ok"
    with pytest.raises(DocumentNotFound):
        await db.remove_document(index.id, gone)


async def test_clear_index_removes_ready_and_failed_but_not_in_flight(db: Database, db_path: Path) -> None:
    index = await db.get_or_create_index("papers", ENCODER, CODEC_ID, DIM)
    other = await db.get_or_create_index("other", ENCODER, CODEC_ID, DIM)
    await add_paper(db, index, "s1", ["walrus one"])
    await add_paper(db, index, "s2", ["walrus two"])
    await add_paper(db, other, "s3", ["walrus elsewhere"])
    failed = await db.create_document(index.id, "s4", "F", "f.pdf", None, page_count=1)
    await db.fail_document(failed.id, "broken")
    in_flight = await db.create_document(index.id, "s5", "P", "p.pdf", None, page_count=1)

    assert await db.clear_index(index.id) == 2

    assert await db.list_documents(index.id) == []
    assert await db.lexical_search(index.id, "walrus", 10) == []
    assert len(fts_rowids(db_path, "walrus")) == 1  # only the other index's chunk is left in the FTS index
    assert len(await db.lexical_search(other.id, "walrus", 10)) == 1
    assert (await db.load_embeddings(index.id)).vectors.shape == (0, DIM)
    assert await db.find_document(index.id, "s5") == in_flight
    assert await db.clear_index(index.id) == 0
    assert await db.integrity_check() == "ok"


async def test_delete_document_drops_a_half_done_one(db: Database) -> None:
    index = await db.get_or_create_index("papers", ENCODER, CODEC_ID, DIM)
    doc = await db.create_document(index.id, "sha", "T", "t.pdf", None, page_count=1)
    assert await db.delete_document(doc.id) is True
    assert await db.delete_document(doc.id) is False
    assert await db.find_document(index.id, "sha") is None
    with pytest.raises(DocumentNotProcessing, match="removed"):
        await db.complete_document(doc.id, make_chunks(["late"]))
    assert await db.index_version(index.id) == 0  # nothing visible ever changed


# --- search and reads -------------------------------------------------------------------------------------------------
HOSTILE = [
    """what's "x"? (a*b) -- NEAR""",
    '"',
    '""""',
    "*",
    "NOT",
    "AND OR NOT",
    "text:giraffe",
    "^giraffe",
    "NEAR(giraffe neck, 2)",
    ")))(((",
    "'; DROP TABLE chunks; --",
    "giraffe*",
    "-giraffe +neck",
    "{giraffe neck}",
    "",
    "   \n\t ",
    "😀 🦒",
    "naïve Café GIRAFFE",
    "x" * 5000,
    " ".join(f"word{i}" for i in range(500)),
    "\x00giraffe",
]


@pytest.mark.parametrize("query", HOSTILE)
async def test_lexical_search_survives_hostile_queries(db: Database, query: str) -> None:
    index = await db.get_or_create_index("papers", ENCODER, CODEC_ID, DIM)
    await add_paper(db, index, "sha", ["the giraffe neck is long", "naive cafe owners"])
    hits = await db.lexical_search(index.id, query, 5)
    assert isinstance(hits, list) and len(hits) <= 5
    found = {chunk_id for chunk_id, _ in hits}
    if "giraffe" in query.lower():
        assert 1 in found
    if "naïve" in query:  # diacritics folded on both sides
        assert 2 in found


async def test_lexical_search_ranks_filters_and_limits(db: Database) -> None:
    index = await db.get_or_create_index("papers", ENCODER, CODEC_ID, DIM)
    texts = ["dropout regularizes training", "dropout dropout dropout everywhere", "nothing relevant", "batch norm"]
    doc1 = await add_paper(db, index, "sha-1", texts, "One")
    doc2 = await add_paper(db, index, "sha-2", ["dropout in the second paper"], "Two")

    hits = await db.lexical_search(index.id, "What is dropout?", 10)
    assert hits[0][0] == 2  # the chunk saying it three times wins
    assert {cid for cid, _ in hits} == {1, 2, 5}
    scores = [score for _, score in hits]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)

    assert [cid for cid, _ in await db.lexical_search(index.id, "dropout", 10, doc_id=doc2)] == [5]
    assert {cid for cid, _ in await db.lexical_search(index.id, "dropout", 10, doc_id=doc1)} == {1, 2}
    assert len(await db.lexical_search(index.id, "dropout", 1)) == 1
    # Only stopwords: they are searched rather than nothing ("the" is in chunk 5 alone).
    assert [cid for cid, _ in await db.lexical_search(index.id, "what is the", 10)] == [5]
    # Porter stemming: another form of the word finds it.
    assert [cid for cid, _ in await db.lexical_search(index.id, "regularizing", 10)] == [1]
    assert await db.lexical_search(index.id, "dropout", 0) == []


async def test_get_chunks_keeps_the_order_asked(db: Database) -> None:
    index = await db.get_or_create_index("papers", ENCODER, CODEC_ID, DIM)
    await add_paper(db, index, "sha", ["zero", "one", "two"], "Title A")
    chunks = await db.get_chunks([3, 1, 999, 3, 2])
    assert [c.id for c in chunks] == [3, 1, 2]
    assert [c.text for c in chunks] == ["two", "zero", "one"]
    first = chunks[1]
    assert (first.title, first.ordinal, first.page_start, first.page_end, first.section) == ("Title A", 0, 1, 2, None)
    assert chunks[2].section == "S1"
    assert await db.get_chunks([]) == []


async def test_load_embeddings_returns_the_stored_vectors(db: Database) -> None:
    index = await db.get_or_create_index("papers", ENCODER, CODEC_ID, DIM)
    first = make_chunks(["a", "b", "c"], seed=3)
    doc1 = await db.create_document(index.id, "s1", "One", "one.pdf", None, page_count=1)
    await db.complete_document(doc1.id, first)
    doc2 = await add_paper(db, index, "s2", ["d", "e"], seed=4)

    matrix = await db.load_embeddings(index.id)
    assert matrix.chunk_ids.tolist() == [1, 2, 3, 4, 5]
    assert matrix.offsets.tolist() == [0, 3, 7, 12, 15, 19]
    assert matrix.vectors.dtype == np.float16 and matrix.vectors.shape == (19, DIM)
    for i, chunk in enumerate(first):
        stored = matrix.vectors[matrix.offsets[i] : matrix.offsets[i + 1]]
        assert np.array_equal(stored, chunk.embedding.astype(np.float16))
    assert matrix.version == await db.index_version(index.id) == 2

    one = await db.load_embeddings(index.id, doc_id=doc2)
    assert one.chunk_ids.tolist() == [4, 5] and one.offsets.tolist() == [0, 3, 7]
    assert np.array_equal(one.vectors, matrix.vectors[12:])

    await db.remove_document(index.id, doc1.id)
    assert (await db.load_embeddings(index.id)).version == 3


# --- jobs -------------------------------------------------------------------------------------------------------------
async def test_completing_a_document_finishes_its_job_in_the_same_transaction(db: Database) -> None:
    # A kill between "paper ready" and "job done" left a visible paper behind a running job (seen in
    # test_cli's SIGKILL test); now one commit does both, and a failed completion does neither.
    index = await db.get_or_create_index("web/local/jobs", ENCODER, CODEC_ID, DIM)
    job = await db.create_job(index.id, "/uploads/a.pdf", "a.pdf", "sha-a", "alice")
    await db.start_job(job.id)
    doc = await db.create_document(index.id, "sha-a", "A", "a.pdf", "alice", page_count=1)
    await db.attach_job_document(job.id, doc.id)
    with pytest.raises(ValueError):
        await db.complete_document(doc.id, [NewChunk("bad", 1, 1, None, 0, np.ones((3, DIM + 1), np.float32))],
                                   job_id=job.id)  # a wrong embedding size: nothing is written
    assert (await db.get_job(job.id)).status == "running" and await db.list_documents(index.id) == []
    ready = await db.complete_document(doc.id, make_chunks(["text"]), job_id=job.id)
    done = await db.get_job(job.id)
    assert ready.status == "ready" and (done.status, done.document_id) == ("done", doc.id)
    assert await db.unfinished_jobs() == []


async def test_jobs_lifecycle_survives_a_restart(db_path: Path) -> None:
    async with await Database.open(db_path) as db:
        index = await db.get_or_create_index("discord/9/8", ENCODER, CODEC_ID, DIM)
        first = await db.create_job(index.id, "/uploads/a.pdf", "a.pdf", "sha-a", "alice")
        second = await db.create_job(index.id, "/uploads/b.pdf", "b.pdf", "sha-b", None)
        third = await db.create_job(index.id, "/uploads/c.pdf", "c.pdf", "sha-c", "carol")
        assert (first.status, first.attempts, first.index_name) == ("pending", 0, "discord/9/8")
        assert first.document_id is None
        running = await db.start_job(first.id)
        assert (running.status, running.attempts) == ("running", 1)
        half_done = await db.create_document(index.id, "sha-a", "A", "a.pdf", "alice", page_count=2)
        assert (await db.attach_job_document(first.id, half_done.id)).document_id == half_done.id
        await db.start_job(third.id)
        failed = await db.fail_job(third.id, "not a PDF")
        assert (failed.status, failed.error) == ("failed", "not a PDF")

    # The bot was killed: what it had started or not yet started comes back, oldest first.
    async with await Database.open(db_path) as db:
        unfinished = await db.unfinished_jobs()
        assert [(j.id, j.status) for j in unfinished] == [(first.id, "running"), (second.id, "pending")]
        assert unfinished[0].path == "/uploads/a.pdf" and unfinished[0].uploader == "alice"
        # Resuming: drop the half-written paper the job points at, then run the job again.
        assert unfinished[0].document_id == half_done.id
        assert await db.delete_document(half_done.id)
        assert (await db.get_job(first.id)).document_id is None

        again = await db.start_job(first.id)
        assert again.attempts == 2
        doc = await add_paper(db, await db.get_index("discord/9/8"), "sha-a", ["text"])
        done = await db.finish_job(first.id, doc)
        assert (done.status, done.document_id, done.error) == ("done", doc, None)
        assert datetime.fromisoformat(done.updated_at) >= datetime.fromisoformat(done.created_at)
        assert [j.id for j in await db.unfinished_jobs()] == [second.id]

        for call in (
            db.get_job(999),
            db.start_job(999),
            db.attach_job_document(999, doc),
            db.finish_job(999, None),
            db.fail_job(999, "x"),
        ):
            with pytest.raises(JobNotFound):
                await call


# --- concurrency and health -------------------------------------------------------------------------------------------
async def test_concurrent_writers_and_readers(db: Database) -> None:
    index = await db.get_or_create_index("busy", ENCODER, CODEC_ID, DIM)

    async def ingest(n: int) -> int:
        return await add_paper(db, index, f"sha-{n}", [f"topic{n} common", f"more topic{n}"], f"P{n}", seed=n)

    async def read() -> None:
        for _ in range(5):
            await db.lexical_search(index.id, "common", 50)
            matrix = await db.load_embeddings(index.id)
            assert len(matrix.offsets) == len(matrix.chunk_ids) + 1
            await asyncio.sleep(0)

    results = await asyncio.gather(*(ingest(n) for n in range(10)), *(read() for _ in range(3)))
    assert len(set(results[:10])) == 10
    assert len(await db.list_documents(index.id)) == 10
    assert await db.index_version(index.id) == 10
    assert len(await db.lexical_search(index.id, "common", 50)) == 10


async def test_a_write_cancelled_mid_transaction_is_rolled_back(
    db: Database, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = await db.get_or_create_index("papers", ENCODER, CODEC_ID, DIM)
    doc = await db.create_document(index.id, "sha", "T", "t.pdf", None, page_count=1)
    original = Transaction.executemany

    async def executemany_then_get_cancelled(self: Transaction, sql: str, rows) -> int:
        result = await original(self, sql, rows)  # the chunk rows are in, uncommitted
        asyncio.current_task().cancel()  # e.g. the bot shutting down
        await asyncio.sleep(0)
        return result

    monkeypatch.setattr(Transaction, "executemany", executemany_then_get_cancelled)
    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(db.complete_document(doc.id, make_chunks(["ibis one", "ibis two"])))
    monkeypatch.undo()

    assert raw_count(db_path, "chunks") == 0 and fts_rowids(db_path, "ibis") == []
    assert await db.lexical_search(index.id, "ibis", 10) == []
    # The lock was released and no transaction was left open: the next writes go through.
    done = await db.complete_document(doc.id, make_chunks(["ibis one", "ibis two"]))
    assert done.status == "ready" and len(await db.lexical_search(index.id, "ibis", 10)) == 2
    assert await db.integrity_check() == "ok"


async def test_integrity_check_notices_a_stale_fulltext_index(db: Database, db_path: Path) -> None:
    index = await db.get_or_create_index("papers", ENCODER, CODEC_ID, DIM)
    await add_paper(db, index, "sha", ["heron"])
    assert await db.integrity_check() == "ok"
    # Another program deletes chunks behind the triggers' back.
    with sqlite3.connect(db_path) as conn:
        conn.execute("DROP TRIGGER chunks_fts_delete")
        conn.execute("DELETE FROM chunks")
    assert await db.integrity_check() != "ok"
