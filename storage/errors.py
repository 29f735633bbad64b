"""Failures of the storage layer that a user can meet. Each carries the sentence they read."""

from __future__ import annotations

#: How the chat platforms list papers; messages name it, and the CLI and terminal chat put their own in its place.
LIST_PAPERS = "`/papers list`"


class StorageError(Exception):
    """Root of storage failures; `str(error)` is written for the user."""


class IndexNotFound(StorageError):
    def __init__(self, name: str) -> None:
        super().__init__(f"There is no index named '{name}'. Add a paper to it first.")
        self.name = name


class InvalidIndexName(StorageError, ValueError):
    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name!r} cannot name an index: {why}. Use letters, digits and punctuation, e.g. 'ml-papers'.")
        self.name = name


class EncoderMismatch(StorageError):
    """The index was built with another encoder or embedding codec; vectors from two models never mix."""

    def __init__(self, name: str, built_with: str, requested: str) -> None:
        super().__init__(
            f"Index '{name}' was built with {built_with}, but the configured encoder is {requested}. "
            "Re-encode it (clear the index and add the papers again) or switch the encoder back."
        )
        self.name = name
        self.built_with = built_with
        self.requested = requested


class DocumentNotFound(StorageError):
    def __init__(self, doc_id: int, index: str) -> None:
        super().__init__(f"There is no paper with id {doc_id} in '{index}'. {LIST_PAPERS} shows the ids.")
        self.doc_id = doc_id


class DuplicateDocument(StorageError):
    """The same file (by SHA-256) is already in this index, ready or being indexed."""

    def __init__(self, existing: object) -> None:  # a DocumentRecord; typed loosely to keep errors free of records
        title = getattr(existing, "title", "this paper")
        doc_id = getattr(existing, "id", "?")
        state = "is already being indexed" if getattr(existing, "status", "") == "processing" else "is already here"
        super().__init__(f"'{title}' {state} (id {doc_id}).")
        self.existing = existing


class DocumentNotProcessing(StorageError):
    """complete_document/fail_document on a paper that is gone or no longer being indexed."""

    def __init__(self, doc_id: int, status: str | None) -> None:
        what = "was removed" if status is None else f"is no longer being indexed (it is {status})"
        super().__init__(f"Paper {doc_id} {what} while it was being indexed; nothing was stored.")
        self.doc_id = doc_id
        self.status = status


class JobNotFound(StorageError):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"There is no ingestion job with id {job_id}.")
        self.job_id = job_id


class SchemaTooNew(StorageError):
    """The database file was written by a newer paperbot; opening it with this one could damage it."""

    def __init__(self, path: str, found: int, known: int) -> None:
        super().__init__(
            f"The database {path} has schema version {found}, but this paperbot knows only up to {known}. "
            "Upgrade paperbot, or point it at another data folder."
        )
        self.found = found
        self.known = known


class DatabaseBusy(StorageError):
    """The file is being replaced (a restore) or is in use by a running bot when it must not be."""

    def __init__(self, path: str, detail: str = "a restore is replacing it") -> None:
        super().__init__(f"The database {path} cannot be used now: {detail}.")
        self.path = path


class BackupRefused(StorageError):
    """A file that cannot be restored (damaged, not a paperbot database, or from a newer paperbot)."""
