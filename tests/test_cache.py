"""The answer cache: a stale answer is never stored, and what it remembers stays bounded."""

from __future__ import annotations

from hmrec.serving.cache import AnswerCache


def test_an_answer_computed_before_an_invalidation_is_not_stored():
    cache = AnswerCache(size=10)
    stamp = cache.generation("a")
    cache.invalidate("a")  # an event arrives while the answer is computed
    cache.put("a", 12, {"items": [1]}, stamp)
    assert cache.get("a", 12) is None
    cache.put("a", 12, {"items": [2]}, cache.generation("a"))
    assert cache.get("a", 12) == {"items": [2]}


def test_another_customers_event_does_not_refuse_an_answer():
    cache = AnswerCache(size=10)
    stamp = cache.generation("a")
    cache.invalidate("b")
    cache.put("a", 12, {"items": [1]}, stamp)
    assert cache.get("a", 12) == {"items": [1]}


def test_a_clear_refuses_answers_begun_before_it():
    cache = AnswerCache(size=10)
    stamp = cache.generation("a")
    cache.clear()  # a reload
    cache.put("a", 12, {"items": [1]}, stamp)
    assert cache.get("a", 12) is None


def test_invalidations_are_remembered_for_a_bounded_number_of_customers():
    cache = AnswerCache(size=4, remembered=8)
    for i in range(10_000):
        cache.invalidate(f"customer-{i}")
    assert cache.remembered_customers() == 8


def test_a_forgotten_customer_refuses_an_answer_that_may_be_stale():
    cache = AnswerCache(size=4, remembered=2)
    stamp = cache.generation("a")
    for customer in ("a", "b", "c"):  # "a" is forgotten once "c" arrives
        cache.invalidate(customer)
    cache.put("a", 12, {"items": [1]}, stamp)
    assert cache.get("a", 12) is None
    cache.put("a", 12, {"items": [2]}, cache.generation("a"))
    assert cache.get("a", 12) == {"items": [2]}
