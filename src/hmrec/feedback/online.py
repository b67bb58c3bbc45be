"""An experiment's online figures per variant, from impressions and sales: customers, impressions, attributed
purchases, the share of impressions a purchase of a shown article followed, purchases and revenue per 1,000
impressions, each with a bootstrap-over-customers interval, and a verdict against the control variant.

Why over customers: one customer makes many impressions, and whether they buy moves with the customer (taste,
budget), so impressions are not independent draws; resampling whole customers keeps that dependence in the interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date
from statistics import NormalDist

import numpy as np

from hmrec.feedback.attribution import DEFAULT_WINDOW_DAYS, attribute, followed
from hmrec.feedback.records import Impression, Sale

CONTROL = "champion"
BETTER, WORSE, UNDECIDED = "better", "worse", "not yet significant"
_COLUMNS = ("impressions", "followed", "purchases", "revenue")  # per customer, summed over their impressions
_CELLS = 2_000_000  # customer indices drawn per bootstrap chunk (16 MB)


def online_report(impressions: Iterable[Impression], sales: Sequence[Sale], window_days: int = DEFAULT_WINDOW_DAYS,
                  since: date | None = None, control: str | None = None, alpha: float = 0.05, power: float = 0.8,
                  resamples: int = 1000, seed: int = 0) -> dict:
    """The report as a JSON-ready dict: `variants` maps each variant to its figures (each ratio as {value, ci}) and
    verdict; `control` names the variant the others are compared with (`control`, else `champion` when present,
    else the one with the most impressions). Only impressions on or after `since` count, and the purchases they
    could have led to. `alpha` is the test's two-sided level, `power` the chance the sample it asks for finds the
    difference now observed."""
    shown = [i for i in impressions if since is None or i.service_day >= since]
    per_variant = _per_customer(shown, sales, window_days)
    chosen = control or (CONTROL if CONTROL in per_variant else
                         max(per_variant, key=lambda v: per_variant[v][:, 0].sum(), default=None))
    rng = np.random.default_rng(seed)
    draws = {v: _resampled_sums(table, resamples, rng) for v, table in per_variant.items()}
    variants = {v: _figures(per_variant[v], draws[v], alpha) for v in per_variant}
    for v, figures in variants.items():
        if chosen in draws and v != chosen:
            figures.update(_verdict(per_variant[v], draws[v], per_variant[chosen], draws[chosen], alpha, power))
        else:
            figures["verdict"] = "control" if v == chosen else UNDECIDED
    counted = [s for s in sales if since is None or s.t_dat >= since]
    return {"window_days": window_days, "since": since.isoformat() if since else None, "control": chosen,
            "alpha": alpha, "power": power, "resamples": resamples, "purchases": len(counted),
            "attributed_purchases": int(sum(int(t[:, 2].sum()) for t in per_variant.values())),
            "variants": variants}


def _per_customer(shown: list[Impression], sales: Sequence[Sale], window_days: int) -> dict[str, np.ndarray]:
    """Per variant, a (customers, 4) float array of _COLUMNS: each customer's impressions, those a purchase
    followed, the purchases credited to them and those purchases' prices."""
    rows: dict[str, dict[str, list[float]]] = {}

    def row(impression: Impression) -> list[float]:
        return rows.setdefault(impression.variant, {}).setdefault(impression.customer_id, [0.0, 0.0, 0.0, 0.0])

    for impression, was_followed in zip(shown, followed(shown, sales, window_days), strict=True):
        totals = row(impression)
        totals[0] += 1
        totals[1] += was_followed
    for credit in attribute(shown, sales, window_days):
        if credit.impression is not None:
            totals = row(credit.impression)
            totals[2] += 1
            totals[3] += credit.sale.price
    return {v: np.array(list(customers.values()), dtype=np.float64).reshape(-1, 4) for v, customers in rows.items()}


def _resampled_sums(table: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, 4): the column sums of `resamples` draws of as many customers as `table` has, with replacement."""
    m = len(table)
    out = np.zeros((resamples, table.shape[1]))
    if m == 0:
        return out
    chunk = max(1, _CELLS // m)
    for start in range(0, resamples, chunk):
        picks = rng.integers(0, m, size=(min(chunk, resamples - start), m))
        for j in range(table.shape[1]):
            out[start:start + len(picks), j] = table[:, j][picks].sum(axis=1)
    return out


def _ratios(sums: np.ndarray) -> dict[str, np.ndarray]:
    """The report's three ratios of column sums (the last axis), nan where there is no impression."""
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.where(sums[..., 0] > 0, sums[..., 0], np.nan)
        return {"followed_share": sums[..., 1] / n, "purchases_per_1000": 1000 * sums[..., 2] / n,
                "revenue_per_1000": 1000 * sums[..., 3] / n}


def _figures(table: np.ndarray, draws: np.ndarray, alpha: float) -> dict:
    point, resampled = _ratios(table.sum(axis=0)), _ratios(draws)
    figures: dict = {"customers": len(table), "impressions": int(table[:, 0].sum()),
                     "attributed_purchases": int(table[:, 2].sum()), "revenue": float(table[:, 3].sum())}
    for name, value in point.items():
        figures[name] = {"value": _number(value), "ci": _interval(resampled[name], alpha)}
    return figures


def _verdict(table: np.ndarray, draws: np.ndarray, control: np.ndarray, control_draws: np.ndarray, alpha: float,
             power: float) -> dict:
    """Followed share against the control's: the difference, its bootstrap interval (the two variants' customers
    resampled independently), the verdict, and the impressions this variant would need for a test at `alpha` to find
    the difference now seen with chance `power` (the control growing alike; None when no difference is seen)."""
    diff = _ratios(table.sum(axis=0))["followed_share"] - _ratios(control.sum(axis=0))["followed_share"]
    spread = _ratios(draws)["followed_share"] - _ratios(control_draws)["followed_share"]
    low, high = _interval(spread, alpha)
    verdict = BETTER if low is not None and low > 0 else WORSE if high is not None and high < 0 else UNDECIDED
    se = float(np.nanstd(spread)) if np.isfinite(spread).any() else 0.0
    needed = None
    if verdict == UNDECIDED and se > 0 and np.isfinite(diff) and diff != 0:
        z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
        needed = math.ceil(table[:, 0].sum() * (z * se / abs(diff)) ** 2)
    return {"difference": {"value": _number(diff), "ci": [low, high]}, "verdict": verdict,
            "impressions_needed": needed}


def _interval(values: np.ndarray, alpha: float) -> list[float | None]:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return [None, None]
    return [float(np.quantile(finite, alpha / 2)), float(np.quantile(finite, 1 - alpha / 2))]


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
