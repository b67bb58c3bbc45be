"""The report: metrics.json's exact shape, valid PNGs, and report.md's tables, notes and customers up close."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import date, timedelta

import matplotlib.image
import numpy as np
import polars as pl
import pytest

from hmrec.data import Query, TrainData
from hmrec.evaluation import plots
from hmrec.evaluation import report as report_module
from hmrec.evaluation.report import pick_customers, repeat_share, write_report
from hmrec.evaluation.runner import evaluate_methods, ground_truth
from hmrec.recommenders.popularity import PopularityRecommender
from hmrec.recommenders.repurchase import RepurchaseConfig, RepurchaseRecommender

CUTOFF = date(2029, 11, 20)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def transactions(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    """From (days before the cutoff (<= 0: the held-out week), customer_idx, article_idx)."""
    return pl.DataFrame(
        {"t_dat": [CUTOFF - timedelta(days=d) for d, _, _ in rows], "customer_idx": [c for _, c, _ in rows],
         "article_idx": [a for _, _, a in rows], "price": [0.01] * len(rows), "sales_channel_id": [2] * len(rows)},
        schema={"t_dat": pl.Date, "customer_idx": pl.Int32, "article_idx": pl.Int32, "price": pl.Float32,
                "sales_channel_id": pl.Int8},
    )


ARTICLES = pl.DataFrame({
    "article_idx": np.arange(8, dtype=np.int32),
    "prod_name": ["Tee", "Jeans", "Dress", "Cap", "Sock | pair", "Coat", "Belt", "Scarf"],
    "colour_group_name": ["Black", "Blue", "Red", "White", "Grey", "Beige", "Brown", "Green"],
})
CUSTOMERS = pl.DataFrame({"customer_idx": np.arange(4, dtype=np.int32),
                          "age": pl.Series([22, 47, None, 70], dtype=pl.Int16)})
# customer 0 buys often (5 times), 1 twice, 2 never, 3 once 200 days ago (cold)
TRAIN = transactions([(3, 0, 1), (5, 0, 1), (9, 0, 2), (12, 0, 3), (20, 0, 5), (4, 1, 2), (8, 1, 0), (200, 3, 7)])
TEST = transactions([(0, 0, 1), (-1, 1, 4), (-2, 2, 1), (-3, 3, 7)])


@pytest.fixture(scope="module")
def evaluated():
    data = TrainData(TRAIN, CUSTOMERS, ARTICLES, CUTOFF)
    methods = {"popularity": PopularityRecommender().fit(data), "repurchase": RepurchaseRecommender(RepurchaseConfig(window_days=None)).fit(data)}
    customer_idx, relevant = ground_truth(TEST)
    query = Query.for_customers(customer_idx, CUSTOMERS, TRAIN, as_of=CUTOFF)
    return query, evaluate_methods(methods, query, relevant)


def report(evaluated, out_dir, **options):
    query, result = evaluated
    window = (CUTOFF, CUTOFF + timedelta(days=6))
    return write_report(result, out_dir, test_window=window, articles=ARTICLES, query=query, **options)


def test_metrics_json_has_the_exact_shape_tools_read(evaluated, tmp_path):
    path = report(evaluated, tmp_path, run_info={"run_id": "r1"})
    assert path == tmp_path / "metrics.json"
    document = json.loads(path.read_text())
    assert document["test_window"] == ["2029-11-20", "2029-11-26"]
    assert document["customers"] == 4
    assert set(document["methods"]) == {"popularity", "repurchase"}
    result = evaluated[1]
    for name, values in document["methods"].items():
        assert set(values) == {"map@12", "recall@12", "recall@100", "ndcg@12"}
        assert values["map@12"] == pytest.approx(result.methods[name].metrics["map@12"])
        assert all(isinstance(v, float) and 0 <= v <= 1 for v in values.values())
    assert document["segments"]["cold"]["customers"] == 2
    assert document["run"] == {"run_id": "r1"}


def test_plots_are_valid_pngs_and_the_loss_plot_appears_only_with_losses(evaluated, tmp_path):
    report(evaluated, tmp_path / "without")
    assert not (tmp_path / "without" / "training_loss.png").exists()
    report(evaluated, tmp_path / "with", training_losses={"two_tower": [2.0, 1.5, 1.2], "empty": []})
    for name in ("recall_at_k.png", "map_by_segment.png", "training_loss.png"):
        path = tmp_path / "with" / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        height, width, _ = matplotlib.image.imread(path).shape
        assert height > 100 and width > 100
    assert "![training_loss](training_loss.png)" in (tmp_path / "with" / "report.md").read_text()


def test_report_md_holds_tables_notes_customers_and_extra_sections(evaluated, tmp_path):
    report(evaluated, tmp_path, extra_sections=["## Candidate recall\n\nsome table"])
    text = (tmp_path / "report.md").read_text()
    assert "| popularity |" in text and "| repurchase |" in text
    assert "### MAP@12 by segment" in text and "| cold (2) |" in text
    assert "![recall_at_k](recall_at_k.png)" in text and "![map_by_segment](map_by_segment.png)" in text
    assert "Best MAP@12: **repurchase** (0.7500)" in text
    assert "warm customers (2): best MAP@12 0.5000, by **popularity** and **repurchase**" in text
    for kind in ("Frequent customer: customer_idx 0", "Occasional customer: customer_idx 1", "Cold customer"):
        assert kind in text
    assert "Jeans, Blue #1 **✓**" in text  # customer 0 re-buys the jeans, repurchase's first answer
    assert "Sock / pair, Grey #4" in text  # a | in a name would break the markdown table
    assert text.rstrip().endswith("some table")


def test_names_from_the_data_cannot_inject_markup(evaluated, tmp_path):
    query, result = evaluated
    hostile = ["<script>alert(1)</script>", "**bold** [x](javascript:y)", "line\n# Heading\r\n<img src=x>",
               "![i](http://e/x.png) `code` _u_", "x" * 500, "&lt;", "<b>ok</b>", "Cap"]
    articles = ARTICLES.with_columns(pl.Series("prod_name", hostile))
    window = (CUTOFF, CUTOFF + timedelta(days=6))
    write_report(result, tmp_path, test_window=window, articles=articles, query=query)
    text = (tmp_path / "report.md").read_text()
    assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt;, Black #0" in text
    assert "\\*\\*bold\\*\\* \\[x\\]\\(javascript:y\\), Blue #1" in text
    assert "line \\# Heading &lt;img src\\=x&gt;, Red #2" in text
    assert "&amp;lt;, Beige #5" in text and f"{'x' * 60} #4" in text
    for raw in ("<script", "<img", "<b>", "](javascript", "![i]", "`code`", "\n# Heading"):
        assert raw not in text


def test_customers_up_close_are_picked_by_rule(evaluated):
    query, _ = evaluated
    # rows follow ground_truth: customers 0, 1, 2, 3; 2 has no history, 3 only an old purchase
    assert pick_customers(query) == {"frequent": 0, "occasional": 1, "cold": 2}


def test_notes_say_where_a_baseline_beats_a_learned_method(evaluated, tmp_path):
    query, result = evaluated
    learned = copy.deepcopy(result.methods["popularity"])
    learned.metrics = {**learned.metrics, "map@12": result.methods["repurchase"].metrics["map@12"] / 2}
    result = dataclasses.replace(result, methods={**result.methods, "two_tower": learned})
    write_report(result, tmp_path, test_window=(CUTOFF, CUTOFF), articles=ARTICLES, query=query)
    text = (tmp_path / "report.md").read_text()
    assert "The baseline **repurchase** beats **two_tower** on MAP@12 (0.7500 vs 0.3750)" in text
    assert json.loads((tmp_path / "metrics.json").read_text())["methods"]["two_tower"]["map@12"] == 0.375


def test_notes_say_where_and_why_our_model_trails_its_library_peer(evaluated, tmp_path):
    query, result = evaluated
    peer, ours = copy.deepcopy(result.methods["repurchase"]), copy.deepcopy(result.methods["repurchase"])
    full, warm = peer.metrics["recall@100"], peer.segments["warm"]["recall@100"]
    ours.metrics = {**ours.metrics, "recall@100": full / 2}
    ours.segments = {**ours.segments, "warm": {**ours.segments["warm"], "recall@100": warm / 2}}
    trailing = dataclasses.replace(result, methods={**result.methods, "two_tower": ours, "als": peer})
    write_report(trailing, tmp_path / "trails", test_window=(CUTOFF, CUTOFF), articles=ARTICLES, query=query)
    text = (tmp_path / "trails" / "report.md").read_text()
    assert (f"- **two_tower** trails the library peer **als** on Recall@100 ({full / 2:.4f} vs {full:.4f}); on "
            f"Recall@100 it loses on warm customers ({warm / 2:.4f} vs {warm:.4f}). 50% of the distinct articles each "
            "buyer bought in this window were ones they had bought before") in text
    # customers 0 and 3 buy again what they bought before, 1 buys something new, 2 has no history
    assert repeat_share(query, result.relevant) == 0.5
    level = dataclasses.replace(result, methods={**result.methods, "two_tower": peer, "als": peer})
    write_report(level, tmp_path / "level", test_window=(CUTOFF, CUTOFF), articles=ARTICLES, query=query)
    assert "library peer" not in (tmp_path / "level" / "report.md").read_text()


def test_the_loss_plot_marks_epochs_and_equal_recall_curves_are_drawn_apart(evaluated, tmp_path):
    assert plots.loss_positions(6, 3).tolist() == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]  # two windows per epoch
    assert plots.loss_positions(5, 3) is None and plots.loss_positions(4, None) is None
    styles = [tuple(plots.line_style(n).values()) for n in range(8)]
    assert len(set(styles)) == 8
    report(evaluated, tmp_path, training_losses={"two_tower": [2.0, 1.8, 1.5, 1.4, 1.2, 1.1]},
           training_epochs={"two_tower": 3})
    assert (tmp_path / "training_loss.png").read_bytes()[:8] == PNG_MAGIC


def test_a_best_claim_within_the_noise_says_so():
    close = report_module._within_noise({"a": 0.30, "b": 0.29}, buyers=115)
    assert close.startswith("; but **b** (0.2900) is within the noise of 115 buyers (2 standard errors: up to 0.0855)")
    assert report_module._within_noise({"a": 0.30, "b": 0.10}, buyers=10_000) == ""
    assert report_module._within_noise({"a": 0.30, "b": 0.30}, buyers=115) == ""  # a tie is named as one
