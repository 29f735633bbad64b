"""Numbered schema steps, applied in order at open; `PRAGMA user_version` holds how many have run.

Never edit or reorder a step once released: add a new one at the end. A step is either a tuple of SQL statements or
an async function given the connection; either runs inside one `BEGIN IMMEDIATE` transaction together with the
`user_version` bump, so a step is applied whole or not at all, and two processes opening a fresh file at once
cannot both apply it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import aiosqlite

from storage.errors import SchemaTooNew

log = logging.getLogger(__name__)

Migration = Sequence[str] | Callable[[aiosqlite.Connection], Awaitable[None]]

# --- 1: indexes, documents, chunks (+ FTS5), token embeddings, ingestion jobs ---------------------------------------
V1_INITIAL: tuple[str, ...] = (
    """
    CREATE TABLE indexes (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,   -- a free name or discord/GUILD/CHANNEL, slack/TEAM/CHANNEL
        encoder_id  TEXT NOT NULL,
        codec       TEXT NOT NULL,
        dim         INTEGER NOT NULL CHECK (dim > 0),
        version     INTEGER NOT NULL DEFAULT 0,  -- bumped whenever what search sees changes
        created_at  TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE documents (
        id           INTEGER PRIMARY KEY,
        index_id     INTEGER NOT NULL REFERENCES indexes(id) ON DELETE CASCADE,
        sha256       TEXT NOT NULL,
        title        TEXT NOT NULL,
        filename     TEXT NOT NULL,
        page_count   INTEGER NOT NULL DEFAULT 0,
        uploader     TEXT,
        status       TEXT NOT NULL CHECK (status IN ('processing', 'ready', 'failed')),
        error        TEXT,
        chunk_count  INTEGER NOT NULL DEFAULT 0,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
    )
    """,
    # A failed attempt must not block uploading the same file again, so uniqueness covers live documents only.
    "CREATE UNIQUE INDEX documents_live_sha256 ON documents (index_id, sha256) WHERE status <> 'failed'",
    "CREATE INDEX documents_by_index ON documents (index_id, status)",
    """
    CREATE TABLE chunks (
        id           INTEGER PRIMARY KEY,
        document_id  INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        ordinal      INTEGER NOT NULL,
        text         TEXT NOT NULL,
        page_start   INTEGER NOT NULL,
        page_end     INTEGER NOT NULL,
        section      TEXT,
        UNIQUE (document_id, ordinal)
    )
    """,
    """
    CREATE VIRTUAL TABLE chunks_fts USING fts5(
        text, content='chunks', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
    )
    """,
    # External-content FTS5 keeps no copy of the text; these triggers keep its index in step with `chunks`,
    # including rows removed by ON DELETE CASCADE from documents.
    """
    CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
        INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text);
    END
    """,
    """
    CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
        INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END
    """,
    """
    CREATE TRIGGER chunks_fts_update AFTER UPDATE OF text ON chunks BEGIN
        INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text);
    END
    """,
    """
    CREATE TABLE embeddings (
        chunk_id  INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
        n_tokens  INTEGER NOT NULL CHECK (n_tokens > 0),
        vectors   BLOB NOT NULL            -- n_tokens × dim in the index's codec
    )
    """,
    """
    CREATE TABLE jobs (
        id           INTEGER PRIMARY KEY,
        index_id     INTEGER NOT NULL REFERENCES indexes(id) ON DELETE CASCADE,
        path         TEXT NOT NULL,        -- the stored upload, re-read when the job is resumed after a restart
        filename     TEXT NOT NULL,
        sha256       TEXT NOT NULL,
        uploader     TEXT,
        status       TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
        error        TEXT,
        document_id  INTEGER REFERENCES documents(id) ON DELETE SET NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
    )
    """,
    "CREATE INDEX jobs_unfinished ON jobs (status, id) WHERE status IN ('pending', 'running')",
    "CREATE INDEX jobs_by_document ON jobs (document_id)",
)

#: Every step ever released, oldest first. Append only.
# --- 2: posted answers and their 👍/👎 (for evaluation), and the running bot's heartbeat ----------------------------
V2_FEEDBACK_HEARTBEAT: tuple[str, ...] = (
    """
    CREATE TABLE answers (
        id           INTEGER PRIMARY KEY,
        index_id     INTEGER NOT NULL REFERENCES indexes(id) ON DELETE CASCADE,
        message_ref  TEXT NOT NULL,           -- the platform message that shows the answer
        question     TEXT NOT NULL,
        answer_json  TEXT NOT NULL,           -- reasoning, answer, abstained, sources
        created_at   TEXT NOT NULL,
        UNIQUE (index_id, message_ref)
    )
    """,
    """
    CREATE TABLE feedback (
        id          INTEGER PRIMARY KEY,
        answer_id   INTEGER NOT NULL REFERENCES answers(id) ON DELETE CASCADE,
        user_id     TEXT NOT NULL,
        vote        INTEGER NOT NULL CHECK (vote IN (-1, 1)),
        created_at  TEXT NOT NULL,
        UNIQUE (answer_id, user_id, vote)
    )
    """,
    """
    CREATE TABLE heartbeat (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        pid          INTEGER NOT NULL,
        queue_depth  INTEGER NOT NULL,
        runs_on      TEXT NOT NULL,
        beat_at      TEXT NOT NULL
    )
    """,
)

# --- 3: who works on a job, and until when (a second process must not take over a live job) ------------------------
V3_JOB_LEASE: tuple[str, ...] = (
    # owner: pid@host/token of the process working on it (NULL: nobody); lease_until: renewed by the owner while it
    # works, past it the job is stale and another process may resume it.
    "ALTER TABLE jobs ADD COLUMN owner TEXT",
    "ALTER TABLE jobs ADD COLUMN lease_until TEXT",
)

# --- 4: compressed token embeddings (centroid id + residual bits per token) beside the float16 originals -------------
# The float16 rows stay the source of truth (centroids are retrained from them as an index grows); search reads the
# compressed rows. `generation` ties rows to the codebook they were made with: a retrain bumps it.
V4_COMPRESSED_EMBEDDINGS: tuple[str, ...] = (
    """
    CREATE TABLE codebooks (
        index_id        INTEGER PRIMARY KEY REFERENCES indexes(id) ON DELETE CASCADE,
        generation      INTEGER NOT NULL,
        nbits           INTEGER NOT NULL CHECK (nbits IN (1, 2, 4)),
        trained_tokens  INTEGER NOT NULL,       -- how many vectors the index held when this was trained
        centroids       BLOB NOT NULL,          -- float32 (K, dim), little-endian
        cutoffs         BLOB NOT NULL,          -- float32 (dim, 2^nbits - 1)
        weights         BLOB NOT NULL,          -- float32 (dim, 2^nbits)
        created_at      TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE compressed_embeddings (
        chunk_id    INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
        generation  INTEGER NOT NULL,
        codes       BLOB NOT NULL,              -- uint16 centroid id per token, little-endian
        residuals   BLOB NOT NULL               -- n_tokens × dim·nbits/8 packed bucket ids
    )
    """,
)

# --- 5: a second residual scheme, product quantization in a rotated basis (rag_engine/retrieval/residual.py) ----------
# codebooks is rebuilt (SQLite cannot change a CHECK): `scheme` says how residual bytes decode, `residual_bytes` how
# many each token has, `rotation` the basis of a "pq" codebook. Existing codebooks are "scalar" and keep working; search
# retrains an index on its next use when its scheme is not the configured one (its float16 rows are the source).
V5_RESIDUAL_SCHEMES: tuple[str, ...] = (
    """
    CREATE TABLE codebooks_v5 (
        index_id        INTEGER PRIMARY KEY REFERENCES indexes(id) ON DELETE CASCADE,
        generation      INTEGER NOT NULL,
        scheme          TEXT NOT NULL,
        nbits           INTEGER NOT NULL,       -- scalar: bits per dimension; pq: 8 (a byte per group)
        residual_bytes  INTEGER NOT NULL CHECK (residual_bytes > 0),  -- packed residual bytes per token
        trained_tokens  INTEGER NOT NULL,
        centroids       BLOB NOT NULL,          -- float32 (K, dim), little-endian, in the basis x @ rotation
        cutoffs         BLOB NOT NULL,          -- scalar: float32 (dim, 2^nbits - 1); pq: empty
        weights         BLOB NOT NULL,          -- scalar: float32 (dim, 2^nbits); pq: codewords (groups, 256, width)
        rotation        BLOB,                   -- pq: float32 (dim, dim); scalar: NULL (the identity)
        created_at      TEXT NOT NULL,
        CHECK ((scheme = 'scalar' AND nbits IN (1, 2, 4)) OR (scheme = 'pq' AND nbits = 8 AND rotation IS NOT NULL))
    )
    """,
    """
    INSERT INTO codebooks_v5 (index_id, generation, scheme, nbits, residual_bytes, trained_tokens, centroids, cutoffs,
                              weights, rotation, created_at)
    SELECT b.index_id, b.generation, 'scalar', b.nbits, i.dim * b.nbits / 8, b.trained_tokens, b.centroids, b.cutoffs,
           b.weights, NULL, b.created_at
    FROM codebooks b JOIN indexes i ON i.id = b.index_id
    """,
    "DROP TABLE codebooks",
    "ALTER TABLE codebooks_v5 RENAME TO codebooks",
)

MIGRATIONS: tuple[Migration, ...] = (
    V1_INITIAL, V2_FEEDBACK_HEARTBEAT, V3_JOB_LEASE, V4_COMPRESSED_EMBEDDINGS, V5_RESIDUAL_SCHEMES
)


async def schema_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return 0 if row is None else int(row[0])


async def apply_migrations(conn: aiosqlite.Connection, path: str, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the schema up to `len(migrations)`; returns the version the file is at afterwards.

    `conn` must be in autocommit mode (isolation_level=None) with no transaction open.
    """
    target = len(migrations)
    found = await schema_version(conn)
    if found > target:
        raise SchemaTooNew(path, found, target)
    for number in range(found + 1, target + 1):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it while we waited for the write lock.
            if await schema_version(conn) >= number:
                await conn.rollback()
                continue
            step = migrations[number - 1]
            if callable(step):
                await step(conn)
            else:
                for statement in step:
                    await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {number:d}")
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise
        log.info("database %s migrated to schema version %d", path, number)
    return max(found, target)
