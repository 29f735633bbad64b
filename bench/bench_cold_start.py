"""Cold CLI start: wall time of one `paperbot` command from the shell, as a user runs it, median of a few runs.

    python bench/bench_cold_start.py [--encoder DIR] [--runs 3]

A fresh data dir gets one real paper (1706.03762.pdf) ingested with the MiniLM colbert-ir encoder (a small real
encoder; TOOLCHAIN.md), then each command runs in a new process: `papers`, `search --mode lexical`,
`search --mode hybrid` (loads the encoder) and `status`. Targets (issue 13): papers and lexical ≤ 1 s, hybrid ≤ 4 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import describe  # noqa: E402
from bench.synthetic import DEFAULT_ENCODER  # noqa: E402

PAPER = Path("/work/shared/data/pdfs/real/1706.03762.pdf")
QUESTION = "Why is dot-product attention scaled by the square root of the key dimension?"
COMMANDS = {
    "papers": ["papers", "--index", "bench"],
    "search --mode lexical": ["search", "--index", "bench", "--mode", "lexical", QUESTION],
    "search --mode hybrid": ["search", "--index", "bench", "--mode", "hybrid", QUESTION],
    "status": ["status"],
}


def run(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"paperbot {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", type=Path, default=DEFAULT_ENCODER)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "PAPERBOT_DATA_DIR": data, "PAPERBOT_COLBERT_MODEL": str(args.encoder),
               "PAPERBOT_DEVICE": "cpu", "PYTHONPATH": str(ROOT)}
        ingest = run(["ingest", "--index", "bench", str(PAPER)], env)
        print(describe())
        print(f"\nOne paper ingested first ({ingest:.1f} s). Each command in a new process, {args.runs} runs.\n")
        print("| command | median s | min s | max s |\n| --- | ---: | ---: | ---: |")
        for name, command in COMMANDS.items():
            times = [run(command, env) for _ in range(args.runs)]
            print(f"| paperbot {name} | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} |")


if __name__ == "__main__":
    main()
