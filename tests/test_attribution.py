"""Attribution: planted impressions and purchases whose right answer is known, one rule per test."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hmrec.feedback.attribution import attribute, followed
from hmrec.feedback.records import Impression, Sale

DAY = date(2021, 3, 11)
A, B = "a" * 64, "b" * 64


def shown(request_id: str, articles: tuple[int, ...], day: date = DAY, customer: str = A, second: int = 0,
          variant: str = "champion") -> Impression:
    at = datetime(2026, 12, 2, 12, 0, second, tzinfo=UTC) + timedelta(days=(day - DAY).days)
    return Impression(request_id, customer, 1, variant, "recommendations", day, at, articles)


def sale(article: int, day: date = DAY, customer: str = A, request_id: str | None = None, price: float = 0.02,
         second: int | None = None) -> Sale:
    at = None if second is None else datetime(2026, 12, 2, 12, 0, second, tzinfo=UTC) + timedelta(
        days=(day - DAY).days)
    return Sale(customer, article, day, price, request_id, at)


def test_a_purchase_goes_to_the_latest_impression_that_showed_the_article():
    early, late, other = shown("r1", (5, 6)), shown("r2", (6, 5), DAY + timedelta(days=2)), shown("r3", (7,))
    [result] = attribute([early, late, other], [sale(5, DAY + timedelta(days=3))])
    assert result.impression == late and result.rank == 2 and not result.direct


def test_the_request_id_names_the_impression_even_when_a_later_one_showed_the_article():
    early, late = shown("r1", (5,)), shown("r2", (5,), DAY + timedelta(days=1))
    [result] = attribute([early, late], [sale(5, DAY + timedelta(days=1), request_id="r1")])
    assert result.impression == early and result.rank == 1 and result.direct


def test_a_request_id_that_did_not_show_the_article_falls_back_to_the_rule():
    wrong, right = shown("r1", (9,)), shown("r2", (5,))
    [result] = attribute([wrong, right], [sale(5, request_id="r1")])
    assert result.impression == right and not result.direct


def test_the_window_counts_service_days_from_the_impression():
    imp = shown("r1", (5,))
    inside, edge, before = sale(5, DAY + timedelta(days=6)), sale(5, DAY + timedelta(days=7)), sale(5, DAY - timedelta(
        days=1))
    results = attribute([imp], [inside, edge, before], window_days=7)
    assert [r.impression for r in results] == [imp, None, None]
    assert attribute([imp], [edge], window_days=8)[0].impression == imp


def test_another_customers_impression_or_an_article_not_shown_is_no_attribution():
    results = attribute([shown("r1", (5,), customer=B), shown("r2", (6,))], [sale(5), sale(5, request_id="r1")])
    assert [r.impression for r in results] == [None, None]


def test_a_purchase_received_before_the_impression_on_the_same_day_is_not_caused_by_it():
    imp = shown("r1", (5,), second=30)
    assert attribute([imp], [sale(5, second=10)])[0].impression is None
    assert attribute([imp], [sale(5, second=40)])[0].impression == imp


def test_followed_marks_each_impression_a_purchase_of_a_shown_article_followed():
    one, two, three = shown("r1", (5, 6)), shown("r2", (7,)), shown("r3", (5,), DAY + timedelta(days=1))
    # the purchase of 5 on DAY+1 follows both impressions that showed 5; nothing follows r2
    assert followed([one, two, three], [sale(5, DAY + timedelta(days=1)), sale(8)]) == [True, False, True]
    assert followed([one], []) == [False]


def test_a_direct_link_counts_though_the_service_clock_put_the_impression_after_the_purchase_day():
    """The service's day is the day after the customer's latest purchase: a Buy from a rail shown on day D+1 is
    dated D by default. The request id says where it came from."""
    imp = shown("r1", (5,), DAY + timedelta(days=1))
    [result] = attribute([imp], [sale(5, DAY, request_id="r1")])
    assert result.impression == imp and result.direct
    assert followed([imp], [sale(5, DAY, request_id="r1")]) == [True]
    assert attribute([imp], [sale(5, DAY)])[0].impression is None
