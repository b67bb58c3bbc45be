"""Writes the evaluation report: report.md (tables, plots, notes, three customers up close), metrics.json, PNGs."""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from hmrec.candidates.generate import candidate_recall, generate_candidates
from hmrec.candidates.sources import baselines, peers
from hmrec.data import PAD_ITEM, Query
from hmrec.evaluation import plots
from hmrec.evaluation.runner import QUALITATIVE_K, WARM_DAYS, EvaluationResult

log = logging.getLogger(__name__)

REPORTED = ("map@12", "recall@12", "recall@100", "ndcg@12")  # the keys of metrics.json's method entries
RECENT_SHOWN = 12  # purchases listed for each customer of the qualitative section
NAME_CHARS = 60  # an article name from the data is cut to this many characters in the report
# candidate recall is measured on at most this many held-out customers: at full size the sources' answers for all
# 103,370 took 21 s, and 20,000 give each recall within about +-0.005 (a binomial's 2 standard errors at 0.15)
RECALL_CUSTOMERS = 20_000


def metrics_document(result: EvaluationResult, test_window: tuple[date, date], run_info: dict | None) -> dict:
    """metrics.json: test_window, customers, methods -> the four headline metrics; then segments and extras."""
    recall_key = f"recall@{result.k_max}"
    headline = {
        name: {key: m.metrics[recall_key if key == "recall@100" else key] for key in REPORTED}
        for name, m in result.methods.items()
    }
    return {
        "test_window": [test_window[0].isoformat(), test_window[1].isoformat()],
        "customers": result.customers,
        "methods": headline,
        "segments": {
            segment: {"customers": size, "methods": {name: m.segments[segment] for name, m in result.methods.items()}}
            for segment, size in result.segment_sizes.items()
        },
        "recall_curve": {name: [round(float(v), 6) for v in m.recall_curve] for name, m in result.methods.items()},
        "seconds": {name: round(m.seconds, 3) for name, m in result.methods.items()},
        "run": run_info or {},
    }


