"""The evaluation set (questions.jsonl) and the fixed evaluation/training split (split.json): see README.md here.

`python -m training.eval.split` rewrites split.json from the shared data; the committed file is the split.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

HERE = Path(__file__).resolve().parent
QUESTIONS = HERE / "questions.jsonl"
SPLIT = HERE / "split.json"
QASA_UNANSWERABLE_FILE = "testset_unanswerable_244_v1.1.json"
QASA_SAMPLE_SIZE = 30
SEED = 0

Kind = Literal["answerable", "off_topic", "qasa_unanswerable"]


@dataclass(frozen=True, slots=True)
class Question:
    """One evaluation question. Off-topic and QASA questions have no paper, pages, reference or key facts."""

    id: str
    kind: Kind
    question: str
    paper: str | None = None
    answer_pages: tuple[int, ...] = ()
    reference: str = ""
    key_facts: tuple[str, ...] = ()

    @property
    def should_abstain(self) -> bool:
        return self.kind != "answerable"


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    """The JSONL question file (one object a line, fields as `Question`)."""
    questions = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            questions.append(
                Question(
                    id=row["id"],
                    kind=row["kind"],
                    question=row["question"],
                    paper=row.get("paper"),
                    answer_pages=tuple(row.get("answer_pages", ())),
                    reference=row.get("reference", ""),
                    key_facts=tuple(row.get("key_facts", ())),
                )
            )
    return questions


def load_split(path: Path = SPLIT) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _qasa_records(qasa_dir: Path) -> dict[str, dict]:
    return json.loads((qasa_dir / QASA_UNANSWERABLE_FILE).read_text(encoding="utf-8"))


def qasa_unanswerable(qasa_dir: Path, split: dict | None = None) -> list[Question]:
    """The committed sample of QASA unanswerable questions from the evaluation half."""
    split = split or load_split()
    records = _qasa_records(qasa_dir)
    return [
        Question(id=f"qasa-{key}", kind="qasa_unanswerable", question=records[key]["question"].strip())
        for key in split["qasa_unanswerable"]["evaluation_sample_keys"]
    ]


def make_split(real_pdfs: Path, qasa_dir: Path) -> dict:
    """Papers by hand (see README); QASA papers into halves by a hash of `paper_id`, then a seeded sample of 30."""
    evaluation = ["1706.03762.pdf", "2203.14465.pdf", "distillation.pdf", "ponder_net.pdf"]
    training = sorted(p.name for p in real_pdfs.glob("*.pdf") if p.name not in evaluation)
    records = _qasa_records(qasa_dir)
    papers = sorted({r["paper_id"] for r in records.values()}, key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    eval_papers = sorted(papers[: len(papers) // 2])
    train_papers = sorted(papers[len(papers) // 2 :])
    eval_keys = sorted((k for k, r in records.items() if r["paper_id"] in eval_papers), key=int)
    sample = sorted(random.Random(SEED).sample(eval_keys, QASA_SAMPLE_SIZE), key=int)
    return {
        "papers": {"evaluation": evaluation, "training": training},
        "qasa_unanswerable": {
            "file": QASA_UNANSWERABLE_FILE,
            "evaluation_paper_ids": eval_papers,
            "training_paper_ids": train_papers,
            "evaluation_sample_keys": sample,
        },
    }
