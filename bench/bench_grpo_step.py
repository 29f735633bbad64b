"""Time per GRPO step and peak memory for a Qwen2.5-3B-shaped model with `python -m training grpo`'s defaults.

Speed and memory do not depend on weight values, so the model is random (bf16, Qwen2.5-3B-Instruct's config) with
the real Qwen2 tokenizer and chat template rebuilt from llama.cpp's vocabulary file; the records are those of
`python -m training prepare`. Each backend (transformers + PEFT, and Unsloth when it imports) runs
`python -m training grpo` in its own process for a few steps; the table reads each run's run.json. A run that fails
out of GPU memory is retried with half the per-device batch (more gradient accumulation, same 64 completions).

    python bench/bench_grpo_step.py --llama-src vendor/llama.cpp --data data/ --work /tmp/grpo3b --steps 3

A random model never emits its end-of-turn token, so every completion runs to the completion length: the slowest
case for generation.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import describe  # noqa: E402
from bench.make_qwen3b_gguf import PRESETS  # noqa: E402


def build_model(folder: Path, llama_src: Path, preset: str) -> Path:
    """A random-weight Qwen2 HF folder of the preset's shape with the real tokenizer (reused when present)."""
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from training.tiny_models import qwen2_tokenizer

    shape = PRESETS[preset]
    folder.mkdir(parents=True, exist_ok=True)
    qwen2_tokenizer(llama_src).save_pretrained(folder)
    config = Qwen2Config(
        vocab_size=151936, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads, intermediate_size=shape.intermediate,
        max_position_embeddings=shape.context, rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
        bos_token_id=151643, eos_token_id=151645, pad_token_id=151643, dtype="bfloat16",
    )
    # initialised on the GPU when there is one: 3B normal draws take minutes on a CPU
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    return folder


def run_steps(model: Path, data: Path, out: Path, *, steps: int, per_device: int, unsloth: str,
              extra: list[str]) -> tuple[dict | None, str]:
    """One `python -m training grpo` process; (its run.json or None, the tail of its output)."""
    command = [sys.executable, "-m", "training", "grpo", "--data", str(data), "--out", str(out), "--base-model",
               str(model), "--steps", str(steps), "--per-device-batch", str(per_device), "--unsloth", unsloth, *extra]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-6:])
    print(f"  rc {done.returncode} after {time.perf_counter() - started:.0f} s", flush=True)
    if done.returncode != 0 or not (out / "run.json").exists():
        return None, tail
    return json.loads((out / "run.json").read_text(encoding="utf-8")), tail


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-src", type=Path, required=True,
                        help="a llama.cpp source tree (its models/ggml-vocab-qwen2.gguf and gguf-py)")
    parser.add_argument("--data", type=Path, required=True, help="folder from `python -m training prepare`")
    parser.add_argument("--work", type=Path, required=True, help="where the model and the runs are written")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="3b", help="model shape (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per run (default: %(default)s)")
    parser.add_argument("--per-device-batch", type=int, default=8,
                        help="first try; halved after a failure down to 1 (default: %(default)s, training's default)")
    parser.add_argument("--backends", default="off,on",
                        help="--unsloth values to run: off = transformers + PEFT, on = Unsloth (default: %(default)s)")
    parser.add_argument("extra", nargs="*", help="more `training grpo` options, after --")
    args = parser.parse_args(argv)

    model = build_model(args.work / f"qwen2-{args.preset}", args.llama_src, args.preset)
    rows = []
    for backend in args.backends.split(","):
        per_device = args.per_device_batch
        if backend == "on" and importlib.util.find_spec("unsloth") is None:
            rows.append((backend, per_device, None, "not installed"))
            continue
        while True:
            run, tail = run_steps(model, args.data, args.work / f"run-{backend}-{per_device}", steps=args.steps,
                                  per_device=per_device, unsloth=backend, extra=args.extra)
            if run is not None or per_device == 1 or "out of memory" not in tail.lower():
                break
            print(f"  failed at per-device batch {per_device}:\n{tail}", flush=True)
            per_device //= 2
        rows.append((backend, per_device, run, tail))

    print()
    print(describe())
    print(f"model: random Qwen2 '{args.preset}' shape, bf16, LoRA rank 64 on every linear layer; `training grpo` "
          f"defaults otherwise ({args.steps} steps{', ' + ' '.join(args.extra) if args.extra else ''})")
    print()
    print("| backend | per-device batch | steps | first step s | s/step after the first | GPU peak allocated GB "
          "| GPU peak reserved GB | host RSS GB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for backend, per_device, run, tail in rows:
        name = "Unsloth" if backend == "on" else "transformers + PEFT"
        if run is None:
            print(f"| {name} | {per_device} | failed: {tail.splitlines()[-1] if tail else '?'} | | | | | |")
            continue
        if backend == "on" and not run.get("unsloth"):
            name += " (asked; not used)"
        gb = lambda key: f"{run[key] / 1024:.1f}" if run.get(key) is not None else "-"  # noqa: E731
        print(f"| {name} | {per_device} | {run['steps']} | {run['first_step_s']} | {run['step_s_mean_after_warmup']} "
              f"| {gb('gpu_peak_allocated_mb')} | {gb('gpu_peak_reserved_mb')} | {gb('host_rss_mb')} |")


if __name__ == "__main__":
    main()
