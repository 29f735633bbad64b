"""export's llama.cpp steps, each in a child process: `python -m training.gguf_child STEP ...`, JSON on stdout.

Why a child: on the GPU image (torch 2.11+cu130, numpy 2.5) a process that holds both torch and llama.cpp's CUDA
build aborts (`free(): invalid pointer`), in either import order; export's parent holds torch (merge, transformers
logits), so llama.cpp runs here, loaded before numpy (`load_llama_cpp_first`). `run_child` is the parent's side.

Steps: `quantize SRC DST` (Q4_K_M), `logits GGUF IDS_JSON OUT_NPY` (llama.cpp's logits of every token, CPU),
`answer GGUF --n-gpu-layers N` (one question through the serving backend).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_child(*args: str) -> dict[str, Any]:
    """Run one step in a fresh interpreter and return its JSON; raises with the child's stderr when it fails."""
    root = str(Path(__file__).resolve().parent.parent)  # the child imports this tree's `training`, like the parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "training.gguf_child", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{' '.join(cmd)} printed no result:\n{done.stderr[-4000:]}")
    return json.loads(lines[-1])  # the result is the last line: llama.cpp may print before it


def _quantize(src: Path, dst: Path) -> dict[str, Any]:
    from training.tiny_models import quantize_q4_k_m

    quantize_q4_k_m(src, dst)
    return {"q4_k_m": str(dst), "bytes": dst.stat().st_size}


def _logits(gguf: Path, ids_path: Path, out: Path) -> dict[str, Any]:
    import llama_cpp
    import numpy as np

    ids = json.loads(ids_path.read_text(encoding="utf-8"))
    llm = llama_cpp.Llama(str(gguf), n_gpu_layers=0, n_ctx=max(512, len(ids) + 8), logits_all=True, verbose=False)
    try:
        llm.eval(ids)
        scores = np.asarray(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()
    np.save(out, scores)
    return {"logits": str(out), "shape": list(scores.shape)}


def _answer(gguf: Path, n_gpu_layers: int) -> dict[str, Any]:
    import asyncio

    from training.export import answer_check

    return asyncio.run(answer_check(gguf, n_gpu_layers))


def main(argv: list[str] | None = None) -> int:
    from rag_engine.llm.factory import load_llama_cpp_first

    load_llama_cpp_first()  # before numpy, as every process that loads a GGUF on CUDA
    parser = argparse.ArgumentParser(prog="python -m training.gguf_child", description=__doc__)
    steps = parser.add_subparsers(dest="step", required=True)
    q = steps.add_parser("quantize")
    q.add_argument("src", type=Path)
    q.add_argument("dst", type=Path)
    lg = steps.add_parser("logits")
    lg.add_argument("gguf", type=Path)
    lg.add_argument("ids", type=Path, help="JSON list of token ids")
    lg.add_argument("out", type=Path, help=".npy file for the (tokens, vocabulary) logits")
    a = steps.add_parser("answer")
    a.add_argument("gguf", type=Path)
    a.add_argument("--n-gpu-layers", type=int, default=0)
    args = parser.parse_args(argv)
    if args.step == "quantize":
        result = _quantize(args.src, args.dst)
    elif args.step == "logits":
        result = _logits(args.gguf, args.ids, args.out)
    else:
        result = _answer(args.gguf, args.n_gpu_layers)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
