"""`python -m training export`: merge a run's LoRA into its base model, write an F16 GGUF, quantize it to Q4_K_M,
then load the Q4_K_M in llama.cpp through the serving backend and answer one question as a check.

The GGUF conversion and the quantizer are llama.cpp's own (vendored with the installed llama-cpp-python), offline.
This process holds torch, so it never loads llama.cpp: the quantizer, the GGUF's logits and the answer check run in
child processes (`training.gguf_child`; torch and llama.cpp's CUDA build in one process abort on the GPU image).
`PAPERBOT_LLM_MODEL=OUT/model-q4_k_m.gguf` then serves the tuned model.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import logging
import time
from pathlib import Path
from typing import Any

from training.base_model import prepare_base
from training.gguf_child import run_child

log = logging.getLogger(__name__)

CHECK_QUESTION = "What does the model use to scale the dot products?"
CHECK_PASSAGE = ("We compute the dot products of the query with all keys, divide each by the square root of d_k, "
                 "and apply a softmax function to obtain the weights on the values.")


def merge(run: Path, out: Path) -> Path:
    """Base model + the run's adapter, merged, saved as an HF folder `out/merged` with the base's tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    base = prepare_base(info["base_model"], run / "base-hf")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(run / "adapter")).merge_and_unload()
    merged = out / "merged"
    model.save_pretrained(merged)
    tokenizer.save_pretrained(merged)
    return merged


def to_gguf(merged: Path, out: Path) -> tuple[Path, Path]:
    """(F16 GGUF, Q4_K_M GGUF) from an HF folder."""
    from training.tiny_models import convert_hf_to_gguf, llama_cpp_source

    f16 = convert_hf_to_gguf(merged, out / "model-f16.gguf", llama_cpp_source())
    q4 = out / "model-q4_k_m.gguf"
    run_child("quantize", str(f16), str(q4))
    return f16, q4


def vocabulary(gguf: Path) -> dict[str, Any]:
    """The tokenizer fields of a GGUF that decide how llama.cpp tokenizes: type, pre-tokenizer, size."""
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf)).fields

    def text(key: str) -> str | None:
        field = fields.get(key)
        return bytes(field.parts[field.data[0]]).decode() if field is not None else None

    tokens = fields.get("tokenizer.ggml.tokens")
    return {"model": text("tokenizer.ggml.model"), "pre": text("tokenizer.ggml.pre"),
            "tokens": len(tokens.data) if tokens is not None else 0}


def check_vocabulary(base_spec: str, f16: Path) -> None:
    """When the base was a GGUF, the converted model must tokenize as it did.

    The base's tokenizer reaches the converter through transformers' GGUF loader; where that changes it (another
    transformers version), llama.cpp aborts at the first tokenization, far from the cause.
    """
    from training.base_model import is_gguf

    if not is_gguf(base_spec):
        return
    base, ours = vocabulary(Path(base_spec)), vocabulary(f16)
    if base != ours:
        import tokenizers
        import transformers

        raise RuntimeError(
            f"{f16.name} would tokenize differently from the base {Path(base_spec).name}: {ours} instead of {base} "
            f"(transformers {transformers.__version__}, tokenizers {tokenizers.__version__} rebuilt the tokenizer "
            "from the GGUF); use the base model's HF folder or hub id as --base-model instead of its GGUF"
        )


async def answer_check(gguf: Path, n_gpu_layers: int = 0) -> dict[str, Any]:
    """One question through the serving path's backend and parser: proves the file loads and generates."""
    from rag_engine.llm.base import GenerationRequest
    from rag_engine.llm.factory import open_backend
    from rag_engine.prompting import Passage, build_prompt, parse_answer
    from rag_engine.settings import EngineSettings

    settings = EngineSettings(_env_file=None, llm_model=str(gguf), n_gpu_layers=n_gpu_layers, batched=False,  # type: ignore[call-arg]
                        n_ctx=2048, flash_attn=False)
    prompt = build_prompt(CHECK_QUESTION, [Passage("Attention Is All You Need", CHECK_PASSAGE, 4, 4)])
    backend = await open_backend(settings)
    try:
        started = time.perf_counter()
        text = await backend.generate(GenerationRequest(messages=prompt.messages, max_tokens=96, temperature=0.0))
        seconds = time.perf_counter() - started
    finally:
        await backend.close()
    answer = parse_answer(text, prompt.sources)
    return {"question": CHECK_QUESTION, "reply": text, "answer": answer.answer, "abstained": answer.abstained,
            "seconds": round(seconds, 2)}


def logits_parity(hf_dir: Path, gguf: Path, text: str) -> dict[str, float]:
    """transformers (fp32) against llama.cpp on the same tokens: the largest logit difference and argmax agreement.

    The proof that conversion is right: a converted model whose weights or layout were wrong disagrees by far more
    than the F16 rounding of the weights. llama.cpp's side runs in a child process (`training.gguf_child logits`).
    """
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    ids = tokenizer.encode(text, add_special_tokens=False)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        ours = model(torch.tensor([ids])).logits[0].float().numpy()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "ids.json").write_text(json.dumps(ids), encoding="utf-8")
        done = run_child("logits", str(gguf), str(Path(tmp) / "ids.json"), str(Path(tmp) / "logits.npy"))
        theirs = np.load(done["logits"])
    return {
        "tokens": len(ids),
        "max_abs_diff": float(np.abs(ours - theirs).max()),
        "logit_std": float(ours.std()),
        "argmax_agree": float((ours.argmax(-1) == theirs.argmax(-1)).mean()),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="a run folder from `sft` or `grpo` (adapter/, run.json)")
    parser.add_argument("--out", type=Path, required=True,
                        help="where merged/, model-f16.gguf and model-q4_k_m.gguf go")
    parser.add_argument("--n-gpu-layers", type=int, default=0, help="layers on the GPU for the answer check (default 0; the logit parity always runs on the CPU)")
    parser.add_argument("--keep-merged", action="store_true", help="keep the merged HF folder (default: removed)")


def run(args: argparse.Namespace) -> int:
    import shutil

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    run_dir = Path(args.run)
    merged = merge(run_dir, out)
    f16, q4 = to_gguf(merged, out)
    check_vocabulary(json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["base_model"], f16)
    parity = logits_parity(merged, f16, "Question: what is attention?\nAnswer: a weighted sum of values.")
    check = run_child("answer", str(q4), "--n-gpu-layers", str(args.n_gpu_layers))
    if not args.keep_merged:
        shutil.rmtree(merged)
    report = {"f16": str(f16), "q4_k_m": str(q4), "q4_k_m_bytes": q4.stat().st_size, "parity_f16": parity,
              "check": check, "seconds": round(time.perf_counter() - started, 1)}
    (out / "export.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0
