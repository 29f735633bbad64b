"""`python -m training.eval.split [--shared DIR]`: rewrite split.json from the shared data (deterministic)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.eval import SPLIT, make_split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[3] / "shared")
    args = parser.parse_args(argv)
    split = make_split(args.shared / "data" / "pdfs" / "real", args.shared / "data" / "qasa")
    SPLIT.write_text(json.dumps(split, indent=2) + "\n", encoding="utf-8")
    print(SPLIT)


if __name__ == "__main__":
    main()
