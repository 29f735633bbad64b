"""SFT, GRPO and export on the tiny Qwen2: the trainers change the adapter, the export loads in llama.cpp."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import numpy as np
from safetensors.numpy import load_file, save_file

from rag_engine.prompting import Passage, PromptBudget
from training import curves, rewards
from training.__main__ import main as training_main
from training.prepare import write_jsonl
from training.records import from_generated

pytestmark = pytest.mark.slow

# Short prompts (the worked examples alone take ~250 tokens): the tiny model has Qwen's 152k vocabulary, so long sequences cost gigabytes of logits on a CPU.
BUDGET = PromptBudget(max_sources=2, max_source_tokens=40)


def _data(folder: Path) -> Path:
    rng = random.Random(0)
    facts = [("How many heads?", "It uses eight heads.", "The model uses eight heads in each layer."),
             ("What is the learning rate?", "It is 0.001.", "We train with a learning rate of 0.001."),
             ("Which optimizer is used?", "Adam is used.", "Adam is the optimizer for all experiments."),
             ("How long is training?", "Three days.", "Training takes three days on eight GPUs.")]
    records = [
        from_generated(f"r{i}", "p.pdf", q, "Source says so.", a, Passage("Paper", text),
                       [Passage("Paper", "Unrelated text about data sets and tokenizers.")], budget=BUDGET, rng=rng)
        for i, (q, a, text) in enumerate(facts)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "train.jsonl", records)
    return folder


def _adapter(run: Path) -> dict:
    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Path:
    root = tmp_path_factory.mktemp("sft")
    data = _data(root / "data")
    run = root / "run"
    assert training_main(["sft", "--data", str(data), "--out", str(run), "--base-model", str(tiny_models / "qwen2"),
                          "--steps", "3", "--batch-size", "2", "--lora-rank", "8", "--max-length", "768",
                          "--lr", "1e-3"]) == 0
    return run


def test_sft_trains_the_adapter_and_logs_each_step(sft_run: Path) -> None:
    weights = _adapter(sft_run)
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and any(abs(v).max() > 0 for v in lora_b)  # PEFT starts lora_B at zero
    rows = (sft_run / "train_log.csv").read_text().splitlines()
    assert rows[0].startswith("step") and len(rows) == 1 + 3
    info = json.loads((sft_run / "run.json").read_text())
    assert info["steps"] == 3 and info["kind"] == "sft" and (sft_run / "curves.png").stat().st_size > 0
    assert info["versions"]["transformers"] and info["versions"]["trl"]  # what the GPU image had, for export


def test_grpo_continues_the_sft_adapter_and_changes_it(
    sft_run: Path, tmp_path: Path, tiny_models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The random model's 8-token completions all score alike on the real rewards (no separator, no citation), and
    # GRPO learns nothing from a group without spread; a reward on their length in characters has spread.
    monkeypatch.setitem(rewards.REWARDS, "chars", lambda completion, record: len(completion) / 100)
    run = tmp_path / "grpo"
    assert training_main([
        "grpo", "--data", str(sft_run.parent / "data"), "--out", str(run), "--base-model", str(tiny_models / "qwen2"),
        "--init-adapter", str(sft_run / "adapter"), "--steps", "2", "--batch-size", "4", "--per-device-batch", "4",
        "--num-generations", "4", "--max-completion-length", "8", "--lr", "1e-2", "--temperature", "1.0",
        "--rewards", "format,abstention,chars",
    ]) == 0
    before, after = _adapter(sft_run), _adapter(run)
    assert before.keys() == after.keys()
    assert any(abs(before[k] - after[k]).max() > 0 for k in before)
    header = (run / "train_log.csv").read_text().splitlines()[0]
    assert "rewards/format/mean" in header and "rewards/abstention/mean" in header


def test_grpo_samples_through_non_finite_logits(sft_run: Path, tmp_path: Path, tiny_models: Path) -> None:
    # An infinite LoRA weight makes every logit NaN: sampling then raises (a device-side assert on CUDA, which killed
    # a real run at step 29) unless generation drops invalid values.
    broken = tmp_path / "broken-adapter"
    broken.mkdir()
    for f in (sft_run / "adapter").iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = _adapter(sft_run)
    name = next(k for k in weights if "lora_B" in k)
    weights[name] = np.full_like(weights[name], np.inf)
    save_file(weights, str(broken / "adapter_model.safetensors"))
    run = tmp_path / "grpo"
    assert training_main([
        "grpo", "--data", str(sft_run.parent / "data"), "--out", str(run), "--base-model", str(tiny_models / "qwen2"),
        "--init-adapter", str(broken), "--steps", "1", "--batch-size", "4", "--per-device-batch", "4",
        "--num-generations", "4", "--max-completion-length", "4", "--temperature", "1.0", "--rewards", "format",
    ]) == 0
    assert len((run / "train_log.csv").read_text().splitlines()) == 1 + 1


def test_export_merges_converts_quantizes_and_answers(
    sft_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Torch and llama.cpp's CUDA build in one process abort on the GPU image: every llama.cpp step runs in a child.
    # A None entry makes `import llama_cpp` fail here, so any use of it in this (torch-holding) process fails the test.
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    out = tmp_path / "export"
    assert training_main(["export", "--run", str(sft_run), "--out", str(out)]) == 0
    report = json.loads((out / "export.json").read_text())
    assert (out / "model-q4_k_m.gguf").stat().st_size < 0.6 * (out / "model-f16.gguf").stat().st_size
    parity = report["parity_f16"]
    # F16 rounding of the merged weights: a wrong conversion disagrees by the logits' own scale (std ~1).
    assert parity["max_abs_diff"] < 0.05 and parity["argmax_agree"] >= 0.9
    assert report["check"]["reply"]  # the Q4_K_M loads in llama.cpp and generates through the serving backend


def test_max_seconds_stops_training_after_the_step_that_crosses_it(sft_run: Path, tmp_path: Path,
                                                                    tiny_models: Path) -> None:
    run = tmp_path / "cut"
    assert training_main(["sft", "--data", str(sft_run.parent / "data"), "--out", str(run), "--base-model",
                          str(tiny_models / "qwen2"), "--steps", "3", "--batch-size", "2", "--lora-rank", "8",
                          "--max-length", "768", "--max-seconds", "0"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["steps"] == 1 and info["stopped_by_max_seconds"]
    assert len((run / "train_log.csv").read_text().splitlines()) == 1 + 1  # the last step is still logged


def test_sft_says_which_limit_to_raise_when_no_record_fits(sft_run: Path, tmp_path: Path, tiny_models: Path) -> None:
    with pytest.raises(SystemExit, match=r"longer than --max-length 64 tokens .*raise --max-length"):
        training_main(["sft", "--data", str(sft_run.parent / "data"), "--out", str(tmp_path / "short"),
                       "--base-model", str(tiny_models / "qwen2"), "--steps", "1", "--batch-size", "2",
                       "--lora-rank", "8", "--max-length", "64"])


def test_thirds_compares_the_first_and_last_third_of_each_column() -> None:
    rows = [{"step": float(s), "rewards/format/mean": float(s), **({"loss": 2.0} if s < 4 else {})} for s in range(1, 7)]
    moved = curves.thirds(rows, curves.curve_columns(rows))
    assert moved == {"rewards/format/mean": (1.5, 5.5), "loss": (2.0, 2.0)}