def write_report(
    result: EvaluationResult,
    out_dir: Path,
    *,
    test_window: tuple[date, date],
    articles: pl.DataFrame,
    query: Query,
    training_losses: dict[str, list[float]] | None = None,
    training_epochs: dict[str, int] | None = None,
    extra_sections: list[str] | None = None,
    run_info: dict | None = None,
) -> Path:
    """Write report.md, metrics.json and the PNG plots into `out_dir`; returns metrics.json's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    document = metrics_document(result, test_window, run_info)
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(document, indent=2))

    figures = [plots.recall_curves(result, out_dir / "recall_at_k.png"),
               plots.map_by_segment(result, out_dir / "map_by_segment.png")]
    losses = {name: values for name, values in (training_losses or {}).items() if values}
    if losses:
        figures.append(plots.training_losses(losses, out_dir / "training_loss.png", training_epochs))

    sections = [
        _header(result, test_window, run_info),
        _results_tables(result),
        "## Plots\n\n" + "\n\n".join(f"![{path.stem}]({path.name})" for path in figures),
        _notes(result, query),
        _qualitative(result, query, _article_names(articles)),
        *(extra_sections or []),
    ]
    (out_dir / "report.md").write_text("\n\n".join(s.strip() for s in sections if s) + "\n")
    log.info("wrote the report to %s", out_dir)
    return metrics_path


def _header(result: EvaluationResult, test_window: tuple[date, date], run_info: dict | None) -> str:
    lines = [
        "# Evaluation report",
        "",
        f"Held-out window {test_window[0]} .. {test_window[1]}: {result.customers:,} customers who bought in it. "
        f"Every method was asked once for its top {result.k_max}; MAP@12 is the competition metric "
        "(averaged over buyers).",
    ]
    for key in ("run_id", "store_fingerprint"):
        if run_info and key in run_info:
            lines.append(f"- {key}: `{run_info[key]}`")
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def _results_tables(result: EvaluationResult) -> str:
    recall_key = f"recall@{result.k_max}"
    overall = _table(
        ["method", "MAP@12", "Recall@12", f"Recall@{result.k_max}", "NDCG@12", "seconds"],
        [[name, *(f"{m.metrics[key]:.4f}" for key in ("map@12", "recall@12", recall_key, "ndcg@12")),
          f"{m.seconds:.1f}"] for name, m in result.methods.items()],
    )
    names = list(result.methods)
    parts = ["## Results\n", overall]
    for key, title in (("map@12", "MAP@12"), (recall_key, f"Recall@{result.k_max}")):
        rows = [[f"{segment} ({size:,})", *(f"{result.methods[n].segments[segment][key]:.4f}" for n in names)]
                for segment, size in result.segment_sizes.items() if size > 0]
        parts += [f"\n### {title} by segment (buyers in the segment)\n", _table(["segment", *names], rows)]
    parts.append(f"\nWarm: a purchase in the {WARM_DAYS} days before the cutoff; cold: none.")
    return "\n".join(parts)


def _notes(result: EvaluationResult, query: Query) -> str:
    """Plain statements read off the numbers: who wins overall and per segment, where a baseline wins."""
    if not result.methods:
        return "## Notes\n\nNo method was evaluated."
    recall_key = f"recall@{result.k_max}"
    by_map = sorted(result.methods, key=lambda n: -result.methods[n].metrics["map@12"])
    notes = []
    for key, label, why in (("map@12", "MAP@12", ""), (recall_key, f"Recall@{result.k_max}",
                                                        "; it bounds what a ranker can find")):
        values = {n: m.metrics[key] for n, m in result.methods.items()}
        top, leaders = _leaders(values)
        notes.append(f"- Best {label}: {leaders} ({top:.4f}){why}{_within_noise(values, result.customers)}.")
    declared = baselines()
    ordered = [n for n in by_map if n in declared]
    if ordered:
        top_baseline = ordered[0]
        bar = result.methods[top_baseline].metrics["map@12"]
        for name in by_map:
            if name not in declared and result.methods[name].metrics["map@12"] < bar:
                notes.append(f"- The baseline **{top_baseline}** beats **{name}** on MAP@12 "
                             f"({bar:.4f} vs {result.methods[name].metrics['map@12']:.4f}).")
    notes += _peer_notes(result, query, recall_key)
    for segment, size in result.segment_sizes.items():
        if size > 0 and segment in ("warm", "cold"):
            top, leaders = _leaders({n: m.segments[segment]["map@12"] for n, m in result.methods.items()})
            notes.append(f"- {segment} customers ({size:,}): best MAP@12 {top:.4f}, by {leaders}.")
    notes.append("- For scale: on the real H&M week, time-decayed repurchase scores MAP@12 0.020-0.023 and the "
                 "best published systems 0.030-0.036 (docs/hm-data.md); other data gives other levels.")
    return "## Notes\n\n" + "\n".join(notes)


def _peer_notes(result: EvaluationResult, query: Query, recall_key: str) -> list[str]:
    """Where our model trails its library peer: the metrics, the segments, and the window's repeat share (what
    the peer's per-customer factors of their own articles are best at)."""
    notes = []
    for ours, peer in peers().items():
        if ours not in result.methods or peer not in result.methods:
            continue
        mine, theirs = result.methods[ours], result.methods[peer]
        lost = [f"{label} ({mine.metrics[key]:.4f} vs {theirs.metrics[key]:.4f})"
                for key, label in ((recall_key, f"Recall@{result.k_max}"), ("map@12", "MAP@12"))
                if mine.metrics[key] < theirs.metrics[key]]
        if not lost:
            continue
        where = [f"{segment} customers ({mine.segments[segment][recall_key]:.4f} vs "
                 f"{theirs.segments[segment][recall_key]:.4f})" for segment in ("warm", "cold")
                 if result.segment_sizes.get(segment) and mine.segments[segment][recall_key]
                 < theirs.segments[segment][recall_key]]
        notes.append(
            f"- **{ours}** trails the library peer **{peer}** on {' and '.join(lost)}"
            + (f"; on Recall@{result.k_max} it loses on {' and on '.join(where)}" if where else "")
            + f". {repeat_share(query, result.relevant):.0%} of the distinct articles each buyer bought in this window "
            f"were ones they had bought before: {peer} scores each customer's own articles through their own "
            f"factors, {ours} through the articles' attributes and ids pooled over the history, which may blur one "
            "article into its neighbours where the attributes say little.")
    return notes


