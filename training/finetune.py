"""`python -m training sft` and `python -m training grpo`: TRL trainers with a PEFT LoRA on prepared records.

Defaults follow the reference recipe (Qwen2.5-3B-Instruct, lr 5e-6, 64 completions per step, LoRA rank 64,
200 steps); what the recipe leaves open (generations per prompt, completion length, KL beta, temperature) is TRL's
default for the installed version, printed at start. A run folder holds `adapter/`, `train_log.csv`, `curves.png`
and `run.json` (the settings, the base model, time per step and peak memory).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from training.base_model import DEFAULT_BASE_MODEL, load_for_training, lora_settings
from training.curves import CsvLog, plot
from training.prepare import read_jsonl
from training.rewards import REWARDS, trl_rewards

log = logging.getLogger(__name__)

#: The longest prompt the serving budget builds is ~2k tokens (5 sources of ≤270 tokens, system, question);
#: plus the answer, 4,096 covers it without truncation.
DEFAULT_MAX_LENGTH = 4096


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step; the first (warm-up: compilation, allocator growth) is reported apart."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001 (TrainerCallback's signature)
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.times.append(time.perf_counter() - self._t0)


class TimeBudget(TrainerCallback):
    """Stops training after the step that ends past `seconds` of training (a GPU lease has a fixed length)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.stopped = False
        self._t0 = 0.0

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001 (TrainerCallback's signature)
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.seconds is not None and time.perf_counter() - self._t0 >= self.seconds:
            control.should_training_stop = self.stopped = True


def _device_args() -> dict[str, Any]:
    import torch

    if torch.cuda.is_available():
        return {"bf16": torch.cuda.is_bf16_supported(), "use_cpu": False}
    return {"bf16": False, "use_cpu": True}


def _peak_memory_mb() -> dict[str, float]:
    import torch

    out = {"host_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        out["gpu_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu_peak_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    return out


def _dataset(path: Path, limit: int | None, *, with_completion: bool):
    from datasets import Dataset

    records = read_jsonl(path)[: limit or None]
    rows = []
    for r in records:
        row: dict[str, Any] = {"prompt": r.prompt, "reference_answer": r.reference_answer, "answerable": r.answerable,
                               "gold_sources": r.gold_sources, "source_texts": r.source_texts}
        if with_completion:
            row["completion"] = [{"role": "assistant", "content": r.target}]
        rows.append(row)
    if not rows:
        raise SystemExit(f"{path} holds no records: run `python -m training prepare` first")
    return Dataset.from_list(rows)


def _fitting(dataset, tokenizer, max_length: int):
    """The rows whose prompt and target fit `max_length` tokens; exits when none does.

    TRL truncates an SFT example to `max_length` and then drops those left with no completion token, which ends in a
    bare "num_samples=0" from the sampler; saying which limit was too small is more use.
    """
    def length(row: dict[str, Any]) -> int:
        ids = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True)
        return len(ids["input_ids"] if hasattr(ids, "keys") else ids)  # transformers 5 returns a BatchEncoding

    lengths = [length(row) for row in dataset]
    keep = [i for i, n in enumerate(lengths) if n <= max_length]
    if not keep:
        raise SystemExit(f"every record is longer than --max-length {max_length} tokens (shortest {min(lengths)}): "
                         "raise --max-length")
    if len(keep) < len(lengths):
        print(f"sft: {len(lengths) - len(keep)} of {len(lengths)} records are longer than --max-length "
              f"{max_length} tokens and are left out", file=sys.stderr)
    return dataset.select(keep)


def _load_model(args: argparse.Namespace, out: Path):
    lora = lora_settings(args.lora_rank, args.lora_alpha)
    model, tokenizer, used_unsloth = load_for_training(
        args.base_model, work_dir=out, use_unsloth=None if args.unsloth == "auto" else args.unsloth == "on",
        max_seq_length=args.max_length, lora=lora,
    )
    peft_config = None
    if args.init_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(args.init_adapter), is_trainable=True)
    elif not used_unsloth:
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", **lora)
    return model, tokenizer, peft_config, used_unsloth


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _finish(trainer, args: argparse.Namespace, out: Path, kind: str, timer, budget: TimeBudget, used_unsloth: bool,
            printed_defaults: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    trainer.model.save_pretrained(out / "adapter")
    steps = timer.times
    summary = {
        "kind": kind,
        "base_model": args.base_model,
        "init_adapter": str(args.init_adapter) if args.init_adapter else None,
        "data": str(args.data),
        "unsloth": used_unsloth,
        "steps": len(steps),
        "stopped_by_max_seconds": budget.stopped,
        "wall_s": round(wall, 1),
        "first_step_s": round(steps[0], 3) if steps else None,
        "step_s_mean_after_warmup": round(sum(steps[1:]) / len(steps[1:]), 3) if len(steps) > 1 else None,
        **{k: round(v, 1) for k, v in _peak_memory_mb().items()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"},
        "trl_defaults_used": printed_defaults,
        # what a GPU image had: its libraries differ from the dev machine's, and export reads the tokenizer they wrote
        "versions": {name: _version(name) for name in ("torch", "transformers", "tokenizers", "trl", "peft", "gguf")},
    }
    (out / "run.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if (out / "train_log.csv").exists():
        plot(out / "train_log.csv", out / "curves.png", title=f"{kind}: {Path(args.base_model).name}")
    return summary


def _common_arguments(parser: argparse.ArgumentParser, *, lr: float, steps: int, batch: int) -> None:
    parser.add_argument("--data", type=Path, required=True, help="folder from `prepare` (reads train.jsonl)")
    parser.add_argument("--out", type=Path, required=True, help="run folder to write (adapter/, CSV, PNG, run.json)")
    parser.add_argument("--base-model", default=DEFAULT_BASE_MODEL,
                        help=f"hub id, local HF folder or .gguf file (default {DEFAULT_BASE_MODEL})")
    parser.add_argument("--init-adapter", type=Path, default=None,
                        help="continue training this LoRA adapter (e.g. an SFT run's adapter/) instead of a new one")
    parser.add_argument("--lr", type=float, default=lr, help=f"learning rate (default {lr:g})")
    parser.add_argument("--steps", type=int, default=steps, help=f"optimizer steps (default {steps})")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop after the step that ends past this many seconds of training; the learning-rate "
                             "schedule still spans --steps (default: no limit)")
    parser.add_argument("--batch-size", type=int, default=batch,
                        help=f"examples (GRPO: completions) per optimizer step (default {batch})")
    parser.add_argument("--per-device-batch", type=int, default=None,
                        help="examples per forward pass; the rest is gradient accumulation (default: min(batch, 8))")
    parser.add_argument("--lora-rank", type=int, default=64, help="LoRA rank (default 64)")
    parser.add_argument("--lora-alpha", type=int, default=None, help="LoRA alpha (default: the rank)")
    parser.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH,
                        help=f"longest prompt + completion in tokens (default {DEFAULT_MAX_LENGTH}: covers the "
                             "serving prompt budget)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N records (default: all)")
    parser.add_argument("--logging-steps", type=int, default=1, help="log (and write a CSV row) every N steps (default 1)")
    parser.add_argument("--unsloth", choices=("auto", "on", "off"), default="auto",
                        help="auto: Unsloth when installed and a CUDA GPU is there (default auto)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _batching(args: argparse.Namespace) -> tuple[int, int]:
    per_device = args.per_device_batch or min(args.batch_size, 8)
    if args.batch_size % per_device:
        raise SystemExit(f"--batch-size {args.batch_size} is not a multiple of --per-device-batch {per_device}")
    return per_device, args.batch_size // per_device


def add_sft_arguments(parser: argparse.ArgumentParser) -> None:
    # A LoRA warm-up trains only the adapters, so it takes a larger step than TRL's full fine-tuning default (2e-5).
    _common_arguments(parser, lr=2e-4, steps=60, batch=8)


def add_grpo_arguments(parser: argparse.ArgumentParser) -> None:
    _common_arguments(parser, lr=5e-6, steps=200, batch=64)
    parser.add_argument("--num-generations", type=int, default=None, help="completions per prompt (default: TRL's)")
    parser.add_argument("--max-completion-length", type=int, default=None, help="new tokens per completion (default: TRL's)")
    parser.add_argument("--beta", type=float, default=None, help="KL coefficient (default: TRL's)")
    parser.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: TRL's)")
    parser.add_argument("--rewards", default=",".join(REWARDS),
                        help=f"comma-separated rewards to optimise (default: all of {', '.join(REWARDS)})")


def run_sft(args: argparse.Namespace) -> int:
    from trl import SFTConfig, SFTTrainer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer, peft_config, used_unsloth = _load_model(args, out)
    per_device, accumulation = _batching(args)
    config = SFTConfig(
        output_dir=str(out / "checkpoints"), learning_rate=args.lr, max_steps=args.steps,
        per_device_train_batch_size=per_device, gradient_accumulation_steps=accumulation,
        max_length=args.max_length, logging_steps=args.logging_steps, save_strategy="no", report_to=[],
        seed=args.seed, completion_only_loss=True, **_device_args(),
    )
    defaults = {"lr_scheduler_type": str(config.lr_scheduler_type), "warmup_steps": config.warmup_steps,
                "weight_decay": config.weight_decay}
    print(f"sft: TRL defaults in use: {defaults}", file=sys.stderr)
    timer, budget = StepTimer(), TimeBudget(args.max_seconds)
    dataset = _fitting(_dataset(args.data / "train.jsonl", args.limit, with_completion=True), tokenizer,
                       args.max_length)
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[CsvLog(out / "train_log.csv"), timer, budget])
    print(json.dumps(_finish(trainer, args, out, "sft", timer, budget, used_unsloth, defaults), indent=2))
    return 0


def run_grpo(args: argparse.Namespace) -> int:
    from trl import GRPOConfig, GRPOTrainer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer, peft_config, used_unsloth = _load_model(args, out)
    per_device, accumulation = _batching(args)
    chosen = {k: v for k, v in {"num_generations": args.num_generations,
                                "max_completion_length": args.max_completion_length,
                                "beta": args.beta, "temperature": args.temperature}.items() if v is not None}
    config = GRPOConfig(
        output_dir=str(out / "checkpoints"), learning_rate=args.lr, max_steps=args.steps,
        per_device_train_batch_size=per_device, gradient_accumulation_steps=accumulation,
        logging_steps=args.logging_steps, save_strategy="no", report_to=[], seed=args.seed, **chosen,
        # A non-finite logit while sampling (bf16 on the H100, step 29 at lr 1e-4) raised a CUDA device-side assert
        # that killed the run before its adapter was saved; transformers' InfNanRemoveLogitsProcessor prevents it.
        generation_kwargs={"remove_invalid_values": True},
        **_device_args(),
    )
    defaults = {k: getattr(config, k) for k in ("num_generations", "max_completion_length", "beta", "temperature",
                                                "loss_type", "top_p", "epsilon") if k not in chosen}
    print(f"grpo: TRL {__import__('trl').__version__} defaults in use: {defaults}", file=sys.stderr)
    timer, budget = StepTimer(), TimeBudget(args.max_seconds)
    trainer = GRPOTrainer(
        model=model, reward_funcs=trl_rewards([n.strip() for n in args.rewards.split(",") if n.strip()]),
        args=config, train_dataset=_dataset(args.data / "train.jsonl", args.limit, with_completion=False),
        processing_class=tokenizer, peft_config=peft_config, callbacks=[CsvLog(out / "train_log.csv"), timer, budget],
    )
    print(json.dumps(_finish(trainer, args, out, "grpo", timer, budget, used_unsloth, defaults), indent=2))
    return 0
