"""Per-step training logs to CSV, the reward/loss curves drawn from that CSV as a PNG, and the first-third vs
last-third means of its columns (`python -m training.curves train_log.csv`)."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class CsvLog(TrainerCallback):
    """Appends every `logs` dict the trainer emits (one row per logging step) to `path`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 (TrainerCallback's signature)
        if not logs or "train_runtime" in logs:  # the closing summary is not a step
            return
        self.rows.append({"step": state.global_step, **{k: v for k, v in logs.items() if isinstance(v, (int, float))}})
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        with self.path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)


def read_csv(path: Path) -> list[dict[str, float]]:
    with Path(path).open(encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def curve_columns(rows: list[dict[str, float]]) -> list[str]:
    """Every reward column's mean, then the summed reward and the loss, in the CSV's order."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    columns = [k for k in keys if k.startswith("rewards/") and k.endswith("/mean")] or [k for k in keys if k in ("loss", "reward")]
    return columns + [k for k in ("reward", "loss") if k in keys and k not in columns]


def thirds(rows: list[dict[str, float]], columns: list[str]) -> dict[str, tuple[float, float]]:
    """column → (mean over the first third of its logged steps, mean over the last third): did it move?"""
    out = {}
    for column in columns:
        values = [row[column] for row in rows if column in row]
        if values:
            third = max(1, len(values) // 3)
            out[column] = (sum(values[:third]) / third, sum(values[-third:]) / third)
    return out


def plot(csv_path: Path, png_path: Path, columns: list[str] | None = None, title: str = "") -> Path:
    """One panel per column (default: every reward column, and the loss), step on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_csv(csv_path)
    columns = curve_columns(rows) if columns is None else columns
    fig, axes = plt.subplots(len(columns), 1, figsize=(7, 2.2 * max(1, len(columns))), sharex=True, squeeze=False)
    for ax, column in zip(axes[:, 0], columns):
        points = [(row["step"], row[column]) for row in rows if column in row]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
        ax.set_ylabel(column.replace("rewards/", "").replace("/mean", ""), fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(title or Path(csv_path).stem)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return Path(png_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.curves", description=__doc__)
    parser.add_argument("csv", type=Path, help="a run's train_log.csv")
    args = parser.parse_args(argv)
    rows = read_csv(args.csv)
    print(f"{args.csv}: {len(rows)} logged steps; mean of the first third → the last third")
    for column, (first, last) in thirds(rows, curve_columns(rows)).items():
        print(f"  {column:<28} {first:8.3f} → {last:8.3f}  ({last - first:+.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
