"""`python -m training <step>`: prepare → sft → grpo → export, and evaluate. Each step's `--help` lists its defaults.

The steps chain without editing code: docs/training.md and docs/evaluation.md show them end to end.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: step → (module, help). Modules are imported only for the step that runs (training pulls in torch, TRL, PEFT).
STEPS: dict[str, tuple[str, str]] = {
    "prepare": ("training.prepare", "QASA (+ training papers) → train.jsonl, eval.jsonl, manifest.json"),
    "sft": ("training.finetune", "supervised warm-up: TRL SFTTrainer with a LoRA"),
    "grpo": ("training.finetune", "GRPO: TRL GRPOTrainer with a LoRA and the rewards in training/rewards.py"),
    "export": ("training.export", "merge the LoRA, write F16 and Q4_K_M GGUFs, answer one question with it"),
    "evaluate": ("training.evaluate_cli", "answer quality of GGUF models through the serving path"),
    "report": ("training.evaluate_cli", "evaluate's tables again from an --out folder's records.jsonl (a cut run too)"),
}
_ENTRY = {"prepare": ("add_arguments", "run"), "sft": ("add_sft_arguments", "run_sft"),
          "grpo": ("add_grpo_arguments", "run_grpo"), "export": ("add_arguments", "run"),
          "evaluate": ("add_arguments", "run"), "report": ("add_report_arguments", "run_report")}


#: Steps that load a GGUF on the GPU through llama.cpp, which must then load before numpy (load_llama_cpp_first).
#: The trainers must not load it at all: with TRL and torch in the process that aborted (free(): invalid pointer).
LLAMA_FIRST = ("prepare", "evaluate")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")
    # Only the chosen step's module is imported, so `--help` of one step does not load the others' libraries.
    chosen = next((a for a in argv if a in STEPS), None)
    if chosen in LLAMA_FIRST:
        from rag_engine.llm.factory import load_llama_cpp_first

        load_llama_cpp_first()
    for name, (module, text) in STEPS.items():
        sub = steps.add_parser(name, help=text, description=text)
        if name == chosen:
            adder, runner = _ENTRY[name]
            loaded = importlib.import_module(module)
            getattr(loaded, adder)(sub)
            sub.set_defaults(func=getattr(loaded, runner))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
