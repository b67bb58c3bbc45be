"""The demo page in a real browser: Debian's Chromium driven by Playwright against a live `hmrec serve`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest
import serving_support as s

from hmrec.support.browser import CHROMIUM, CHROMIUM_ARGS, wait_until

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`make setup` does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def pipeline_server(pipeline_run, tmp_path_factory):
    """The model the real pipeline trained and promoted on the tiny sample (every source, two-tower included)."""
    root = tmp_path_factory.mktemp("browser")
    with s.Server(pipeline_run.workdir, root / "events.sqlite", root / "server.log", demo=True) as server:
        yield server


@pytest.fixture(scope="module")
def handmade_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-handmade")
    with s.Server(s.handmade_workdir(root), root / "events.sqlite", root / "server.log", demo=True) as server:
        yield server


def product_ids(page, grid: str) -> list[str]:
    return page.eval_on_selector_all(f"#{grid} .product", "nodes => nodes.map(n => n.dataset.articleId)")


def test_choose_customer_buy_and_browse_similar(browser, pipeline_server, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(pipeline_server.url + "/")
    assert "hmrec" in page.title()

    page.click("button.sample[data-kind=frequent]")
    wait_until(page, "document.querySelectorAll('#recs .product').length === 12")
    assert page.locator("#history .product").count() >= 1
    assert page.locator("#strategy").get_attribute("data-strategy") == "personalized"
    assert "Purchases" in page.locator("#profile").inner_text()
    assert all(page.locator("#recs .product .reason").all_inner_texts())
    # the page does not offer again below what the Buy again rail above already shows
    assert page.locator("#buy-again .product").count() >= 1
    assert not set(product_ids(page, "recs")) & set(product_ids(page, "buy-again"))
    assert_titles_fit_their_cards(page)

    page.locator("#recs .product img").first.click()
    page.wait_for_selector("#similar-section:not(.hidden) #similar .product")
    assert page.locator("#similar .product").count() >= 1
    assert page.locator("#similar-method").inner_text() == "(by style vectors)"

    # a new customer gets bestsellers; one purchase makes them warm and changes what they are shown
    page.click("button.sample[data-kind=new]")
    wait_until(page, "document.querySelector('#strategy').dataset.strategy === 'cold_start'")
    assert page.locator("#recs .product").count() == 12
    assert page.locator("#history .empty").inner_text() == "No purchases yet."
    before = product_ids(page, "recs")
    first_name = page.locator("#recs .product .name").first.inner_text()
    assert page.locator("#toast").is_hidden()
    page.locator("#recs .product").first.locator("button.buy").click()
    wait_until(page, "document.querySelector('#strategy').dataset.strategy === 'personalized'")
    page.wait_for_selector("#toast:not(.hidden)")
    assert page.locator("#toast").inner_text() == f"Bought {first_name}: it is now in your recent purchases."
    assert product_ids(page, "history") == [before[0]]
    assert page.locator("#recs .product").count() == 12
    assert product_ids(page, "recs") != before

    shot = tmp_path / "demo.png"
    frequent = page.locator("button.sample[data-kind=frequent]").get_attribute("data-customer")
    page.locator("button.sample[data-kind=frequent]").click()
    wait_until(page, "id => document.querySelector('#customer-id').textContent === id", arg=frequent)
    wait_until(page, "[...document.querySelectorAll('#recs img')].every(i => i.complete && i.naturalWidth)")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("HMREC_DEMO_SCREENSHOT"):  # set once to refresh docs/demo.png for the README
        shutil.copy(shot, os.environ["HMREC_DEMO_SCREENSHOT"])
    assert errors == []
    page.close()


def test_data_text_is_shown_as_text_never_as_markup(browser, handmade_server):
    """An article named 'Scarf <b>bold</b>' must show those characters, not a bold element."""
    httpx.post(f"{handmade_server.url}/events/purchases", json={"customer_id": "xss-check", "article_id": "111586001"})
    page = browser.new_page()
    page.goto(handmade_server.url + "/")
    page.fill("#customer-input", "xss-check")
    page.click("#search button")
    page.wait_for_selector("#history .product")
    card = page.locator("#history .product").first
    assert card.locator(".name").inner_text() == "Scarf <b>bold</b>"
    assert card.locator("b").count() == 0
    assert page.locator("#customer-id").inner_text() == "xss-check (new customer)"
    page.close()


def assert_titles_fit_their_cards(page) -> None:
    """Every card's title stays inside its card, on at most two lines, and its tooltip holds the whole title."""
    boxes = page.eval_on_selector_all(".product .name", """nodes => nodes.map(n => {
        const card = n.closest('.product').getBoundingClientRect(), box = n.getBoundingClientRect();
        return {text: n.textContent, title: n.title, inside: box.left >= card.left && box.right <= card.right,
                lines: box.height / parseFloat(getComputedStyle(n).lineHeight)}; })""")
    assert boxes
    for box in boxes:
        assert box["inside"] and box["lines"] <= 2.05 and box["title"] == box["text"], box


