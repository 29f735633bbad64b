"""QASA's release files (LG AI Research, MIT licence) read as they are.

A release file is one JSON object whose keys are "0", "1", …; each value is a record with the paper
(`paper_id`, `title`, `arxiv_id`), the `question`, its `question_type` (11 spellings of three types), the
`evidential_info` (paragraphs of the paper with the rationale for each), the written answer `composition` and the
`question_trigger_sentence` (a sentence of the paper near which the question arose).

Whether a record is answerable comes from the file it is in, not from its fields: 5 of the 244 unanswerable
records still hold an evidential paragraph, and 22 have an empty composition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

QUESTION_TYPES = ("deep", "shallow", "testing")


@dataclass(frozen=True, slots=True)
class Evidence:
    context: str
    rationale: str


@dataclass(frozen=True, slots=True)
class QasaRecord:
    key: str
    paper_id: str
    title: str
    arxiv_id: str
    question: str
    question_type: str
    evidence: tuple[Evidence, ...]
    composition: str
    trigger_sentence: str
    answerable: bool

    @property
    def id(self) -> str:
        """Stable across runs: the file's split and the record's key."""
        return f"qasa-{'a' if self.answerable else 'u'}-{self.key}"


def normalise_type(raw: str) -> str:
    """One of QUESTION_TYPES from any of the release's spellings.

    >>> normalise_type("Deep/complex Question"), normalise_type("shallow question "), normalise_type("Testing")
    ('deep', 'shallow', 'testing')
    """
    word = raw.strip().lower().split("/")[0].split()[0] if raw.strip() else ""
    return word if word in QUESTION_TYPES else "other"


def is_unanswerable_file(path: Path) -> bool:
    """The release names its unanswerable split `testset_unanswerable_…`; everything else is answerable."""
    return "unanswerable" in path.name.lower()


def load(path: Path, *, answerable: bool | None = None) -> list[QasaRecord]:
    """Every record of one release file; `answerable` defaults to what the file name says."""
    if answerable is None:
        answerable = not is_unanswerable_file(path)
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected QASA's release format (one JSON object keyed by record number)")
    records = []
    for key, raw in data.items():
        evidence = tuple(
            Evidence(str(e.get("context") or "").strip(), str(e.get("rationale") or "").strip())
            for e in raw.get("evidential_info") or []
            if str(e.get("context") or "").strip()
        )
        records.append(
            QasaRecord(
                key=str(key),
                paper_id=str(raw.get("paper_id", "")),
                title=str(raw.get("title", "")).strip(),
                arxiv_id=str(raw.get("arxiv_id") or "").strip(),
                question=str(raw.get("question", "")).strip(),
                question_type=normalise_type(str(raw.get("question_type", ""))),
                evidence=evidence,
                composition=str(raw.get("composition") or "").strip(),
                trigger_sentence=str(raw.get("question_trigger_sentence") or "").strip(),
                answerable=answerable,
            )
        )
    return [r for r in records if r.question]
