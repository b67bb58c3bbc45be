"""The experiment's online report on planted events: hand-counted figures, verdicts on planted effects, intervals
that widen when a customer's impressions move together, and `hmrec experiment report` on a real event store."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from hmrec.feedback.online import online_report
from hmrec.feedback.records import Impression, Sale

DAY = date(2021, 3, 11)
T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def imp(n: int, customer: str, variant: str, articles=(1, 2), day: date = DAY) -> Impression:
    return Impression(f"r{n}", customer, 1 if variant == "champion" else 2, variant, "recommendations", day,
                      T0 + timedelta(seconds=n), articles)


def test_figures_of_a_hand_counted_experiment():
    impressions = [imp(1, "x", "champion"), imp(2, "x", "champion"), imp(3, "y", "champion"),
                   imp(4, "z", "challenger", (3,)), imp(5, "z", "challenger", (3,))]
    sales = [Sale("x", 2, DAY, 0.5), Sale("y", 9, DAY, 1.0), Sale("z", 3, DAY, 0.25, "r4"), Sale("q", 1, DAY, 3.0)]
    report = online_report(impressions, sales, resamples=200)
    champion, challenger = report["variants"]["champion"], report["variants"]["challenger"]
    # x's purchase of 2 follows both of x's impressions and is credited to the later one (r2)
    assert (champion["customers"], champion["impressions"], champion["attributed_purchases"]) == (2, 3, 1)
    assert champion["followed_share"]["value"] == pytest.approx(2 / 3)
    assert champion["purchases_per_1000"]["value"] == pytest.approx(1000 / 3)
    assert champion["revenue_per_1000"]["value"] == pytest.approx(500 / 3)
    assert (challenger["customers"], challenger["impressions"], challenger["attributed_purchases"]) == (1, 2, 1)
    assert challenger["followed_share"]["value"] == pytest.approx(1.0)  # z's purchase follows r4 and r5
    assert challenger["revenue_per_1000"]["value"] == pytest.approx(125.0)
    assert report["control"] == "champion" and champion["verdict"] == "control"
    assert (report["purchases"], report["attributed_purchases"]) == (4, 2)


def planted(rates: dict[str, float], customers: int, per_customer: int, seed: int, spread: float = 0.0):
    """Impressions of `customers` customers per variant, each followed by a purchase with the variant's rate (times a
    per-customer factor in [1-spread, 1+spread]: a customer's impressions move together)."""
    rng = np.random.default_rng(seed)
    impressions, sales, n = [], [], 0
    for variant, rate in rates.items():
        for c in range(customers):
            customer, mood = f"{variant}-{c}", 1 + spread * rng.uniform(-1, 1)
            for _ in range(per_customer):
                n += 1
                impressions.append(imp(n, customer, variant, (n,)))
                if rng.random() < rate * mood:
                    sales.append(Sale(customer, n, DAY, 0.03, f"r{n}"))
    return impressions, sales


def test_a_planted_better_variant_is_better_and_a_worse_one_worse():
    impressions, sales = planted({"champion": 0.05, "challenger": 0.15, "weaker": 0.01}, 300, 10, seed=1)
    report = online_report(impressions, sales, resamples=500)
    assert report["variants"]["challenger"]["verdict"] == "better"
    assert report["variants"]["weaker"]["verdict"] == "worse"
    low, high = report["variants"]["challenger"]["difference"]["ci"]
    assert low > 0 and high < 0.2


def test_too_small_a_sample_is_not_yet_significant_and_says_what_sample_would_be():
    impressions, sales = planted({"champion": 0.10, "challenger": 0.11}, 40, 5, seed=2)
    challenger = online_report(impressions, sales, resamples=500)["variants"]["challenger"]
    assert challenger["verdict"] == "not yet significant"
    assert challenger["impressions_needed"] > challenger["impressions"]


def test_intervals_widen_when_a_customers_impressions_move_together():
    """Bootstrap over customers: with customers who buy from most or few of their impressions the interval must be
    wider than with independent impressions of the same average rate (a bootstrap over impressions would not be)."""
    widths = []
    for spread in (0.0, 1.0):
        impressions, sales = planted({"champion": 0.3}, 100, 40, seed=3, spread=spread)
        low, high = online_report(impressions, sales, resamples=500)["variants"]["champion"]["followed_share"]["ci"]
        widths.append(high - low)
    assert widths[1] > 1.5 * widths[0]


def test_since_keeps_the_impressions_of_that_day_and_later():
    impressions = [imp(1, "x", "champion", day=DAY), imp(2, "x", "champion", day=DAY + timedelta(days=1))]
    report = online_report(impressions, [], since=DAY + timedelta(days=1), resamples=50)
    assert report["variants"]["champion"]["impressions"] == 1 and report["since"] == "2021-03-12"


def test_the_cli_reports_a_real_event_store_in_markdown_json_and_mlflow(tmp_path):
    from typer.testing import CliRunner

    from hmrec.cli import app
    from hmrec.registry.tracking import client_for
    from hmrec.serving.events import open_event_store
    from hmrec.serving.events.base import Purchase

    workdir = tmp_path / "work"
    store = open_event_store(workdir / "events.sqlite")
    impressions, sales = planted({"champion": 0.05, "challenger": 0.2}, 60, 5, seed=4)
    store.add_impressions(impressions)
    for s in sales:
        store.add_purchase(Purchase(s.customer_id, s.article_id, s.t_dat, s.price, 2), s.request_id, None)
    store.close()
    result = CliRunner().invoke(app, ["experiment", "report", "--workdir", str(workdir), "--resamples", "300"])
    assert result.exit_code == 0, result.output
    assert "| challenger |" in result.output and "better" in result.output
    written = json.loads((workdir / "reports" / "experiment" / "latest" / "report.json").read_text())
    assert written["variants"]["challenger"]["impressions"] == 300
    runs = client_for(workdir).search_runs([client_for(workdir).get_experiment_by_name("hmrec-online")
                                            .experiment_id])
    assert runs and runs[0].data.metrics["challenger/impressions"] == 300


def test_the_cli_without_an_events_file_or_with_a_bad_day_says_what_to_do(tmp_path):
    from typer.testing import CliRunner

    from hmrec.cli import app

    result = CliRunner().invoke(app, ["experiment", "report", "--workdir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == (f"error: {tmp_path / 'events.sqlite'} does not exist: the service records "
                                     f"impressions there once it answers (`hmrec serve --workdir {tmp_path}`)")
    result = CliRunner().invoke(app, ["experiment", "report", "--workdir", str(tmp_path), "--since", "16/09/2020"])
    assert "error: --since '16/09/2020' is not a day: write it as YYYY-MM-DD" in result.output