@pytest.mark.parametrize(("typed", "said"), [
    ("", "Type a customer id first, or pick one of the samples."),
    ("abc/def", "A customer id cannot contain a slash (/)."),
    ("a" * 5000, "A customer id has at most 64 characters; this one has 5000."),
    ("not valid!", 'A customer id has only letters, digits, - and _; remove spaces, "!".'),
])
def test_a_bad_customer_id_is_explained_in_shopper_words(browser, handmade_server, typed, said):
    page = browser.new_page()
    page.goto(handmade_server.url + "/")
    page.fill("#customer-input", typed)
    page.click("#search button")
    page.wait_for_selector("#error:not(.hidden)")
    assert page.locator("#error").inner_text() == said
    assert page.locator("#customer").is_hidden()
    page.close()


def watch_failures(page) -> list[str]:
    """Every response of 400 or more, every page error and whatever the Content-Security-Policy refused (Chromium
    says so on the console), as they happen."""
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.on("console", lambda m: failures.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return failures


def test_customer_in_the_url_buy_again_rail_true_count_prices_and_favicon(browser, handmade_server):
    page = browser.new_page()
    failures = watch_failures(page)
    page.goto(handmade_server.url + "/")
    page.click("button.sample[data-kind=frequent]")
    wait_until(page, "document.querySelectorAll('#buy-again .product').length === 4")
    assert page.url == f"{handmade_server.url}/?customer={s.FREQUENT}"
    assert product_ids(page, "buy-again") == [f"{s.ARTICLE_IDS[i]:010d}" for i in (0, 3, 2, 1)]
    assert page.locator("#buy-again .product .date").first.inner_text() == "bought 2 times"
    # one price per card, labelled: what this customer paid in their purchases, the catalogue's price elsewhere
    assert page.locator(".product").count() == page.locator(".product .price").count()
    paid = page.locator("#history .product .price").all_inner_texts()
    offered = page.locator("#buy-again .product .price, #recs .product .price").all_inner_texts()
    assert paid and offered
    assert all(p.startswith("you paid ") and p.endswith(" pu") for p in paid), paid
    assert all(p.startswith("price ") and p.endswith(" pu") for p in offered), offered
    assert "you paid 45.00 pu" in paid  # article 3 bought at the data price 0.045
    assert "pu (price units): the data's scaled price × 1000" in page.locator("footer").inner_text()

    # buying article 3 takes it out of both rails, and the purchase count goes up by one
    bought = f"{s.ARTICLE_IDS[3]:010d}"
    rail = page.locator("#buy-again").get_attribute("data-request-id")
    with page.expect_request(lambda r: r.url.endswith("/events/purchases")) as sent:
        page.locator(f"#buy-again .product[data-article-id='{bought}'] button.buy").click()
    assert sent.value.post_data_json["request_id"] == rail and sent.value.post_data_json["event_id"]  # attribution
    wait_until(page, "document.querySelectorAll('#buy-again .product').length === 3")
    assert bought not in product_ids(page, "recs") and bought not in product_ids(page, "buy-again")
    assert "Purchases\n6" in page.locator("#profile").inner_text()
    assert page.url.endswith(f"?customer={s.FREQUENT}")  # a purchase is not a new page in the history

    # a linked page shows its customer; back returns to the one before
    page.goto(f"{handmade_server.url}/?customer={s.OCCASIONAL}")
    wait_until(page, "id => document.querySelector('#customer-id').textContent === id", arg=s.OCCASIONAL)
    page.click("button.sample[data-kind=frequent]")
    wait_until(page, "id => document.querySelector('#customer-id').textContent === id", arg=s.FREQUENT)
    page.go_back()
    wait_until(page, "id => document.querySelector('#customer-id').textContent === id", arg=s.OCCASIONAL)
    assert page.evaluate("fetch('/favicon.ico').then(r => r.status)") == 200
    assert failures == []
    page.close()


def test_docs_render_every_operation_with_no_internet(browser, handmade_server):
    page = browser.new_page()
    outside: list[str] = []

    def only_local(route) -> None:
        if route.request.url.startswith(handmade_server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    failures = watch_failures(page)
    answer = page.goto(handmade_server.url + "/docs")
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    page.wait_for_selector(".opblock-summary-path")  # Swagger UI rendered: its inline script ran under the policy
    paths = set(page.locator(".opblock-summary-path").all_inner_texts())
    assert {"/recommendations", "/customers/{customer_id}/buy-again", "/articles/{article_id}/similar"} <= {
        p.replace("\u200b", "") for p in paths}
    assert outside == [] and failures == []
    page.close()


def test_similar_articles_stay_within_the_product_group(pipeline_server):
    catalogue = httpx.get(f"{pipeline_server.url}/popular?k=30").json()["items"]
    for article in catalogue[:10]:
        answer = httpx.get(f"{pipeline_server.url}/articles/{article['article_id']}/similar?k=8").json()
        assert answer["method"] == "two_tower"
        assert all(it["score_kind"] == "similarity" and round(it["score"], 6) == it["score"] for it in answer["items"])
        assert {it["product_group"] for it in answer["items"]} <= {article["product_group"]}
        types = [it["product_type"] == article["product_type"] for it in answer["items"]]
        assert types == sorted(types, reverse=True)  # the same product type first


def test_back_and_forward_show_each_history_entrys_customer(browser, handmade_server):
    page = browser.new_page()
    failures = watch_failures(page)
    page.goto(handmade_server.url + "/")
    page.click("button.sample[data-kind=frequent]")
    wait_until(page, "id => document.querySelector('#customer-id').textContent === id", s.FREQUENT)
    page.fill("#customer-input", s.OCCASIONAL)
    page.click("#search button")
    wait_until(page, "id => document.querySelector('#customer-id').textContent === id", s.OCCASIONAL)
    page.go_back()
    wait_until(page, "id => document.querySelector('#customer-id').textContent === id", s.FREQUENT)
    assert page.url.endswith(f"/?customer={s.FREQUENT}")
    page.go_back()  # the entry without a customer: the empty page, not the last customer under "/"
    page.wait_for_selector("#customer", state="hidden")
    assert page.url == handmade_server.url + "/"
    assert page.locator("#recs-section").is_hidden() and page.input_value("#customer-input") == ""
    page.go_forward()
    wait_until(page, "id => document.querySelector('#customer-id').textContent === id", s.FREQUENT)
    assert failures == []
    page.close()


def test_the_demo_says_which_variant_answered_and_the_admin_page_needs_the_token(browser, handmade_server):
    page = browser.new_page()
    failures = watch_failures(page)
    page.goto(handmade_server.url + f"/?customer={s.FREQUENT}")
    wait_until(page, "document.querySelector('#answered-by').textContent !== ''")
    # no experiment on this server: the champion, version 1, answers everyone
    assert page.locator("#answered-by").inner_text() == "answered by champion v1"
    assert page.locator("#model-version").inner_text() == "model champion v1"
    page.goto(handmade_server.url + "/admin")
    assert page.locator("#variants").is_hidden()
    page.fill("#token", "not-the-token")
    page.click("#token-form button")
    wait_until(page, "document.querySelector('#error').textContent !== ''")
    assert page.locator("#error").inner_text() == "wrong admin token" and page.locator("#variants").is_hidden()
    page.fill("#token", s.ADMIN_TOKEN)
    page.click("#token-form button")
    wait_until(page, "document.querySelectorAll('#variants tbody tr').length === 1")
    cells = page.locator("#variants tbody tr[data-variant=champion] td").all_inner_texts()
    assert cells[:3] == ["champion", "100.0%", "v1"] and float(cells[3]) >= 1  # the demo's answer above counted
    assert failures == [f"403 {handmade_server.url}/admin/experiment"]  # the wrong token's, and nothing else
    assert page.locator("#error").is_hidden()
    page.close()
