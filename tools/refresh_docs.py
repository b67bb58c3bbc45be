"""Regenerate docs/report-small and docs/demo.png from the current code: `make docs`.

Generates the embedded small sample (`make run`'s), runs the real pipeline on it, copies the evaluation report
into docs/report-small/, then serves the promoted model and photographs the demo shop for the frequent buyer in
Debian's Chromium. Run it last in a release, after every change that moves a figure or the page.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from hmrec.data.files import publish_copy
from hmrec.support.browser import CHROMIUM, CHROMIUM_ARGS, wait_until
from hmrec.support.launcher import HMREC, Server

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str | Path) -> None:
    print("$ hmrec " + " ".join(map(str, args)), flush=True)
    subprocess.run([str(HMREC), *map(str, args)], check=True)


def screenshot(workdir: Path, out: Path) -> None:
    """The shop as a person sees it: the frequent buyer's page, every product image loaded."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder, Server(workdir, Path(folder) / "events.sqlite",
                                                         Path(folder) / "server.log", demo=True) as server, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server.url + "/")
        button = page.locator("button.sample[data-kind=frequent]")
        frequent = button.get_attribute("data-customer")
        button.click()
        wait_until(page, "id => document.querySelector('#customer-id').textContent === id", frequent)
        wait_until(page, "[...document.querySelectorAll('#recs img')].every(i => i.complete && i.naturalWidth)")
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    print(f"wrote {out} (customer {frequent})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=Path, default=ROOT / "data" / "sample-small")
    parser.add_argument("--workdir", type=Path, default=ROOT / "data" / "docs-work",
                        help="a workdir of its own, so `make run`'s work/ is left alone")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if not (args.sample / "transactions_train.csv").is_file():
        run("data", "generate", "--scale", "small", "--seed", args.seed, "--out", args.sample)
    run("pipeline", "--raw", args.sample, "--workdir", args.workdir, "--promote")
    publish_copy(args.workdir / "reports" / "latest", ROOT / "docs" / "report-small")
    print(f"wrote {ROOT / 'docs' / 'report-small'}", flush=True)
    screenshot(args.workdir, ROOT / "docs" / "demo.png")


if __name__ == "__main__":
    sys.exit(main())
