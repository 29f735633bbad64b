"""The committed evaluation split (training/eval/split.json) seen from training: which side each paper is on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Side = Literal["train", "eval"]


@dataclass(frozen=True, slots=True)
class Split:
    eval_pdfs: frozenset[str]
    train_pdfs: frozenset[str]
    qasa_eval_papers: frozenset[str]
    qasa_train_papers: frozenset[str]

    def pdf_side(self, filename: str) -> Side | None:
        """Which side a paper file is on; None for a paper the split does not name (used by neither)."""
        if filename in self.eval_pdfs:
            return "eval"
        if filename in self.train_pdfs:
            return "train"
        return None

    def qasa_side(self, paper_id: str, answerable: bool) -> Side:
        """QASA papers the split names as evaluation stay out of training; unnamed ones are training data.

        The split divides the unanswerable records by paper; answerable records (the release's other file) are on
        the training side unless their paper is named as evaluation.
        """
        return "eval" if paper_id in self.qasa_eval_papers else "train"


def load_split(path: Path) -> Split:
    """The split file written by `python -m training.eval.split` (training/eval/README.md describes it)."""
    from training.eval import load_split as load_split_file

    data = load_split_file(Path(path))
    papers, qasa = data["papers"], data["qasa_unanswerable"]
    split = Split(
        eval_pdfs=frozenset(papers["evaluation"]),
        train_pdfs=frozenset(papers["training"]),
        qasa_eval_papers=frozenset(qasa["evaluation_paper_ids"]),
        qasa_train_papers=frozenset(qasa["training_paper_ids"]),
    )
    if split.eval_pdfs & split.train_pdfs or split.qasa_eval_papers & split.qasa_train_papers:
        raise ValueError(f"{path}: a paper is on both sides of the split")
    return split
