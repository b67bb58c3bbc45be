"""How many label windows the ranker learns from: windows of the prediction horizon stacked back from the cutoff
until the training signal wanted is reached, bounded by memory, by a count of windows and by the history. The
window that chooses the sources' settings sits behind the nearest `near_windows` of them, the others behind it
(`FinalConfig.label_starts`): more windows teach the ranker more without moving the settings' window back."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date, timedelta

import polars as pl

log = logging.getLogger(__name__)


@dataclass
class WindowPlanConfig:
    """The training signal wanted and its bounds. min_label_lines: (buyer, article) pairs bought in the windows
    (the ranker's positive lines before candidate recall); min_label_buyers: buyers summed over the windows (a buyer
    of two windows counts twice: two groups); max_training_lines: the training frame's candidate lines, its memory
    (~60 float32 features a line: 8M lines are ~2 GB, ~4 GB peak with LightGBM's copy), so windows stop once their
    buyers times the candidates per buyer fill it; max_windows: every window refits the sources, so time bounds
    the count too; min_history_days: days kept before the oldest window for the sources to learn from;
    near_windows: the label windows between the settings' window and the cutoff.
    60,000 pairs are four weeks of the small fashion sample (the published H&M solutions learn from four to six) and
    one at full size; 20,000 (two weeks) scored 2.4% lower there (docs/benchmarks.md)."""

    min_label_lines: int = 60_000
    min_label_buyers: int = 5_000
    max_training_lines: int = 8_000_000
    max_windows: int = 16
    min_history_days: int = 28
    near_windows: int = 2


@dataclass
class WindowPlan:
    """What the plan chose: `windows` label windows of `horizon_days`, the last ending at the cutoff; the pairs and
    buyers they hold; why no more were added (`stopped`)."""

    horizon_days: int
    windows: int
    label_lines: int
    label_buyers: int
    stopped: str

    def as_dict(self) -> dict:
        return asdict(self)


def plan_windows(transactions: pl.DataFrame, cutoff: date, horizon_days: int, candidates_per_buyer: int,
                 config: WindowPlanConfig | None = None) -> WindowPlan:
    """Stack windows of `horizon_days` back from `cutoff` (reading only rows before it) until both minimums are met
    (at least one window; the oldest window, or the validation window where it is older, keeps `min_history_days`
    of history before it)."""
    config = config or WindowPlanConfig()
    if horizon_days < 1:
        raise ValueError(f"the horizon must be at least 1 day, not {horizon_days}")
    seen = transactions.filter(pl.col("t_dat") < cutoff)  # never the held-out window
    first = seen["t_dat"].min()
    lines = buyers = windows = 0
    stopped = "signal"
    while lines < config.min_label_lines or buyers < config.min_label_buyers:
        stopped = _bound(windows, buyers, cutoff, first, horizon_days, candidates_per_buyer, config)
        if stopped:
            break
        end = cutoff - timedelta(days=horizon_days * windows)
        window = seen.filter(pl.col("t_dat").is_between(end - timedelta(days=horizon_days), end, closed="left"))
        lines += window.select("customer_idx", "article_idx").n_unique() if window.height else 0
        buyers += window["customer_idx"].n_unique()
        windows += 1
    plan = WindowPlan(horizon_days, windows, lines, buyers, stopped or "signal")
    log.info("label windows: %d of %d day(s), %d bought pairs, %d buyers (stopped by %s)", plan.windows,
             horizon_days, lines, buyers, plan.stopped)
    return plan


def _bound(windows: int, buyers: int, cutoff: date, first: date | None, horizon_days: int, per_buyer: int,
           config: WindowPlanConfig) -> str:
    """The bound that forbids one more window ('' when none does); the first window is always allowed."""
    if windows == 0:
        return ""
    if windows >= config.max_windows:
        return "max_windows"
    if buyers * max(per_buyer, 1) >= config.max_training_lines:
        return "max_training_lines"
    # the next window, the validation window before it and the history the sources need before that
    start = cutoff - timedelta(days=horizon_days * (windows + 2) + config.min_history_days)
    if first is None or start < first:
        return "history"
    return ""
