"""The SQLite file behind paperbot: indexes, papers, chunks, full-text rows, token embeddings and ingestion jobs.

    async with await Database.open(settings.database_path) as db:
        index = await db.get_or_create_index(name, encoder_id, CODEC_ID, dim)

`Database` is the only door; no SQL lives outside this package.
"""

from storage.codec import CODEC_ID
from storage.db import Database

__all__ = ["CODEC_ID", "Database"]
