"""Per-step training logs to CSV, and the reward/loss curves drawn from that CSV as a PNG."""

from __future__ import annotations

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


def plot(csv_path: Path, png_path: Path, columns: list[str] | None = None, title: str = "") -> Path:
    """One panel per column (default: every reward column, and the loss), step on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_csv(csv_path)
    if columns is None:
        keys = list(dict.fromkeys(k for row in rows for k in row))
        columns = [k for k in keys if k.startswith("rewards/") and k.endswith("/mean")] or [k for k in keys if k in ("loss", "reward")]
        columns += [k for k in ("reward", "loss") if k in keys and k not in columns]
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
