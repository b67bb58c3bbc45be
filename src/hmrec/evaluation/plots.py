"""The report's PNG figures (matplotlib, Agg backend): Recall@K curves, MAP@12 by segment, training losses."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

from hmrec.evaluation.runner import EvaluationResult  # noqa: E402


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def recall_curves(result: EvaluationResult, path: Path) -> Path:
    """Recall@K for K = 1..k_max, one line per method."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    ks = np.arange(1, result.k_max + 1)
    for name, method in result.methods.items():
        axes.plot(ks, method.recall_curve, label=name)
    axes.set(xlabel="K", ylabel="Recall@K", title=f"Recall@K on the held-out window ({result.customers:,} buyers)")
    axes.set_xlim(1, result.k_max)
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def map_by_segment(result: EvaluationResult, path: Path) -> Path:
    """MAP@12 per method (bars) within each segment (groups), overall first; empty segments left out."""
    segments = ["all"] + [name for name, size in result.segment_sizes.items() if size > 0]
    names = list(result.methods)
    width = 0.8 / max(len(names), 1)
    figure, axes = plt.subplots(figsize=(max(7, 1.1 * len(segments)), 4.5))
    positions = np.arange(len(segments))
    for offset, name in enumerate(names):
        method = result.methods[name]
        values = [method.metrics["map@12"] if s == "all" else method.segments[s]["map@12"] for s in segments]
        axes.bar(positions + offset * width - 0.4 + width / 2, values, width, label=name)
    labels = [f"{s}\n({result.customers if s == 'all' else result.segment_sizes[s]:,})" for s in segments]
    axes.set_xticks(positions, labels, fontsize=8)
    axes.set(ylabel="MAP@12", title="MAP@12 by method and segment (buyers in each segment)")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never over them
    return _save(figure, path)


def training_losses(losses: dict[str, list[float]], path: Path) -> Path:
    """One panel per model: its training loss by epoch (or logged step)."""
    figure, panels = plt.subplots(1, len(losses), figsize=(5 * len(losses), 3.8), squeeze=False)
    for axes, (name, values) in zip(panels[0], losses.items(), strict=True):
        axes.plot(np.arange(1, len(values) + 1), values, marker="o" if len(values) < 30 else None)
        axes.set(xlabel="step", ylabel="loss", title=f"{name} training loss")
        axes.grid(alpha=0.3)
    return _save(figure, path)
