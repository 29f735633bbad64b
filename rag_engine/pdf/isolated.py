"""`extract_pdf` in a child process with a CPU-time and memory budget, awaited without blocking the event loop.

A thread cannot stop MuPDF or Python's `re` (both keep working however long a hostile file asks), and holding the GIL
they stall the event loop; a child process can be killed. The child sets its own RLIMIT_CPU (the kernel stops it when
its CPU time is spent) and RLIMIT_AS (allocations past the budget fail) before it reads anything; the parent kills it
past a wall-clock deadline too. A document over budget is refused with `OverBudget`, like any file the bot cannot read.

The child is a fresh interpreter (`python -c _CHILD`: none of the bot's threads, models or memory),
reads the PDF on stdin and writes JSON on stdout. JSON rather than pickle: the child parses hostile input, so what it
sends back is data, never code the parent would run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import resource
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from rag_engine import errors as error_types
from rag_engine.errors import DamagedPdf, OverBudget, UnsupportedFile
from rag_engine.pdf.checks import check_bytes
from rag_engine.types import ExtractedPdf, PageText

log = logging.getLogger(__name__)

_SOURCE_ROOT = Path(__file__).resolve().parents[2]
# PyMuPDF imports the optional pymupdf.layout (about 1 s of CPU) when it is installed; reading text does not use it.
_CHILD = f"import sys; sys.modules['pymupdf.layout'] = None; from {__name__} import _main; _main()"

#: Refusals the child may report, by reason code: nothing else is raised from what it says.
_REFUSALS: dict[str, type[UnsupportedFile]] = {
    cls.reason: cls
    for cls in vars(error_types).values()
    if isinstance(cls, type) and issubclass(cls, UnsupportedFile) and cls is not UnsupportedFile
}


@dataclass(frozen=True, slots=True)
class ExtractionBudget:
    """What reading one document may cost. `wall_seconds` also covers a child starved of CPU by other work."""

    cpu_seconds: float
    memory_bytes: int

    @property
    def wall_seconds(self) -> float:
        return 4 * self.cpu_seconds + 10


async def extract_pdf_isolated(
    data: bytes, *, max_bytes: int, max_pages: int, filename: str = "", budget: ExtractionBudget
) -> ExtractedPdf:
    """`extract_pdf` in a killable child process. Raises an `UnsupportedFile` subclass (`OverBudget` past `budget`)."""
    check_bytes(data, max_bytes)  # the cheap refusals need no process
    limits = json.dumps({
        "max_bytes": max_bytes, "max_pages": max_pages, "filename": filename,
        "cpu_seconds": budget.cpu_seconds, "memory_bytes": budget.memory_bytes,
    })
    # The child imports this package from where the parent did, whatever its working directory or install.
    path = os.pathsep.join(filter(None, [str(_SOURCE_ROOT), os.environ.get("PYTHONPATH")]))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, limits, env=os.environ | {"PYTHONPATH": path},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(data), budget.wall_seconds)
    except TimeoutError:
        out, err = b"", b""
    finally:
        if child.returncode is None:  # past the deadline, or the caller was cancelled
            child.kill()
            await asyncio.shield(child.wait())
    if err:  # the child's warnings (pages skipped, text truncated), or a bug's traceback
        level = logging.INFO if child.returncode == 0 else logging.WARNING
        log.log(level, "PDF reader on %s:\n%s", filename, err.decode(errors="replace")[-4000:])
    return _outcome(out, child.returncode, budget, filename)


def _outcome(out: bytes, returncode: int | None, budget: ExtractionBudget, filename: str) -> ExtractedPdf:
    message = json.loads(out) if returncode == 0 and out else {}
    if "pages" in message:
        return ExtractedPdf(
            title=message["title"],
            page_count=message["page_count"],
            pages=tuple(
                PageText(number=page["number"], text=page["text"], headings=tuple(map(tuple, page["headings"])))
                for page in message["pages"]
            ),
        )
    if message.get("refused") in _REFUSALS:
        raise _REFUSALS[message["refused"]](message["message"])
    if message.get("memory"):
        log.warning("%s: reading it needed over %d MiB: refused", filename, budget.memory_bytes >> 20)
        raise OverBudget(
            "Reading this PDF needs more memory than I allow for one document, so I stopped. If it is a normal paper, "
            "export it to PDF again (or print it to PDF) and upload that."
        )
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        log.warning("%s: reading it took over its %.0f s budget: refused", filename, budget.cpu_seconds)
        raise OverBudget(
            f"Reading this PDF takes longer than the {budget.cpu_seconds:.0f} s I allow for one document, so I "
            "stopped. If it is a normal paper, export it to PDF again (or print it to PDF) and upload that."
        )
    if returncode == 1:  # a bug in the reader, not the file's fault: its traceback is in the log
        raise RuntimeError(f"the PDF reader process failed on {filename} (see the log)")
    log.error("%s: the PDF reader process died (exit %s)", filename, returncode)
    raise DamagedPdf("The PDF reader crashed on this file, so I stopped. Please export it to PDF again and upload that.")


def _child(limits: dict) -> dict:
    """In the child: set the budget, then read stdin's PDF into a JSON-able answer."""
    cpu = max(1, math.ceil(limits["cpu_seconds"]))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU at the soft limit, SIGKILL at the hard one
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"], limits["memory_bytes"]))
    from rag_engine.pdf.extract import extract_pdf

    data = sys.stdin.buffer.read()
    try:
        pdf = extract_pdf(data, max_bytes=limits["max_bytes"], max_pages=limits["max_pages"], filename=limits["filename"])
    except UnsupportedFile as refusal:
        return {"refused": refusal.reason, "message": str(refusal)}
    except MemoryError:
        return {"memory": True}
    return {
        "title": pdf.title,
        "page_count": pdf.page_count,
        "pages": [{"number": p.number, "text": p.text, "headings": p.headings} for p in pdf.pages],
    }


def _main() -> None:
    """The child's entry point (see `_CHILD`)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    try:
        answer = json.dumps(_child(json.loads(sys.argv[1])))
    except MemoryError:
        answer = json.dumps({"memory": True})
    sys.stdout.write(answer)
