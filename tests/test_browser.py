"""The demo page in a real browser: Debian's Chromium driven by Playwright against a live `hmrec serve`."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
import serving_support as s

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


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
    with s.Server(pipeline_run.workdir, root / "events.sqlite", root / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def handmade_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-handmade")
    with s.Server(s.handmade_workdir(root), root / "events.sqlite", root / "server.log") as server:
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
    page.locator("#recs .product").first.locator("button.buy").click()
    wait_until(page, "document.querySelector('#strategy').dataset.strategy === 'personalized'")
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


def test_a_bad_customer_id_shows_the_apis_message(browser, handmade_server):
    page = browser.new_page()
    page.goto(handmade_server.url + "/")
    page.fill("#customer-input", "not valid!")
    page.click("#search button")
    page.wait_for_selector("#error:not(.hidden)")
    assert page.locator("#error").inner_text().startswith("customer_id: String should match pattern")
    page.close()


def wait_until(page, predicate: str, arg: object = None, timeout: float = 30) -> None:
    """Poll `predicate` (an expression, or a function of `arg`) in the page until it is true. Not
    page.wait_for_function, which evaluates its string with eval(): the Content-Security-Policy forbids that."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate, arg):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {predicate} ({arg})")
        page.wait_for_timeout(100)


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
    prices = page.locator(".product .price").all_inner_texts()
    assert prices and all(p.endswith(" pu") and p[:-3].replace(".", "").isdigit() for p in prices), prices
    assert "30.00 pu" in prices  # article 0's data price 0.030
    assert "pu (price units): the data's scaled price × 1000" in page.locator("footer").inner_text()

    # buying article 3 takes it out of both rails, and the purchase count goes up by one
    bought = f"{s.ARTICLE_IDS[3]:010d}"
    page.locator(f"#recs .product[data-article-id='{bought}'] button.buy").click()
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
        assert {it["product_group"] for it in answer["items"]} <= {article["product_group"]}
        types = [it["product_type"] == article["product_type"] for it in answer["items"]]
        assert types == sorted(types, reverse=True)  # the same product type first
