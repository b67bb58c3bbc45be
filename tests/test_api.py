"""The HTTP API through TestClient on a real registered bundle with known answers: every endpoint, every error path."""

from __future__ import annotations

import os
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
import serving_support as s
from fastapi.testclient import TestClient

from hmrec.raw.schema import CUSTOMER_ID_PATTERN
from hmrec.serving.app import create_app
from hmrec.serving.schemas import RecommendationResponse
from hmrec.serving.settings import Settings

PATTERN_CUSTOMER = f"String should match pattern '{CUSTOMER_ID_PATTERN}'"
BAD_ARTICLE = "article_id: Value error, must be an article id of 1-10 digits, e.g. '0663713001'"


def ids(indices: list[int]) -> list[str]:
    return [f"{s.ARTICLE_IDS[i]:010d}" for i in indices]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return s.handmade_workdir(tmp_path_factory.mktemp("api"))


@pytest.fixture
def client(workdir, tmp_path):
    settings = Settings(workdir=workdir, events_path=tmp_path / "events.sqlite", admin_token=s.ADMIN_TOKEN,
                        events_token=s.EVENTS_TOKEN)
    with TestClient(create_app(settings), headers=s.EVENTS_AUTH) as client:
        yield client


@pytest.fixture(scope="module")
def empty_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("empty")


@pytest.fixture(scope="module")
def empty_client(empty_dir):
    """A service whose workdir has no champion."""
    with TestClient(create_app(Settings(workdir=empty_dir / "work", events_path=empty_dir / "e.sqlite"))) as client:
        yield client


def recommend(client, customer_id: str, k: int = 12) -> dict:
    response = client.post("/recommendations", json={"customer_id": customer_id, "k": k})
    assert response.status_code == 200, response.text
    return response.json()


# ---- health and readiness -------------------------------------------------------------------------------------

