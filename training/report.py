"""The harness's results: one record per reply, and the Markdown tables that put model settings side by side."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
import statistics

from training import metrics
from training.metrics import Rate


@dataclass
class Record:
    """One question's reply and its scores (None: the metric does not apply to this kind of question)."""

    id: str
    kind: str
    question: str
    raw: str
    reasoning: str
    answer: str
    abstained: bool
    asked_model: bool  # False: the answerer declined before generation (nothing relevant retrieved)
    sources: list[dict]
    seconds: float
    format_ok: bool
    separator: bool
    citations_valid: bool
    cited_page_right: bool | None
    retrieved_page_right: bool | None
    key_fact: bool | None
    token_f1: float | None
    rouge_l: float | None
    words: int
    # cited_page_right judges the answer shown (the parser may carry the reasoning's citations into it); this one the
    # answer's citations as the model wrote them. None in records written before it existed.
    cited_page_written: bool | None = None


@dataclass
class ConfigResult:
    label: str
    records: list[Record]
    wall_s: float
    machine: str
    backend: str
    parallel: int

    def of(self, *kinds: str) -> list[Record]:
        return [r for r in self.records if r.kind in kinds]


# (row name, the set it is computed over, how) — each row shows "value (count)".
Row = tuple[str, str, Callable[[ConfigResult], Rate]]


def _rate(kinds: tuple[str, ...], get: Callable[[Record], float | bool | None]) -> Callable[[ConfigResult], Rate]:
    return lambda result: metrics.mean([v for r in result.of(*kinds) if (v := get(r)) is not None])


ANS, OFF, QASA = ("answerable",), ("off_topic",), ("qasa_unanswerable",)
BOTH = ("answerable", "off_topic")


def _abstention(kinds: tuple[str, ...], which: str) -> Callable[[ConfigResult], Rate]:
    def get(result: ConfigResult) -> Rate:
        scores = metrics.abstention_scores((r.kind != "answerable", r.abstained) for r in result.of(*kinds))
        return getattr(scores, which)

    return get


MAIN_ROWS: list[Row] = [
    ("format: reasoning and answer non-empty", "answerable + off-topic", _rate(BOTH, lambda r: r.format_ok)),
    ("`#####` written", "answerable + off-topic", _rate(BOTH, lambda r: r.separator)),
    ("citations valid", "answerable + off-topic", _rate(BOTH, lambda r: r.citations_valid)),
    ("cited page right", "answerable", _rate(ANS, lambda r: r.cited_page_right)),
    ("cited page right, the answer's citations as written", "answerable", _rate(ANS, lambda r: r.cited_page_written)),
    ("key fact in answer", "answerable", _rate(ANS, lambda r: r.key_fact)),
    ("token F1", "answerable", _rate(ANS, lambda r: r.token_f1)),
    ("ROUGE-L", "answerable", _rate(ANS, lambda r: r.rouge_l)),
    ("abstention precision", "replies that abstained", _abstention(BOTH, "precision")),
    ("abstention recall", "off-topic", _abstention(BOTH, "recall")),
    ("answer page among the sources given (retrieval)", "answerable", _rate(ANS, lambda r: r.retrieved_page_right)),
    ("declined before generation", "answerable + off-topic", _rate(BOTH, lambda r: not r.asked_model)),
]
QASA_ROWS: list[Row] = [
    ("abstention recall", "QASA unanswerable", _abstention(QASA, "recall")),
    ("format: reasoning and answer non-empty", "QASA unanswerable", _rate(QASA, lambda r: r.format_ok)),
    ("citations valid", "QASA unanswerable", _rate(QASA, lambda r: r.citations_valid)),
    ("declined before generation", "QASA unanswerable", _rate(QASA, lambda r: not r.asked_model)),
]


def table(results: Sequence[ConfigResult], rows: Sequence[Row]) -> str:
    lines = [
        "| metric | over | " + " | ".join(r.label for r in results) + " |",
        "| --- | --- | " + " | ".join("---" for _ in results) + " |",
    ]
    for name, over, compute in rows:
        lines.append(f"| {name} | {over} | " + " | ".join(str(compute(r)) for r in results) + " |")
    return "\n".join(lines)


def speed_table(results: Sequence[ConfigResult]) -> str:
    lines = [
        "| | " + " | ".join(r.label for r in results) + " |",
        "| --- | " + " | ".join("---" for _ in results) + " |",
        "| replies | " + " | ".join(str(len(r.records)) for r in results) + " |",
        "| mean answer length (words) | "
        + " | ".join(f"{statistics.mean(x.words for x in r.records):.1f}" if r.records else "n/a" for r in results)
        + " |",
        "| wall seconds per answer | "
        + " | ".join(f"{r.wall_s / max(1, len(r.records)):.1f}" for r in results)
        + " |",
        "| mean seconds per question (queued + generation) | "
        + " | ".join(f"{statistics.mean(x.seconds for x in r.records):.1f}" if r.records else "n/a" for r in results)
        + " |",
        "| backend, questions in flight | " + " | ".join(f"{r.backend}, {r.parallel}" for r in results) + " |",
    ]
    machines = sorted({r.machine for r in results})
    return "\n".join(lines) + "\n\nMachine: " + "; ".join(machines)


def summarize(results: Sequence[ConfigResult], command: str, notes: Sequence[str] = ()) -> str:
    parts = [f"Command: `{command}`", *notes, "", "### Answerable and off-topic questions", table(results, MAIN_ROWS)]
    if any(r.of(*QASA) for r in results):
        parts += ["", "### QASA unanswerable sample (their papers are not in the index)", table(results, QASA_ROWS)]
    parts += ["", "### Length and speed", speed_table(results)]
    return "\n".join(parts) + "\n"
