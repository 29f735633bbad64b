"""Failures a user can meet, each with the sentence they read. Anything else is a bug."""

from __future__ import annotations

# Storage failures a user can meet, re-exported so callers above rag_engine need not reach into storage.
from storage.errors import LIST_PAPERS, DocumentNotFound, EncoderMismatch, IndexNotFound, StorageError  # noqa: F401


class PaperbotError(Exception):
    """Root of user-facing failures; `str(error)` is the message shown in chat."""


# --- reading a PDF ----------------------------------------------------------------------------------------------------
class UnsupportedFile(PaperbotError):
    """The upload cannot be indexed. `reason` is a short machine-readable code (used in logs and tests)."""

    reason = "unsupported"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class EmptyFile(UnsupportedFile):
    reason = "empty"


class NotAPdf(UnsupportedFile):
    reason = "not_pdf"


class PasswordProtected(UnsupportedFile):
    reason = "encrypted"


class DamagedPdf(UnsupportedFile):
    reason = "damaged"


class NoPages(UnsupportedFile):
    reason = "no_pages"


class NoText(UnsupportedFile):
    reason = "no_text"


class TooLarge(UnsupportedFile):
    reason = "too_large"


class OverBudget(UnsupportedFile):
    """Reading the file needed more CPU time or memory than one document may take (a hostile or pathological PDF)."""

    reason = "over_budget"


# --- models and questions ---------------------------------------------------------------------------------------------
class ModelUnavailable(PaperbotError):
    """A model is neither on disk nor downloadable (offline, wrong id)."""


class QueueFull(PaperbotError):
    def __init__(self, message: str = "I'm busy answering other questions. Please try again in a moment.") -> None:
        super().__init__(message)


class RequestTimeout(PaperbotError):
    def __init__(self, message: str = "That took too long to answer, so I stopped. Try a shorter question.") -> None:
        super().__init__(message)

    @classmethod
    def busy(cls, others: int) -> RequestTimeout:
        """Timed out while the model served others: the load, not the question, is why."""
        return cls(f"I was answering {others} other question{'s' if others != 1 else ''} at the same time and ran out "
                   "of time on yours, so I stopped. Please ask again in a minute.")


class InvalidQuestion(PaperbotError):
    pass


class PermissionDenied(PaperbotError):
    pass


#: What bot/core catches and shows verbatim; every other exception is logged as a bug.
USER_FACING: tuple[type[Exception], ...] = (PaperbotError, StorageError)