def repeat_share(query: Query, relevant: list[np.ndarray]) -> float:
    """The share of the window's distinct (buyer, article) pairs whose article the buyer had bought before as_of."""
    lengths = np.array([len(items) for items in relevant], dtype=np.int64)
    if lengths.sum() == 0:
        return 0.0
    bought = pl.DataFrame({"row": np.repeat(np.arange(len(relevant), dtype=np.uint32), lengths),
                           "article_idx": np.concatenate(relevant).astype(np.int32)})
    seen = query.history.select(pl.col("row").cast(pl.UInt32), pl.col("article_idx").cast(pl.Int32)).unique()
    return bought.join(seen, on=["row", "article_idx"], how="semi").height / bought.height


def _within_noise(values: dict[str, float], buyers: int) -> str:
    """A word on noise when the runner-up is within two standard errors of the best. A metric in [0, 1] averaged
    over n buyers with mean p has a standard error of at most sqrt(p (1 - p) / n): a bound, not an estimate."""
    top = max(values.values())
    others = {name: value for name, value in values.items() if value < top}
    if not others or buyers <= 0:
        return ""
    second = max(others, key=others.get)
    noise = 2 * np.sqrt(top * (1 - top) / buyers)
    if top - others[second] > noise:
        return ""
    return (f"; but **{second}** ({others[second]:.4f}) is within the noise of {buyers:,} buyers (2 standard "
            f"errors: up to {noise:.4f}), so another week may order them the other way")


def _leaders(values: dict[str, float]) -> tuple[float, str]:
    """The best value and every method that reaches it (ties are named together)."""
    top = max(values.values())
    return top, " and ".join(f"**{name}**" for name, value in values.items() if value == top)


def _article_names(articles: pl.DataFrame) -> np.ndarray:
    """Display name per article_idx: `prod_name, colour` where the table has them."""
    name = pl.col("prod_name").cast(pl.String) if "prod_name" in articles.columns else pl.lit("article")
    if "colour_group_name" in articles.columns:
        name = name + pl.lit(", ") + pl.col("colour_group_name").cast(pl.String)
    label = markdown_text(pl.coalesce(name, pl.lit("?"))) + pl.lit(" #") + pl.int_range(pl.len()).cast(pl.String)
    return articles.select(label).to_series().to_numpy()


def markdown_text(text: pl.Expr, limit: int = NAME_CHARS) -> pl.Expr:
    """Text from the data as inert Markdown: one line, cut to `limit` chars, HTML and Markdown syntax escaped.

    A `|` becomes `/` (it would split a table cell); `&`, `<`, `>` become entities, so no tag reaches a
    renderer; Markdown punctuation gets a backslash, so a name cannot open a link, an image, emphasis or code.
    """
    text = text.str.replace_all(r"[\x00-\x1f\x7f\u2028\u2029]+", " ").str.replace_all("|", "/", literal=True)
    text = text.str.slice(0, limit)
    for raw, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        text = text.str.replace_all(raw, entity, literal=True)
    return text.str.replace_all(r"([\\`*_\[\]{}()#!~+=-])", r"\${1}")


def pick_customers(query: Query) -> dict[str, int]:
    """Query rows shown up close: the most frequent buyer, one of median frequency, and a cold one
    (no purchase in the warm window, fewest purchases); ties go to the lowest row."""
    counts = np.bincount(query.history["row"].to_numpy(), minlength=len(query)) if len(query) else np.array([])
    picked: dict[str, int] = {}
    if counts.size and counts.max() > 0:
        picked["frequent"] = int(np.argmax(counts))
        buyers = np.flatnonzero(counts > 0)
        others = buyers[buyers != picked["frequent"]]
        if others.size:
            median = np.median(counts[others])
            picked["occasional"] = int(others[np.argmin(np.abs(counts[others] - median))])
    since = query.as_of - timedelta(days=WARM_DAYS)
    warm_rows = query.history.filter(pl.col("t_dat") >= since)["row"].unique().to_numpy()
    cold = np.setdiff1d(np.arange(len(query)), warm_rows)
    if cold.size:
        picked["cold"] = int(cold[np.argmin(counts[cold])])
    return picked


def _qualitative(result: EvaluationResult, query: Query, names: np.ndarray) -> str:
    parts = ["## Three customers up close",
             "Hits (articles bought in the held-out window) are marked **✓**."]
    for kind, row in pick_customers(query).items():
        parts.append(_customer_section(kind, row, result, query, names))
    return "\n\n".join(parts)