def test_health_and_ready(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready == {"status": "ready", "model_version": 1, "articles": 10, "customers": 6,
                     "data_end": s.DATA_END.isoformat(), "events": "ok", "worker": ready["worker"]}
    assert re.fullmatch(r"[0-9a-f]{16}", ready["worker"]) and str(os.getpid()) not in ready["worker"]


def test_without_champion_the_app_starts_but_is_not_ready(empty_client, empty_dir):
    assert empty_client.get("/health").status_code == 200
    response = empty_client.get("/ready")
    assert response.status_code == 503
    work = empty_dir / "work"
    assert response.json()["detail"] == (  # no absolute path in an answer: the workdir is named by its setting
        "no model is loaded: cannot load the champion: HMREC_WORKDIR does not exist: "
        "run `hmrec pipeline --raw DIR --workdir HMREC_WORKDIR --promote` to train and register a model")
    assert response.json()["status"] == "unavailable"  # the load failed: not "loading" (tests/test_readiness.py)
    assert not work.exists()  # reading never creates the workdir


def test_recommendations_without_model_are_503(empty_client):
    response = empty_client.post("/recommendations", json={"customer_id": s.FREQUENT})
    assert response.status_code == 503
    assert response.json()["detail"].startswith("no model is loaded: cannot load the champion")


# ---- recommendations: known answers ----------------------------------------------------------------------------

def test_warm_customer_gets_own_purchases_most_recent_weight_first(client):
    answer = recommend(client, s.FREQUENT, k=5)
    assert answer["strategy"] == "personalized" and answer["known_customer"] is True
    assert answer["model_version"] == 1
    assert answer["as_of"] == (s.DATA_END + timedelta(days=1)).isoformat()
    items = answer["items"]
    assert len(items) == 5
    # article 0 was bought twice (decayed weights sum above 1); then 3, 2, 1 by recency
    assert [it["article_id"] for it in items[:4]] == ids([0, 3, 2, 1])
    assert {it["reason"] for it in items[:4]} == {"you bought this before"}
    assert items[0]["sources"] == ["repurchase"]
    assert items[0]["name"] == "Strap top" and items[0]["colour"] == "Black"
    assert items[0]["image_url"] == f"/articles/{ids([0])[0]}/image.svg"
    assert items[0]["price"] == pytest.approx(0.03)


def test_known_customer_without_purchases_gets_age_bucket_bestsellers(client):
    answer = recommend(client, s.COLD_AGED, k=5)
    assert answer["strategy"] == "cold_start" and answer["known_customer"] is True
    expected = s.BUCKET1_BESTSELLERS + [a for a in s.GLOBAL_BESTSELLERS if a not in s.BUCKET1_BESTSELLERS]
    assert [it["article_id"] for it in answer["items"]] == ids(expected[:5])
    assert [it["reason"] for it in answer["items"]] == ["popular with your age group"] * 2 + ["popular right now"] * 3
    assert answer["items"][0]["sources"] == ["age_popularity"]
    assert answer["items"][0]["score"] == 3.75  # age_popularity's score: 3 sales in its window + 3 of 4 all-time


def test_every_score_says_what_it_is_and_is_rounded_the_same_way(client):
    answers = {
        "model": recommend(client, s.FREQUENT, k=5)["items"],
        "recent_sales": recommend(client, s.COLD_AGED, k=5)["items"] + client.get("/popular?k=5").json()["items"]
        + client.get("/articles/0108775015/similar?k=5").json()["items"],
        "times_bought": client.get(f"/customers/{s.FREQUENT}/buy-again").json()["items"],
    }
    for kind, items in answers.items():
        assert any(it["score_kind"] == kind for it in items), (kind, items)
        for item in items:
            assert item["score_kind"] == (None if item["score"] is None else kind), item
            assert item["score"] is None or round(item["score"], 6) == item["score"], item


def test_recommendations_answer_exactly_the_schema_they_document(client):
    """The route writes its JSON without FastAPI's second validation: every kind of answer must be the schema's own
    (no extra field, every default written)."""
    for customer_id, include_purchased in ((s.FREQUENT, False), (s.FREQUENT, True), (s.COLD_AGED, False),
                                           ("brand-new_customer-2", False)):
        response = client.post("/recommendations", json={"customer_id": customer_id, "k": 5,
                                                         "include_purchased": include_purchased})
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        answer = response.json()
        assert RecommendationResponse.model_validate(answer).model_dump(mode="json") == answer


def test_unknown_customer_gets_global_bestsellers(client):
    answer = recommend(client, "brand-new_customer-1")
    assert answer["strategy"] == "cold_start" and answer["known_customer"] is False
    assert [it["article_id"] for it in answer["items"]] == ids(s.GLOBAL_BESTSELLERS)
    assert {it["reason"] for it in answer["items"]} == {"popular right now"}


def test_known_customer_of_unknown_age_gets_global_bestsellers(client):
    answer = recommend(client, s.COLD_NO_AGE, k=3)
    assert [it["article_id"] for it in answer["items"]] == ids(s.GLOBAL_BESTSELLERS[:3])
    assert answer["items"][0]["sources"] == ["popularity"]


def test_second_answer_comes_from_the_cache_and_an_event_invalidates_it(client):
    first = recommend(client, s.OCCASIONAL, k=3)
    again = recommend(client, s.OCCASIONAL, k=3)
    assert (first["cached"], again["cached"]) == (False, True)
    assert again["items"] == first["items"]
    client.post("/events/purchases", json={"customer_id": s.OCCASIONAL, "article_id": ids([9])[0]})
    after = recommend(client, s.OCCASIONAL, k=3)
    assert after["cached"] is False
    assert after["items"] != first["items"]
    assert ids([9])[0] not in [it["article_id"] for it in after["items"]]  # just bought: not offered back


# ---- live events ------------------------------------------------------------------------------------------------

def test_event_makes_a_new_customer_warm(client):
    assert recommend(client, "newbie")["strategy"] == "cold_start"
    response = client.post("/events/purchases", json={"customer_id": "newbie", "article_id": "0111586001"})
    assert response.status_code == 201
    assert response.json() == {"customer_id": "newbie", "article_id": "0111586001",
                               "t_dat": (s.DATA_END + timedelta(days=1)).isoformat(),
                               "price": 0.0315, "sales_channel_id": 2,  # never sold: median of the articles median prices
                               "request_id": None, "event_id": None, "duplicate": False}
    answer = recommend(client, "newbie", k=3)
    assert answer["strategy"] == "personalized"
    assert answer["as_of"] == (s.DATA_END + timedelta(days=2)).isoformat()
    # repurchase proposes only the article just bought, which the shop leaves out: bestsellers fill the list
    assert [it["article_id"] for it in answer["items"]] == ids(s.GLOBAL_BESTSELLERS[:3])
    asked = client.post("/recommendations", json={"customer_id": "newbie", "k": 3, "include_purchased": True})
    assert asked.json()["items"][0]["article_id"] == "0111586001"
    assert asked.json()["items"][0]["reason"] == "you bought this before"
    customer = client.get("/customers/newbie").json()
    assert customer["known"] is False
    assert customer["summary"]["purchase_count"] == 1
    assert [p["article_id"] for p in customer["recent_purchases"]] == ["0111586001"]


def test_event_with_its_own_day_moves_the_customers_clock(client):
    day = s.DATA_END + timedelta(days=2)  # the latest day allowed: the service's date + 1
    body = {"customer_id": s.OCCASIONAL, "article_id": 114428026, "price": 0.5, "channel": 1,
            "t_dat": day.isoformat()}
    assert client.post("/events/purchases", json=body).status_code == 201
    answer = recommend(client, s.OCCASIONAL, k=1)
    assert answer["as_of"] == (day + timedelta(days=1)).isoformat()
    assert "0114428026" not in [it["article_id"] for it in recommend(client, s.OCCASIONAL, k=12)["items"]]
    body = {"customer_id": s.OCCASIONAL, "k": 1, "include_purchased": True}  # bought that day: left out unless asked
    assert client.post("/recommendations", json=body).json()["items"][0]["article_id"] == "0114428026"
    customer = client.get(f"/customers/{s.OCCASIONAL}").json()
    assert customer["recent_purchases"][0] | {"image_url": None} == {
        "article_id": "0114428026", "name": "Bikini", "product_type": "Bikini top", "product_group": "Swimwear",
        "colour": "Pink", "index_group": "Ladieswear", "price": 0.5, "image_url": None, "t_dat": day.isoformat(),
        "sales_channel_id": 1}


def test_an_event_takes_the_datas_channel_name_and_the_old_one_as_an_alias(client):
    for name, channel in (("sales_channel_id", 1), ("channel", 2)):
        body = {"customer_id": f"channel-{name}", "article_id": 114428026, name: channel}
        response = client.post("/events/purchases", json=body)
        assert response.status_code == 201 and response.json()["sales_channel_id"] == channel, response.text
    both = {"customer_id": "x", "article_id": "1", "sales_channel_id": 1, "channel": 2}
    assert_error(client.post("/events/purchases", json=both), 422, "channel: Extra inputs are not permitted")
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "alias" in schemas["PurchaseEvent"]["properties"]["sales_channel_id"]["description"]
    assert schemas["Purchase"]["properties"]["price"]["description"].startswith("The price this customer paid")


def test_article_ids_with_and_without_leading_zero_are_the_same(client):
    for spelling in ("0108775015", "108775015", 108775015):
        response = client.post("/events/purchases", json={"customer_id": "zero", "article_id": spelling})
        assert response.status_code == 201 and response.json()["article_id"] == "0108775015"
    assert client.get("/customers/zero").json()["summary"]["purchase_count"] == 3
    assert client.get("/articles/108775015").json() == client.get("/articles/0108775015").json()


def test_event_for_unknown_article_is_404(client):
    response = client.post("/events/purchases", json={"customer_id": "x", "article_id": "0999999999"})
    assert response.status_code == 404
    assert response.json() == {"detail": "article 0999999999 is not in the catalogue of model version 1"}


def test_live_purchase_is_left_out_for_purchased_days_then_offered_again(workdir, tmp_path):
    # live events are dated at most the service's date + 1, so the test leaves purchases out for 1 day, not 7
    settings = Settings(workdir=workdir, events_path=tmp_path / "events.sqlite", purchased_days=1,
                        events_token=s.EVENTS_TOKEN)
    with TestClient(create_app(settings), headers=s.EVENTS_AUTH) as client:
        assert [it["article_id"] for it in recommend(client, s.FREQUENT, k=4)["items"]] == ids([0, 3, 2, 1])
        client.post("/events/purchases", json={"customer_id": s.FREQUENT, "article_id": ids([3])[0]})
        assert [it["article_id"] for it in recommend(client, s.FREQUENT, k=4)["items"]] == ids([0, 2, 1, 7])
        # an event a day later moves the customer's clock: article 3, bought two days before it, may come back
        later = (s.DATA_END + timedelta(days=2)).isoformat()
        body = {"customer_id": s.FREQUENT, "article_id": ids([9])[0], "t_dat": later}
        assert client.post("/events/purchases", json=body).status_code == 201
        assert ids([3])[0] in [it["article_id"] for it in recommend(client, s.FREQUENT, k=4)["items"]]
        assert ids([9])[0] not in [it["article_id"] for it in recommend(client, s.FREQUENT, k=12)["items"]]


def test_purchased_days_zero_offers_everything_back(workdir, tmp_path):
    settings = Settings(workdir=workdir, events_path=tmp_path / "e.sqlite", purchased_days=0, demo=True)
    with TestClient(create_app(settings)) as client:
        client.post("/events/purchases", json={"customer_id": "zero-days", "article_id": ids([5])[0]})
        assert recommend(client, "zero-days", k=1)["items"][0]["article_id"] == ids([5])[0]


def test_buy_again_most_bought_then_most_recent_minus_what_was_just_bought(client):
    answer = client.get(f"/customers/{s.FREQUENT}/buy-again?k=3").json()
    assert [it["article_id"] for it in answer["items"]] == ids([0, 3, 2])
    assert [it["score"] for it in answer["items"]] == [2.0, 1.0, 1.0]
    client.post("/events/purchases", json={"customer_id": s.FREQUENT, "article_id": ids([3])[0]})
    assert [it["article_id"] for it in client.get(f"/customers/{s.FREQUENT}/buy-again").json()["items"]] == \
        ids([0, 2, 1])
    answer = client.get("/customers/someone-new/buy-again").json()
    assert answer == {"customer_id": "someone-new", "model_version": 1, "variant": "champion", "items": [], "degraded": False,
                      "as_of": (s.DATA_END + timedelta(days=1)).isoformat(), "request_id": answer["request_id"]}


def test_buy_again_k_out_of_range(client):
    response = client.get(f"/customers/{s.FREQUENT}/buy-again?k=0")
    assert response.status_code == 422
    assert response.json()["detail"] == "k: Input should be greater than or equal to 1"


def test_purchase_count_is_the_true_total_though_history_is_cut(tmp_path):
    workdir = tmp_path / "work"
    s.register(workdir, s.write_handmade_bundle(tmp_path / "bundle", history_tail=2))
    settings = Settings(workdir=workdir, events_path=tmp_path / "e.sqlite", events_token=s.EVENTS_TOKEN)
    with TestClient(create_app(settings), headers=s.EVENTS_AUTH) as client:
        customer = client.get(f"/customers/{s.FREQUENT}").json()
        assert customer["summary"]["purchase_count"] == 5
        assert customer["summary"]["average_price"] == 0.034  # of all 5 purchases, not of the 2 served
        assert [p["article_id"] for p in customer["recent_purchases"]] == ids([3, 2])

        def bought() -> dict[str, float]:
            answer = client.get(f"/customers/{s.FREQUENT}/buy-again").json()
            return {it["article_id"]: it["score"] for it in answer["items"]}

        # article 0, bought twice before the 2 served purchases, still counts twice and leads the rail
        assert bought() == {ids([0])[0]: 2.0, ids([3])[0]: 1.0, ids([2])[0]: 1.0}
        client.post("/events/purchases", json={"customer_id": s.FREQUENT, "article_id": ids([9])[0], "price": 0.1})
        after = client.get(f"/customers/{s.FREQUENT}").json()["summary"]
        assert after["purchase_count"] == 6 and after["average_price"] == 0.045  # (0.170 + 0.1) / 6
        assert bought()[ids([0])[0]] == 2.0  # buying something else never lowers a count


# ---- customers, articles, popular -----------------------------------------------------------------------------

def test_customer_profile_summary_and_recent_purchases(client):
    customer = client.get(f"/customers/{s.FREQUENT}").json()
    assert customer["known"] is True
    assert customer["profile"] == {"age": 23, "age_bucket": "16-24", "club_member_status": "ACTIVE",
                                   "fashion_news_frequency": "Regularly", "FN": 1, "Active": 1}
    assert customer["summary"] == {"purchase_count": 5, "last_purchase": s.DATA_END.isoformat(),
                                   "average_price": 0.034, "favourite_index_group": "Ladieswear"}
    assert [p["article_id"] for p in customer["recent_purchases"]] == ids([3, 2, 1, 0, 0])


def test_unknown_customer_is_a_new_customer(client):
    customer = client.get("/customers/someone-new").json()
    assert customer["known"] is False and customer["recent_purchases"] == []
    assert customer["summary"] == {"purchase_count": 0, "last_purchase": None, "average_price": None,
                                   "favourite_index_group": None}


def test_article_detail(client):
    assert client.get("/articles/111586001").json() == {
        "article_id": "0111586001", "name": "Scarf <b>bold</b>", "product_type": "Scarf",
        "product_group": "Accessories", "colour": "Red", "index_group": "Ladieswear", "price": None,
        "image_url": "/articles/0111586001/image.svg", "product_code": 111586, "perceived_colour": "Red",
        "department": "Jersey Basic", "description": "Description of article 5"}


def test_similar_falls_back_to_same_product_type_by_sales(client):
    answer = client.get("/articles/0108775015/similar?k=5").json()
    assert answer["method"] == "same_product_type"
    assert [it["article_id"] for it in answer["items"]] == ids([7, 1])  # type 253; 7 sold 3 times, 1 once


def test_popular_by_age_and_overall(client):
    by_age = client.get("/popular?age=31&k=2").json()
    assert by_age["age_bucket"] == "25-34"
    assert [it["article_id"] for it in by_age["items"]] == ids(s.BUCKET1_BESTSELLERS)
    overall = client.get("/popular").json()
    assert overall["age_bucket"] is None
    assert [it["article_id"] for it in overall["items"]] == ids(s.GLOBAL_BESTSELLERS)


def test_svg_picture_uses_the_articles_colour(client):
    response = client.get("/articles/111586001/image.svg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert 'fill="#c8323a"' in response.text  # Red


def test_real_images_folder_is_served_when_configured(workdir, tmp_path):
    folder = tmp_path / "images" / "010"  # the real layout: first 3 characters of the 10-digit id
    folder.mkdir(parents=True)
    (folder / "0108775015.jpg").write_bytes(b"\xff\xd8\xff\xe0fake-jpeg")
    settings = Settings(workdir=workdir, events_path=tmp_path / "e.sqlite", images_dir=tmp_path / "images")
    with TestClient(create_app(settings)) as client:
        card = client.get("/articles/0108775015").json()
        assert card["image_url"] == "/images/010/0108775015.jpg"
        assert client.get(card["image_url"]).content == b"\xff\xd8\xff\xe0fake-jpeg"
        assert client.get("/articles/0108775044").json()["image_url"] == "/articles/0108775044/image.svg"


def test_metrics_count_requests_cold_start_share_and_version(client):
    recommend(client, "cold-one")
    recommend(client, s.FREQUENT)
    text = client.get("/metrics").text
    assert "hmrec_model_version 1.0" in text
    assert "hmrec_cold_start_share 0.5" in text
    assert 'hmrec_requests_total{method="POST",route="/recommendations",status="200"} 2.0' in text
    assert 'hmrec_request_latency_seconds_count{route="/recommendations"} 2.0' in text


def test_demo_page_lists_sample_customers(client):
    page = client.get("/")
    assert page.status_code == 200
    assert f'data-customer="{s.FREQUENT}"' in page.text  # 5 purchases: the most
    assert f'data-customer="{s.COLD_AGED}"' in page.text  # the first customer without purchases
    assert "<script src=\"/static/app.js\"></script>" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.text.startswith("<svg")


def test_docs_reference_no_external_host_and_their_assets_answer(client):
    import re

    page = client.get("/docs")
    assert page.status_code == 200
    assert re.findall(r"(?:https?:)?//[a-z0-9.-]+", page.text) == []  # nothing from a CDN
    assets = re.findall(r"(?:href|src)=['\"]([^'\"]+)['\"]", page.text)
    assert {"/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css", "/favicon.ico"} <= set(assets)
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert client.get("/redoc").status_code == 404  # ReDoc would need a CDN


def test_openapi_documents_every_resource(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommendations", "/customers/{customer_id}", "/articles/{article_id}", "/articles/{article_id}/similar",
            "/popular", "/events/purchases", "/admin/reload", "/health", "/ready", "/metrics"} <= set(paths)


# ---- client mistakes: one test per error path ------------------------------------------------------------------

def assert_error(response, status: int, detail: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["detail"] == detail


def test_malformed_json(client):
    response = client.post("/recommendations", content=b'{"customer_id": "x", ',
                           headers={"content-type": "application/json"})
    assert_error(response, 422, "body: invalid JSON: Expecting property name enclosed in double quotes")


def test_body_not_an_object(client):
    response = client.post("/recommendations", json=["x"])
    assert_error(response, 422, "body: Input should be a valid dictionary or object to extract fields from")


def test_missing_customer_id(client):
    assert_error(client.post("/recommendations", json={"k": 3}), 422, "customer_id: Field required")


def test_customer_id_with_bad_characters(client):
    response = client.post("/recommendations", json={"customer_id": "bad\tid"})
    assert_error(response, 422, f"customer_id: {PATTERN_CUSTOMER}")


def test_customer_id_too_long(client):
    response = client.post("/recommendations", json={"customer_id": "a" * 65})
    assert_error(response, 422, f"customer_id: {PATTERN_CUSTOMER}")


def test_customer_id_of_wrong_type(client):
    response = client.post("/recommendations", json={"customer_id": 12345})
    assert_error(response, 422, "customer_id: Input should be a valid string")


@pytest.mark.parametrize(("k", "detail"), [
    (0, "k: Input should be greater than or equal to 1"),
    (101, "k: Input should be less than or equal to 100"),
    ("many", "k: Input should be a valid integer"),
    (2.5, "k: Input should be a valid integer"),
    ("12", "k: Input should be a valid integer"),  # strict: no coercion from strings or booleans
    (True, "k: Input should be a valid integer"),
])
def test_k_out_of_range_or_wrong_type(client, k, detail):
    assert_error(client.post("/recommendations", json={"customer_id": "x", "k": k}), 422, detail)


def test_integer_valued_numbers_are_integers(client):
    """JSON Schema's integer admits 12.0: k, an article id and a channel may come so (2.5 stays refused, above)."""
    answer = client.post("/recommendations", json={"customer_id": s.FREQUENT, "k": 3.0})
    assert answer.status_code == 200 and len(answer.json()["items"]) == 3
    stored = client.post("/events/purchases", json={"customer_id": "floats", "article_id": float(ids([4])[0]),
                                                     "channel": 1.0})
    assert stored.status_code == 201, stored.text
    assert (stored.json()["article_id"], stored.json()["sales_channel_id"]) == (ids([4])[0], 1)


def test_every_answer_has_the_security_headers_and_head_works_on_get_routes(client):
    for response in (client.get("/health"), client.get("/"), client.get("/docs"), client.get("/static/app.js"),
                     client.post("/recommendations", json={"customer_id": "x", "k": 0}), client.get("/nowhere")):
        assert response.headers["x-content-type-options"] == "nosniff"
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self' 'sha256-" in policy
        assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    for path in ("/health", "/ready", f"/customers/{s.FREQUENT}", "/popular", "/"):
        get, head = client.get(path), client.head(path)
        assert (head.status_code, head.content, head.headers["content-type"]) == (
            200, b"", get.headers["content-type"]), path
    assert client.head("/recommendations").status_code == 405  # a POST route stays POST only


def test_answers_name_no_absolute_path(tmp_path):
    from hmrec.serving.edges import without_paths

    work = tmp_path / "work"
    assert without_paths(f"{work}/models/3/manifest.json is bad; see /etc/x.conf, sqlite:///{work}/mlflow.db or "
                         f"http://host:5000/api and ./rel/path; from {work}: x", work) == (
        "HMREC_WORKDIR/models/3/manifest.json is bad; see x.conf, sqlite:///HMREC_WORKDIR/mlflow.db or "
        "http://host:5000/api and ./rel/path; from HMREC_WORKDIR: x")
    assert without_paths("cannot load the champion from work: x", Path("work")) == (
        "cannot load the champion from HMREC_WORKDIR: x")


def test_unexpected_field(client):
    response = client.post("/recommendations", json={"customer_id": "x", "n": 3})
    assert_error(response, 422, "n: Extra inputs are not permitted")


def test_oversized_body(client):
    response = client.post("/recommendations", content=b"{" + b" " * 70_000 + b"}",
                           headers={"content-type": "application/json"})
    assert_error(response, 413, "body: request body is 70002 bytes; the limit is 65536 bytes "
                                "(setting HMREC_MAX_BODY_BYTES)")


def test_oversized_body_without_content_length(client):
    def chunks():
        for _ in range(20):
            yield b" " * 4096

    response = client.post("/events/purchases", content=chunks(), headers={"content-type": "application/json"})
    assert_error(response, 413, "body: request body is over the limit of 65536 bytes (setting HMREC_MAX_BODY_BYTES)")


@pytest.mark.parametrize("article_id", ["12ab", "", "12345678901", True, 1.5, -3, None])
def test_event_with_malformed_article_id(client, article_id):
    response = client.post("/events/purchases", json={"customer_id": "x", "article_id": article_id})
    assert_error(response, 422, BAD_ARTICLE)


def test_event_with_bad_channel(client):
    response = client.post("/events/purchases", json={"customer_id": "x", "article_id": "1", "channel": 3})
    assert_error(response, 422, "channel: Input should be 1 or 2")


def test_event_with_negative_price(client):
    response = client.post("/events/purchases", json={"customer_id": "x", "article_id": "1", "price": -1})
    assert_error(response, 422, "price: Input should be greater than or equal to 0")


def test_event_with_price_as_a_string(client):
    response = client.post("/events/purchases", json={"customer_id": "x", "article_id": "1", "price": "0.5"})
    assert_error(response, 422, "price: Input should be a valid number")


def test_event_with_boolean_channel(client):
    response = client.post("/events/purchases", json={"customer_id": "x", "article_id": "1", "channel": True})
    assert_error(response, 422, "channel: Value error, must be 1 or 2, not a boolean")


@pytest.mark.parametrize("day", ["9999-12-31", "2021-03-13", "2021-02-07", "0001-01-01"])
def test_event_dated_outside_the_served_days(client, day):
    body = {"customer_id": "x", "article_id": s.ARTICLE_IDS[0], "t_dat": day}
    response = client.post("/events/purchases", json=body)
    # the data runs 2021-02-08 .. 2021-03-10: the service's date is 2021-03-11, so 2021-03-12 is the last day
    assert_error(response, 422, f"t_dat: must be a day from 2021-02-08 (the data's first day) to 2021-03-12 (the "
                                f"service's date + 1 day); got {day}")
    assert response.json()["errors"] == [{"field": "t_dat", "location": "body", "message": response.json()["detail"]
                                          [len("t_dat: "):], "type": "value_error"}]


def test_the_services_date_setting_moves_answers_and_event_days(workdir, tmp_path):
    """HMREC_TODAY (a simulation's clock): answers as of that day, events dated up to the day after; an earlier
    date than the data's end + 1 changes nothing."""
    today = s.DATA_END + timedelta(days=20)
    settings = Settings(workdir=workdir, events_path=tmp_path / "events.sqlite", events_token=s.EVENTS_TOKEN,
                        today=today)
    with TestClient(create_app(settings), headers=s.EVENTS_AUTH) as client:
        for customer in (s.FREQUENT, s.COLD_AGED):
            assert recommend(client, customer)["as_of"] == today.isoformat()
        last = today + timedelta(days=1)
        bought = {"customer_id": s.OCCASIONAL, "article_id": s.ARTICLE_IDS[0], "t_dat": last.isoformat()}
        assert client.post("/events/purchases", json=bought).status_code == 201
        assert recommend(client, s.OCCASIONAL)["as_of"] == (last + timedelta(days=1)).isoformat()
        late = {**bought, "t_dat": (last + timedelta(days=1)).isoformat()}
        assert_error(client.post("/events/purchases", json=late), 422,
                     f"t_dat: must be a day from 2021-02-08 (the data's first day) to {last} (the service's date + "
                     f"1 day); got {late['t_dat']}")
    past = Settings(workdir=workdir, events_path=tmp_path / "past.sqlite", today=s.DATA_END - timedelta(days=30))
    with TestClient(create_app(past)) as client:
        assert recommend(client, s.FREQUENT)["as_of"] == (s.DATA_END + timedelta(days=1)).isoformat()


def test_body_not_utf8(client):
    response = client.post("/recommendations", content=b'{"customer_id": "\xff\xfe"}',
                           headers={"content-type": "application/json"})
    assert_error(response, 422, "body: invalid JSON: cannot be decoded: 'utf-8' codec can't decode byte 0xff in "
                                "position 17: invalid start byte")


def test_body_nested_too_deeply(client):
    response = client.post("/recommendations", content=b"[" * 20_000 + b"]" * 20_000,
                           headers={"content-type": "application/json"})
    assert_error(response, 422, "body: invalid JSON: nested too deeply")


def test_event_with_bad_date(client):
    response = client.post("/events/purchases", json={"customer_id": "x", "article_id": "1", "t_dat": "yesterday"})
    assert_error(response, 422, "t_dat: Input should be a valid date or datetime, input is too short")


def test_customer_path_with_bad_characters(client):
    assert_error(client.get("/customers/a%01b"), 422, f"customer_id: {PATTERN_CUSTOMER}")


def test_article_path_not_digits(client):
    assert_error(client.get("/articles/abc"), 422, "article_id: String should match pattern '^[0-9]{1,10}$'")


def test_unknown_article(client):
    assert_error(client.get("/articles/999"), 404, "article 0000000999 is not in the catalogue of model version 1")


def test_similar_of_unknown_article(client):
    assert_error(client.get("/articles/999/similar"), 404,
                 "article 0000000999 is not in the catalogue of model version 1")


def test_similar_k_out_of_range(client):
    assert_error(client.get("/articles/108775015/similar?k=0"), 422, "k: Input should be greater than or equal to 1")


def test_popular_age_not_a_number(client):
    assert_error(client.get("/popular?age=old"), 422,
                 "age: Input should be a valid integer, unable to parse string as an integer")


def test_reload_without_token(client):
    request = client.build_request("POST", "/admin/reload")
    del request.headers["Authorization"]  # the fixture's client sends the events token with every request
    assert_error(client.send(request), 401, "missing bearer token in the Authorization header")


def test_reload_with_wrong_token(client):
    response = client.post("/admin/reload", headers={"Authorization": "Bearer nope"})
    assert_error(response, 403, "wrong admin token")


def test_reload_when_no_token_is_configured(empty_client):
    response = empty_client.post("/admin/reload", headers={"Authorization": "Bearer anything"})
    assert_error(response, 403, "admin endpoints are disabled: HMREC_ADMIN_TOKEN is not set")


def test_no_client_mistake_is_a_500(client):
    bodies = [b"", b"null", b"[]", b"{}", b'{"customer_id": null}', b'{"customer_id": {"a": 1}}',
              b'{"customer_id": "x", "k": null}', b'{"customer_id": "x", "k": 1e309}', b"\xff\xfe",
              b'{"customer_id": "\\u0000"}', b'{"customer_id": "x", "article_id": "1", "price": "NaN"}']
    for path in ("/recommendations", "/events/purchases", "/admin/reload"):
        for body in bodies:
            response = client.post(path, content=body, headers={"content-type": "application/json"})
            assert 400 <= response.status_code < 500, (path, body, response.text)
    for path in ("/customers/%00", "/articles/0/similar?k=x", "/articles/" + "9" * 11, "/popular?k=1000",
                 "/customers/" + "x" * 200):
        assert 400 <= client.get(path).status_code < 500, path


# ---- stored data: whatever the events file holds, a customer's endpoints answer -------------------------------

HOSTILE_ROWS = [  # (t_dat, article_id, price, sales_channel_id), all for one customer, written past the API
    ("9999-12-31", s.ARTICLE_IDS[1], 0.01, 2), ("0001-01-01", s.ARTICLE_IDS[1], 0.01, 2),
    ("2021-03-09", 999_999_999_999, 0.01, 2), ("2021-03-09", 2**63 - 1, 0.01, 2), ("2021-03-09", "abc", 0.01, 2),
    ("2021-03-09", s.ARTICLE_IDS[1], 1e300, 2), ("2021-03-09", s.ARTICLE_IDS[1], float("inf"), 2),
    ("2021-03-09", s.ARTICLE_IDS[1], -5.0, 2), ("2021-03-09", s.ARTICLE_IDS[1], "cheap", 2),
    ("2021-03-09", s.ARTICLE_IDS[1], 0.01, 99), ("yesterday", s.ARTICLE_IDS[1], 0.01, 2),
    (20219999, s.ARTICLE_IDS[1], 0.01, 2), ("2021-03-09T25:00", s.ARTICLE_IDS[1], 0.01, 2),
]


def test_hostile_stored_events_never_break_a_customer(workdir, tmp_path):
    import sqlite3

    from hmrec.serving.events.sqlite import SqliteEventStore

    events = tmp_path / "events.sqlite"
    SqliteEventStore(events).close()  # the tables
    good = ("2021-03-09", s.ARTICLE_IDS[9], 0.02, 2)
    with sqlite3.connect(events) as connection:
        connection.executemany("INSERT INTO purchases (t_dat, customer_id, article_id, price, sales_channel_id) "
                               "VALUES (?, 'victim', ?, ?, ?)", [*HOSTILE_ROWS, good])
    with TestClient(create_app(Settings(workdir=workdir, events_path=events))) as client:
        customer = client.get("/customers/victim")
        assert customer.status_code == 200, customer.text
        assert [(p["t_dat"], p["article_id"]) for p in customer.json()["recent_purchases"]] == \
            [("2021-03-09", f"{s.ARTICLE_IDS[9]:010d}")]  # only the one usable event
        body = {"customer_id": "victim", "k": 3, "include_purchased": True}  # the good event was bought just now
        answer = client.post("/recommendations", json=body).json()
        assert (answer["strategy"], answer["as_of"]) == ("personalized", "2021-03-11")
        assert answer["items"][0]["article_id"] == f"{s.ARTICLE_IDS[9]:010d}"


# ---- batching: concurrent requests answered together give the answers each would get alone ----------------------

def test_batched_answers_equal_single_answers(workdir, tmp_path):
    import asyncio

    from hmrec.serving.events import Purchase, SqliteEventStore
    from hmrec.serving.model_holder import champion_loader
    from hmrec.serving.services import build_services

    store = SqliteEventStore(tmp_path / "events.sqlite")
    # a customer whose clock is ahead of everyone else's: batched apart (one Query has one as_of)
    store.add(Purchase("ahead", s.ARTICLE_IDS[9], s.DATA_END + timedelta(days=2), 0.02, 2))
    workers = {}
    for batch_max in (1, 64):
        settings = Settings(workdir=workdir, events_path=tmp_path / "events.sqlite", batch_max=batch_max, cache_size=0)
        workers[batch_max] = build_services(settings, store, champion_loader(settings))
        workers[batch_max].holder.reload()
    batcher = workers[64].recommendations.batcher
    answer_batch, sizes = batcher.answerer, []
    batcher.answerer = lambda model, asks: sizes.append(len(asks)) or answer_batch(model, asks)
    asked = [s.FREQUENT, s.OCCASIONAL, s.BUYER_31, s.BUYER_33, "ahead"] * 8
    alone = [asyncio.run(workers[1].recommendations.recommend_async(c, 4))["items"] for c in asked]  # batch_max 1: one at a time

    async def at_once() -> list[dict]:
        return await asyncio.gather(*(workers[64].recommendations.recommend_async(c, 4) for c in asked))

    together = [answer["items"] for answer in asyncio.run(at_once())]
    assert max(sizes) > 1 and sum(sizes) == len(asked)  # they were batched
    assert together == alone
    assert alone[4][0]["article_id"] == f"{s.ARTICLE_IDS[7]:010d}"  # its own purchase (9) left out: bestsellers
    for services in workers.values():
        services.close()


# ---- back-pressure and the write rate limit ---------------------------------------------------------------------

def test_events_beyond_a_clients_rate_are_refused_with_429(workdir, tmp_path):
    settings = Settings(workdir=workdir, events_path=tmp_path / "e.sqlite", events_per_client_per_second=0.01,
                        events_burst=3, events_token=s.EVENTS_TOKEN)
    with TestClient(create_app(settings), headers=s.EVENTS_AUTH) as client:
        body = {"customer_id": "flood", "article_id": ids([1])[0]}
        assert [client.post("/events/purchases", json=body).status_code for _ in range(3)] == [201, 201, 201]
        refused = client.post("/events/purchases", json=body)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert refused.json() == {"detail": "more than 0.01 events per second from this client "
                                  f"(HMREC_EVENTS_PER_CLIENT_PER_SECOND); retry after {refused.headers['Retry-After']} s"}
        assert client.get("/customers/flood").json()["summary"]["purchase_count"] == 3  # the refused one not stored
        assert client.post("/recommendations", json={"customer_id": "flood"}).status_code == 200  # reads unlimited
        assert 'hmrec_requests_refused_total{reason="rate"} 1.0' in client.get("/metrics").text


def test_requests_beyond_the_in_flight_limit_get_a_fast_503():
    """Two requests held in a handler fill a limit of 2: the third is refused at once, /health still answers, and
    once they finish the next is taken."""
    import asyncio

    import httpx
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from hmrec.serving.limits import InFlightLimitMiddleware

    release, entered, refused = asyncio.Event(), [], []

    async def slow(request):
        entered.append(1)
        await release.wait()
        return PlainTextResponse("done")

    async def health(request):
        return PlainTextResponse("ok")

    app = InFlightLimitMiddleware(Starlette(routes=[Route("/slow", slow), Route("/health", health)]), 2,
                                  refused.append)

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            held = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
            while len(entered) < 2:
                await asyncio.sleep(0.01)
            busy = await client.get("/slow")
            assert (busy.status_code, busy.headers["retry-after"]) == (503, "1")
            assert busy.json()["detail"] == ("this worker is answering 2 requests already (HMREC_MAX_IN_FLIGHT); "
                                             "retry after 1 s")
            assert (await client.get("/health")).status_code == 200
            release.set()
            assert [(await task).status_code for task in held] == [200, 200]
            assert (await client.get("/slow")).status_code == 200

    asyncio.run(scenario())
    assert refused == ["busy"]


def _burst(max_wait: float, max_event_wait: float, method: str, path: str, setting: str) -> list[int]:
    """Statuses of a burst of 30 requests `method path` to a worker that answers one request per 10 ms (after 60
    one at a time, so that it knows its time per answer); a refusal must name `setting` and its limit."""
    import asyncio

    import httpx
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from hmrec.serving.limits import EVENTS_PATH, InFlightLimitMiddleware

    one_at_a_time = asyncio.Lock()

    async def serial(request):
        async with one_at_a_time:
            await asyncio.sleep(0.01)
        return PlainTextResponse("done")

    app = InFlightLimitMiddleware(Starlette(routes=[Route(path, serial, methods=[method])]), 256, lambda why: None,
                                  max_wait=max_wait, max_event_wait=max_event_wait)
    limit = max_event_wait if path == EVENTS_PATH else max_wait

    async def scenario() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            for _ in range(60):
                assert (await client.request(method, path)).status_code == 200
            responses = await asyncio.gather(*(client.request(method, path) for _ in range(30)))
        for response in responses:
            if response.status_code == 503:
                assert re.fullmatch(rf"this worker's queue would take about \d+ ms \(over {setting}, "
                                    rf"{1000 * limit:g}\); retry after 1 s", response.json()["detail"])
        return [r.status_code for r in responses]

    return asyncio.run(scenario())


def test_a_worker_behind_refuses_what_it_could_not_answer_in_time():
    """A worker answering one request per 10 ms with a 100-ms wait limit: of a burst of 30, about 11 are let in
    (8 always, then while the requests in flight x 10 ms stay within 100 ms) and the rest refused at once."""
    statuses = _burst(0.1, 0.0, "GET", "/serial", "HMREC_MAX_WAIT_MS")
    assert 8 <= statuses.count(200) <= 13 and statuses.count(503) == 30 - statuses.count(200)
    assert _burst(0.0, 0.0, "GET", "/serial", "HMREC_MAX_WAIT_MS") == [200] * 30  # off: the in-flight count alone


def test_live_events_are_shed_before_reads():
    """Live events have their own wait limit: with 50 ms for them and none for reads, a burst of events is cut
    to the 8 always let in (8 in flight x 10 ms is over 50 ms) while the same burst of reads is answered whole;
    the event limit leaves reads alone and the read limit leaves events alone."""
    events = _burst(0.0, 0.05, "POST", "/events/purchases", "HMREC_MAX_EVENT_WAIT_MS")
    assert 8 <= events.count(200) <= 9 and events.count(503) == 30 - events.count(200)
    assert _burst(0.0, 0.05, "GET", "/serial", "HMREC_MAX_WAIT_MS") == [200] * 30
    assert _burst(0.05, 0.0, "POST", "/events/purchases", "HMREC_MAX_EVENT_WAIT_MS") == [200] * 30


def test_the_in_flight_limit_leaves_room_for_a_batch(tmp_path):
    with pytest.raises(ValueError, match=r"HMREC_MAX_IN_FLIGHT \(8\) must be at least HMREC_BATCH_MAX \(64\)"):
        Settings(workdir=tmp_path, max_in_flight=8)


# ---- impressions and where purchases came from ------------------------------------------------------------

def test_every_answer_has_its_own_request_id_and_impression_and_a_retried_buy_counts_once(workdir, tmp_path):
    from hmrec.serving.events import open_event_store

    settings = Settings(workdir=workdir, events_path=tmp_path / "events.sqlite", events_token=s.EVENTS_TOKEN)
    store = open_event_store(settings.events_db)
    with TestClient(create_app(settings), headers=s.EVENTS_AUTH) as client:
        answers = [client.post("/recommendations", json={"customer_id": s.FREQUENT, "k": 3}).json() for _ in "ab"]
        assert answers[1]["cached"] and answers[0]["request_id"] != answers[1]["request_id"]
        again = client.get(f"/customers/{s.FREQUENT}/buy-again?k=2").json()
        similar = client.get(f"/articles/108775015/similar?k=2&customer_id={s.FREQUENT}").json()
        bought = answers[1]["items"][0]["article_id"]
        body = {"customer_id": s.FREQUENT, "article_id": bought, "request_id": answers[1]["request_id"],
                "client_event_id": "buy-1"}
        first, retried = client.post("/events/purchases", json=body), client.post("/events/purchases", json=body)
        assert (first.status_code, retried.status_code) == (201, 200)
        assert (first.json()["duplicate"], retried.json() | {"duplicate": False}) == (False, first.json())
        deadline = time.monotonic() + 3  # the writer flushes every second
        while store.impression_count() < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "hmrec_impressions_written_total 4.0" in client.get("/metrics").text
    stored = {i.request_id: i for i in store.impressions()}
    assert [stored[a["request_id"]].surface for a in (*answers, again, similar)] == \
        ["recommendations", "recommendations", "buy_again", "similar"]
    for answer in (*answers, again, similar):
        assert stored[answer["request_id"]].articles == tuple(int(it["article_id"]) for it in answer["items"])
    assert stored[answers[0]["request_id"]].service_day.isoformat() == answers[0]["as_of"]
    assert [(x.request_id, x.article_id) for x in store.sales()] == [(answers[1]["request_id"], int(bought))]
