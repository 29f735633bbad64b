"""training/: QASA reading, record building, the split, generated-record filtering and the rewards."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from rag_engine.llm.base import ChatMessage
from rag_engine.llm.factory import open_backend
from rag_engine.prompting import ABSTAIN_ANSWER, Passage, PromptBudget, build_prompt, format_target
from bot.settings import Settings
from tests.conftest import QASA_DIR, REAL_PDFS, make_settings
from training import qasa, rewards
from training.generate import QUESTION_SYSTEM, Generated, backend_generator, generate_pair, supported
from training.prepare import gguf_token_counter, paper_passages, pdf_records, prepare, read_jsonl
from training.records import from_generated, is_paragraph

UNANSWERABLE = QASA_DIR / "testset_unanswerable_244_v1.1.json"
ANSWERABLE = QASA_DIR / "answerable_sample_1.json"


def _split(tmp_path: Path, qasa_eval: list[str]) -> Path:
    papers = sorted(p.name for p in REAL_PDFS.glob("*.pdf"))
    path = tmp_path / "split.json"
    path.write_text(json.dumps({
        "papers": {"evaluation": papers[:4], "training": papers[4:]},
        "qasa_unanswerable": {"evaluation_paper_ids": qasa_eval, "training_paper_ids": [], "evaluation_sample_keys": []},
    }))
    return path


def test_the_committed_split_keeps_evaluation_papers_out_of_training() -> None:
    from training.eval import SPLIT
    from training.split import load_split

    split = load_split(SPLIT)
    assert len(split.eval_pdfs) == 4 and len(split.train_pdfs) == 4
    assert split.pdf_side("1706.03762.pdf") == "eval" and split.pdf_side("unknown.pdf") is None
    assert all(split.qasa_side(p, answerable=False) == "eval" for p in split.qasa_eval_papers)


def test_qasa_files_read_as_released() -> None:
    unanswerable = qasa.load(UNANSWERABLE)
    answerable = qasa.load(ANSWERABLE)
    assert len(unanswerable) == 244 and not any(r.answerable for r in unanswerable)
    assert len(answerable) == 1 and answerable[0].answerable and answerable[0].evidence
    # 11 spellings in the release, three types after normalising
    assert {r.question_type for r in unanswerable} == {"deep", "shallow", "testing"}
    # the label comes from the file: 5 unanswerable records still hold an evidential paragraph
    assert sum(bool(r.evidence) for r in unanswerable) == 5


async def test_prepare_honours_the_split_and_teaches_abstention_with_real_paragraphs(tmp_path: Path) -> None:
    records = qasa.load(UNANSWERABLE)
    papers = sorted({r.paper_id for r in records})
    held_out = papers[: len(papers) // 2]
    out = tmp_path / "data"
    manifest = await prepare([UNANSWERABLE, ANSWERABLE], None, _split(tmp_path, held_out), out,
                             settings=Settings(_env_file=None))
    train, evaluation = read_jsonl(out / "train.jsonl"), read_jsonl(out / "eval.jsonl")
    assert train and evaluation
    assert not {r.paper for r in train} & set(held_out)
    assert {r.paper for r in evaluation} <= set(held_out)
    abstain = [r for r in train if not r.answerable]
    assert abstain and manifest["train_abstain"] == len(abstain)
    for r in abstain:
        assert r.sources and all(is_paragraph(s["text"]) for s in r.sources)  # never "no sources"
        assert r.target.endswith(f"#####\n{ABSTAIN_ANSWER}")
    assert "trl" in manifest["versions"] and "transformers" in manifest["versions"]


async def test_records_carry_the_serving_prompt_for_their_passages(tmp_path: Path, tiny_models: Path) -> None:
    """Same passages and question → the same messages the serving path builds, counted in the model's tokens."""
    count = gguf_token_counter(tiny_models / "qwen2.gguf")
    out = tmp_path / "data"
    await prepare([ANSWERABLE], None, _split(tmp_path, []), out, settings=Settings(_env_file=None),
                  count_tokens=count)
    (record,) = read_jsonl(out / "train.jsonl")
    settings = make_settings(tmp_path, tiny_models)
    backend = await open_backend(settings.model_copy(update={"batched": False}))
    try:
        passages = [Passage(s["title"], s["text"], s["page_start"], s["page_end"]) for s in record.sources]
        served = build_prompt(record.question, passages, budget=PromptBudget.from_settings(Settings(_env_file=None)),
                              count_tokens=backend.count_tokens)
    finally:
        await backend.close()
    assert record.prompt == [{"role": m.role, "content": m.content} for m in served.messages]
    # the answer cites the evidence paragraphs by the numbers the prompt gives them
    assert record.gold_sources and all(f"[{n}" in record.target.split("#####")[1] or f", {n}" in record.target
                                       for n in record.gold_sources)