def _customer_section(kind: str, row: int, result: EvaluationResult, query: Query, names: np.ndarray) -> str:
    profile = query.customers.row(row, named=True)
    history = query.history.filter(pl.col("row") == row).sort("t_dat", descending=True)
    bought = set(result.relevant[row].tolist())
    lines = [f"### {kind.capitalize()} customer: customer_idx {profile['customer_idx']}, age {profile.get('age')}, "
             f"{history.height} purchases before the cutoff"]
    recent = [f"{d} {names[a]}" for d, a in history.head(RECENT_SHOWN).select("t_dat", "article_idx").iter_rows()]
    lines.append("Recent purchases: " + ("; ".join(recent) if recent else "none"))
    lines.append("Bought in the window: " + "; ".join(names[a] for a in sorted(bought)))
    methods = list(result.methods)
    rows = []
    for rank in range(QUALITATIVE_K):
        cells = []
        for name in methods:
            article = int(result.methods[name].top[row, rank])
            cells.append("" if article == PAD_ITEM else names[article] + (" **✓**" if article in bought else ""))
        if any(cells):
            rows.append([str(rank + 1), *cells])
    return "\n\n".join([*lines, _table(["rank", *methods], rows)])


def candidate_recall_section(final, query: Query, relevant_by_row, at_most: int = RECALL_CUSTOMERS) -> str:
    """Markdown for the report: candidate recall of a multi-source recommender's sources (`parts()`, each asked
    for its `n_per_source`) and of their union, with candidates per customer; on `at_most` of the query's customers
    drawn at random (seed 0) where it has more."""
    sources = final.parts()
    total = len(query)
    who = f"{total:,} customers"
    if total > at_most:
        rows = np.sort(np.random.default_rng(0).choice(total, at_most, replace=False))
        query, relevant_by_row = query.take(rows), [relevant_by_row[row] for row in rows]
        who = f"{at_most:,} of the {total:,} customers, drawn at random"
    candidates = generate_candidates(sources, query, final.n_per_source)
    recall = candidate_recall(candidates, relevant_by_row)
    per_row = candidates.height / max(len(query), 1)
    lines = [
        "## Candidate recall",
        "",
        f"Share of the held-out purchases found among the candidates ({per_row:.1f} per customer on average, "
        f"{who}). A source's figure counts only its own top-N.",
        "",
        "| source | top-N | recall |",
        "|---|---:|---:|",
    ]
    for name in sources:
        lines.append(f"| {name} | {final.n_per_source[name]} | {recall[name]:.4f} |")
    lines.append(f"| **all (union)** | {per_row:.1f} | {recall['all']:.4f} |")
    return "\n".join(lines) + "\n"


def importance_section(final, top: int = 20) -> str:
    """Markdown for the report: a fitted ranker's features by total gain, and the order it chose on validation."""
    importance = final.feature_importance()
    total = float(importance["gain"].sum()) or 1.0
    objective = final.state_.params.get("objective", "lambdarank")  # the search's choice (older bundles: lambdarank)
    members = len(final.booster_.boosters)
    averaged = f" in {members} bagged boosters averaged (`ranking.ensemble`)" if members > 1 else ""
    lines = ["## Ranker feature importance", "", f"LightGBM {objective}, {final.booster_.num_trees()} trees{averaged}; "
             "gain = total loss reduction of the splits on the feature.", ""]
    state = final.state_
    if state.validation_map:
        compared = ", ".join(f"{name} {value:.4f}" for name, value in state.validation_map.items())
        chosen = f"**{state.leader}**'s order first" if state.leader else "**LightGBM**'s order"
        lines += [f"Order chosen on the ranker's validation customers (MAP@12 of LightGBM's order and of each "
                  f"source's own order over the same candidates: {compared}): {chosen}.", ""]
    lines += ["| feature | gain share | splits |", "|---|---:|---:|"]
    for feature, gain, splits in importance.head(top).iter_rows():
        lines.append(f"| {feature} | {gain / total:.3f} | {splits} |")
    return "\n".join(lines) + "\n"


def ranker_sections(final, query: Query, relevant_by_row) -> list[str]:
    """The report's sections on the `final` method, where it merges sources (`parts()`): candidate recall and
    the ranker's feature importance; none for a recommender that answers on its own."""
    if not final.parts():
        return []
    from hmrec.evaluation.selection import ranker_settings_section

    return [candidate_recall_section(final, query, relevant_by_row), importance_section(final),
            ranker_settings_section(final)]
