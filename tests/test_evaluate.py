"""The evaluation set and split hold together, and the harness runs end to end on a real model (SmolLM2, CPU)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import QASA_DIR, REAL_PDFS
from training.__main__ import main
from training.evaluate_cli import subsample
from training.eval import QUESTIONS, load_questions, load_split, make_split, qasa_unanswerable
from training.metrics import key_fact_present


def test_the_question_set_is_complete_and_consistent() -> None:
    questions = load_questions()
    split = load_split()
    kinds = Counter(q.kind for q in questions)
    assert kinds["answerable"] >= 40 and kinds["off_topic"] >= 15
    assert len({q.id for q in questions}) == len(questions)
    answerable = [q for q in questions if q.kind == "answerable"]
    assert {q.paper for q in answerable} == set(split["papers"]["evaluation"])
    for q in answerable:
        assert q.answer_pages and min(q.answer_pages) >= 1, q.id
        assert key_fact_present(q.reference, q.key_facts), f"{q.id}: the reference lacks its own key fact"
    for q in questions:
        if q.kind == "off_topic":
            assert q.paper is None and not q.answer_pages and not q.key_facts


def test_the_split_is_disjoint_and_reproducible() -> None:
    split = load_split()
    papers, qasa = split["papers"], split["qasa_unanswerable"]
    assert not set(papers["evaluation"]) & set(papers["training"])
    assert len(papers["evaluation"]) == len(papers["training"]) == 4
    assert not set(qasa["evaluation_paper_ids"]) & set(qasa["training_paper_ids"])
    if not (QASA_DIR / qasa["file"]).exists():
        pytest.skip("the shared QASA data is not here")
    assert {p.name for p in REAL_PDFS.glob("*.pdf")} == set(papers["evaluation"]) | set(papers["training"])
    assert make_split(REAL_PDFS, QASA_DIR) == split  # the committed file is what the rule gives
    records = json.loads((QASA_DIR / qasa["file"]).read_text(encoding="utf-8"))
    assert all(records[k]["paper_id"] in qasa["evaluation_paper_ids"] for k in qasa["evaluation_sample_keys"])
    assert len(qasa_unanswerable(QASA_DIR, split)) == 30


def test_subsample_takes_every_group_in_turn() -> None:
    questions = load_questions()
    picked = subsample(questions, 10)
    assert len(picked) == 10
    assert Counter(q.paper or q.kind for q in picked) == {
        "1706.03762.pdf": 2, "distillation.pdf": 2, "ponder_net.pdf": 2, "2203.14465.pdf": 2, "off_topic": 2
    }
    assert subsample(questions, None) == questions


@pytest.mark.slow
def test_harness_end_to_end_on_smollm2(
    tmp_path: Path, tiny_models: Path, smollm2_gguf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    pdfs = tmp_path / "pdfs"
    pdfs.mkdir()
    (pdfs / "ponder_net.pdf").symlink_to(REAL_PDFS / "ponder_net.pdf")
    chosen = {"pond-01", "pond-05", "off-01"}
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        "".join(line + "\n" for line in QUESTIONS.read_text().splitlines() if json.loads(line)["id"] in chosen)
    )
    for name, value in {"DEVICE": "cpu", "N_GPU_LAYERS": "0", "N_CTX": "2048", "PARALLEL": "2",
                        "MAX_NEW_TOKENS": "48", "FLASH_ATTN": "false"}.items():
        monkeypatch.setenv(f"PAPERBOT_{name}", value)
    out = tmp_path / "out"
    argv = ["evaluate", "--pdfs", str(pdfs), "--questions", str(questions), "--gguf", str(smollm2_gguf),
            "--encoder", str(tiny_models / "colbert"), "--qasa-limit", "1" if QASA_DIR.exists() else "0",
            "--out", str(out)]
    assert main(argv) == 0

    result = json.loads((out / "results.json").read_text())
    (config,) = result["configs"]
    records = {r["id"]: r for r in config["records"]}
    assert chosen <= set(records)
    for record in records.values():
        if record["asked_model"]:
            assert record["raw"].strip() and record["sources"]  # the reply as written, the sources given
            assert [s["n"] for s in record["sources"]] == list(range(1, len(record["sources"]) + 1))
        assert record["answer"].strip()
    assert records["pond-05"]["retrieved_page_right"] is not None and records["off-01"]["key_fact"] is None
    # The table shows what the records say, over named sets with their counts.
    markdown = (out / "results.md").read_text()
    assert "SmolLM2-135M-Instruct.Q4_1" in markdown
    answerable = [r for r in records.values() if r["kind"] == "answerable"]
    key_fact = sum(r["key_fact"] for r in answerable) / len(answerable)
    assert f"| key fact in answer | answerable | {key_fact:.2f} ({len(answerable)}) |" in markdown
    assert "| abstention recall | off-topic |" in markdown and "Machine:" in markdown
    # The same tables again from the records written as they came (what a cut run leaves).
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert f"| key fact in answer | answerable | {key_fact:.2f} ({len(answerable)}) |" in capsys.readouterr().out


def test_two_exports_with_the_same_file_name_get_their_folders_as_labels() -> None:
    from training.evaluate import model_configs

    configs = model_configs([Path("m/base.gguf"), Path("sft/model.gguf"), Path("grpo/model.gguf")], "both")
    labels = [c.label for c in configs]
    assert len(set(labels)) == 6
    assert labels[:2] == ["base, grammar off", "base, grammar on"]
    assert "sft/model, grammar off" in labels and "grpo/model, grammar on" in labels