def test_generated_pairs_are_kept_only_when_the_passage_supports_them() -> None:
    passage = "We train with eight parallel attention heads. Each head has a dimension of 64 in the base model."
    good = Generated("How many attention heads does the model use?", "It uses eight attention heads.",
                     "We train with eight parallel attention heads.")
    invented_evidence = Generated("How many heads?", "It uses eight heads.", "The model uses twelve heads in total.")
    unsupported_answer = Generated("How many heads does it use?", "Sixteen heads with dropout and warmup schedules.",
                                   "We train with eight parallel attention heads.")
    assert supported(good, passage)
    assert not supported(invented_evidence, passage)
    assert not supported(unsupported_answer, passage)


async def test_pdf_records_from_a_real_model_path_drop_what_is_unsupported(tmp_path: Path, tiny_models: Path) -> None:
    """The tiny random model writes noise through the real backend: nothing is kept, everything is counted."""
    papers = [paper_passages(REAL_PDFS / name, Settings(_env_file=None)) for name in ("distillation.pdf",)]
    settings = make_settings(tmp_path, tiny_models).model_copy(update={"batched": False})
    backend = await open_backend(settings)
    try:
        records, counts = await pdf_records(papers, backend_generator(backend, max_tokens=24), 2,
                                            PromptBudget(), random.Random(0))
    finally:
        await backend.close()
    assert records == []
    assert counts["generated, dropped as unsupported"] == 6  # 2 kept at most: 3 passages asked each


async def test_pdf_records_number_the_gold_passage_and_add_mismatched_abstentions() -> None:
    settings = Settings(_env_file=None)
    papers = [paper_passages(REAL_PDFS / name, settings) for name in ("distillation.pdf", "ponder_net.pdf")]

    async def generator(messages: list[ChatMessage]) -> str:
        # A faithful generator: asks what the passage states first, answers with that sentence.
        if messages[0].content == QUESTION_SYSTEM:
            return "Question: What does the passage state first?"
        passage = messages[-1].content.split("Passage:\n", 1)[1].split("\n\nQuestion:")[0]
        return " ".join(passage.split()).split(". ")[0] + "."

    records, counts = await pdf_records(papers, generator, 2, PromptBudget(), random.Random(0))
    generated = [r for r in records if r.kind == "pdf-generated"]
    mismatched = [r for r in records if r.kind == "pdf-mismatched"]
    assert len(generated) == 4 and len(mismatched) == 4
    for r in generated:
        (n,) = r.gold_sources
        evidence = r.target.split('"')[1]
        assert evidence[:40] in " ".join(r.sources[n - 1]["text"].split())
    titles = {p.name: p.title for p in papers}
    for r in mismatched:
        assert not r.answerable and r.target.endswith(ABSTAIN_ANSWER)
        assert {s["title"] for s in r.sources} == set(titles.values()) - {titles[r.paper]}  # the other paper's


# --- rewards on hand-written completions ------------------------------------------------------------------------------
GOOD = format_target("Source 2 gives the head count.", "The model uses eight attention heads [2].")
RECORD = {"source_texts": ["Unrelated text on optimisers.", "We use eight parallel attention heads."],
          "gold_sources": [2], "answerable": True, "reference_answer": "Eight attention heads."}


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (GOOD, {"format": 1.0, "citation": 1.0, "abstention": 1.0, "length": 0.0}),
        ("The model uses eight heads [2].", {"format": 0.0, "citation": 1.0}),  # no separator: all answer
        (format_target("r", "Eight heads [1]."), {"citation": 0.25}),  # valid, not the right source
        (format_target("r", "Eight heads [5]."), {"citation": -1.0}),  # a source that was not given
        (format_target("r", "Eight heads."), {"citation": 0.0}),  # cites nothing
        (format_target("r", ABSTAIN_ANSWER), {"abstention": -1.0, "grounding": 0.0}),  # false abstention
        (format_target("r", "word " * 300), {"length": -1.0}),
    ],
)
def test_rewards_score_hand_written_completions(completion: str, expected: dict[str, float]) -> None:
    for name, value in expected.items():
        assert rewards.REWARDS[name](completion, RECORD) == pytest.approx(value), name


