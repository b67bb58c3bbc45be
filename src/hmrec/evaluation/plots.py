"""The report's PNG figures (matplotlib, Agg backend): Recall@K curves, MAP@12 by segment, training losses."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from hmrec.evaluation.runner import EvaluationResult  # noqa: E402

LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "v", "D", "x", "+", "*")


def line_style(number: int) -> dict[str, str]:
    """The dash and marker of the `number`-th line: no two of the first 8 share both, so equal curves differ."""
    return {"linestyle": LINE_STYLES[number % len(LINE_STYLES)], "marker": MARKERS[number % len(MARKERS)]}


def loss_positions(n_values: int, epochs: int | None) -> np.ndarray | None:
    """Where each loss window ends, in epochs, when every epoch has the same number of windows; else None."""
    if not epochs or n_values == 0 or n_values % epochs:
        return None
    return np.arange(1, n_values + 1) * epochs / n_values


def _save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def recall_curves(result: EvaluationResult, path: Path) -> Path:
    """Recall@K for K = 1..k_max, one line per method. Methods with equal curves (a source and the final ranker
    that follows its order, say) stay apart: each has its own dash and marker, and the legend sits beside the axes."""
    figure, axes = plt.subplots(figsize=(8.5, 4.5))
    ks = np.arange(1, result.k_max + 1)
    every = max(1, result.k_max // 10)
    for number, (name, method) in enumerate(result.methods.items()):
        axes.plot(ks, method.recall_curve, label=name, **line_style(number), markevery=(number % every, every),
                  markersize=4)
    axes.set(xlabel="K", ylabel="Recall@K", title=f"Recall@K on the held-out window ({result.customers:,} buyers)")
    axes.set_xlim(1, result.k_max)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the curves, never over them
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


def training_losses(losses: dict[str, list[float]], path: Path, epochs: dict[str, int] | None = None) -> Path:
    """One panel per model: its training loss, each point the mean over a window of training steps.

    With the model's number of epochs (its windows closed at each epoch's end, as the two-tower's are), the x axis
    is the epoch, the windows spread evenly within each, and dashed lines mark where each epoch ends."""
    figure, panels = plt.subplots(1, len(losses), figsize=(5 * len(losses), 3.8), squeeze=False)
    for axes, (name, values) in zip(panels[0], losses.items(), strict=True):
        n_epochs = (epochs or {}).get(name)
        x = loss_positions(len(values), n_epochs)
        if x is not None:
            for epoch in range(1, n_epochs):
                axes.axvline(epoch, color="grey", linestyle="--", linewidth=0.8)
            axes.set_xlim(0, n_epochs)
            axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            xlabel = f"epoch (each point: the mean loss of a window of steps; {len(values) // n_epochs} per epoch)"
        else:
            x = np.arange(1, len(values) + 1)
            axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            xlabel = "window of training steps (each point: their mean loss)"
        axes.plot(x, values, marker="o" if len(values) < 30 else None)
        axes.set(xlabel=xlabel, ylabel="training loss (sampled softmax)", title=f"{name} training loss")
        axes.xaxis.label.set_fontsize(8)
        axes.grid(alpha=0.3)
    return _save(figure, path)
