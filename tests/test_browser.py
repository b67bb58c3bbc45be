"""The demo page in a real browser: Debian's Chromium driven by Playwright against a live `hmrec serve`."""

from __future__ import annotations

import os
import shutil
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
    page.wait_for_function("document.querySelectorAll('#recs .product').length === 12")
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
    page.wait_for_function("document.querySelector('#strategy').dataset.strategy === 'cold_start'")
    assert page.locator("#recs .product").count() == 12
    assert page.locator("#history .empty").inner_text() == "No purchases yet."
    before = product_ids(page, "recs")
    page.locator("#recs .product").first.locator("button.buy").click()
    page.wait_for_function("document.querySelector('#strategy').dataset.strategy === 'personalized'")
    assert product_ids(page, "history") == [before[0]]
    assert page.locator("#recs .product").count() == 12
    assert product_ids(page, "recs") != before

    shot = tmp_path / "demo.png"
    frequent = page.locator("button.sample[data-kind=frequent]").get_attribute("data-customer")
    page.locator("button.sample[data-kind=frequent]").click()
    page.wait_for_function("id => document.querySelector('#customer-id').textContent === id", arg=frequent)
    page.wait_for_function("[...document.querySelectorAll('#recs img')].every(i => i.complete && i.naturalWidth)")
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