def test_rewards_for_an_unanswerable_record() -> None:
    record = {**RECORD, "answerable": False, "gold_sources": [], "reference_answer": ABSTAIN_ANSWER}
    declined = format_target("None of the sources says.", "The sources don't mention it.")
    answered = format_target("r", "It is eight [2].")
    assert rewards.REWARDS["abstention"](declined, record) == 1.0
    assert rewards.REWARDS["abstention"](answered, record) == -1.0
    assert rewards.REWARDS["citation"](declined, record) == 1.0
    assert rewards.REWARDS["citation"](answered, record) == 0.0


def test_similarity_and_grounding_rise_with_a_better_answer() -> None:
    worse = format_target("r", "It relies on recurrent layers [2].")
    assert rewards.REWARDS["similarity"](GOOD, RECORD) > rewards.REWARDS["similarity"](worse, RECORD)
    assert rewards.REWARDS["grounding"](GOOD, RECORD) > rewards.REWARDS["grounding"](worse, RECORD)


def test_trl_adapter_reads_conversational_completions_and_columns() -> None:
    reward = rewards.trl_reward("format", rewards.REWARDS["format"])
    completions = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": "no separator"}]]
    assert reward(completions, answerable=[True, True], prompts=[[], []]) == [1.0, 0.0]


async def test_a_generator_that_writes_no_question_or_an_unsupported_answer_is_dropped() -> None:
    passage = "We train with eight parallel attention heads. Each head has a dimension of 64 in the base model."

    def scripted(question: str, answer: str):
        async def generate(messages: list[ChatMessage]) -> str:
            return question if messages[0].content == QUESTION_SYSTEM else answer
        return generate

    kept = await generate_pair(scripted("How many heads are used?", "Answer: eight parallel attention heads."), "T",
                               passage)
    assert kept is not None and kept.evidence == "We train with eight parallel attention heads."
    assert await generate_pair(scripted("The passage is about heads.", "Eight."), "T", passage) is None  # no question
    assert await generate_pair(scripted("How many heads?", "Sixteen recurrent layers with dropout."), "T",
                               passage) is None


def test_generated_record_target_cites_its_passage() -> None:
    gold = Passage("Paper", "We use eight heads in every layer of the model.", 3, 3)
    others = [Passage("Paper", f"Other passage number {i} about something else entirely.", i, i) for i in range(4)]
    record = from_generated("x", "paper.pdf", "How many heads?", "It says so.", "Eight heads.", gold, others,
                            budget=PromptBudget(), rng=random.Random(3))
    (n,) = record.gold_sources
    assert record.sources[n - 1]["text"] == gold.text
    assert record.target.endswith(f"Eight heads [{n}].")


def test_abstention_records_are_capped_per_answerable_record() -> None:
    from training.prepare import cap_abstentions

    gold = Passage("Paper", "We use eight heads in every layer of the model.", 3, 3)
    answerable = [from_generated(f"a{i}", "p.pdf", "How many heads?", "r", "Eight.", gold, [], budget=PromptBudget(),
                                 rng=random.Random(i)) for i in range(3)]
    unanswerable = [r.__class__(**{**r.to_json(), "id": f"u{i}", "answerable": False}) for i, r in
                    enumerate(answerable * 4)]
    kept, dropped = cap_abstentions(answerable + unanswerable, 1.0, random.Random(0))
    assert sum(not r.answerable for r in kept) == 3 and dropped == 9
    assert cap_abstentions(answerable + unanswerable, None, random.Random(0)) == (answerable + unanswerable, 0)
