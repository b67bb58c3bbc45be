"""The feedback loop end to end on a simulated shop: impressions, purchases that follow them, an A/B test between two
registered versions of different offline quality, its report, and an A/A check of the test's false positives.

    .venv/bin/python bench/feedback.py                                   # 6,000 customers, 14 simulated days
    .venv/bin/python bench/feedback.py --customers 12000 --days 21 --json /tmp/feedback.json

1. A fashion sample world (sample/) of `--history-days` + `--days` days. The raw files hold the history only: the
   simulated days are the future the service meets, with the world's shoppers.
2. Two versions in one workdir, both by `hmrec pipeline` with the same settings: the weaker, the `champion`, on the
   history without its last `--stale-days` days (a model nobody retrained); the stronger, the `challenger`, on the
   whole history. Offline MAP@12 of each on the stronger one's held-out week (`hmrec evaluate` scores the stale
   one there through its own id maps), and the stale one's on its own.
3. `hmrec experiment start --variant champion=0.5 --variant challenger=0.5`.
4. Each simulated day: `hmrec serve` (one worker) restarted with HMREC_TODAY = that day; the world draws the day's
   trips and baskets (Simulator.week); each trip asks POST /recommendations (k 12) and buys each shown article with
   `purchase_probability(customer, article, day)` (sample/shopper.py: the world's own chance, the same whichever
   variant showed it), posted with the answer's request id. The shown articles bought take the place of as many
   items of the basket the world drew; the rest is bought as the world would (posted without a request id; an
   article the customer's variant does not know is refused, and counted).
5. `hmrec experiment report` over the logged traffic: the stronger version must be found better (bootstrap over
   customers, alpha 0.05).
6. A/A: the same logged impressions, their customers split at random in two halves `--aa-splits` times and tested
   as two variants: the share of splits found significant (either way) must be at most 2 x alpha (with 20 splits a
   test exactly at alpha still fails this 8% of the time, hence 100 by default).
Exits 1 when step 5 or 6 misses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import polars as pl

from hmrec.feedback.online import BETTER, UNDECIDED, online_report
from hmrec.raw.schema import ARTICLES_FILE, CUSTOMERS_FILE, TRANSACTIONS_FILE
from hmrec.sample.generate import REAL_END, Scale, world_scale
from hmrec.sample.population import build_population
from hmrec.sample.shopper import purchase_probability
from hmrec.sample.simulate import Simulator
from hmrec.sample.world import build_catalogue
from hmrec.sample.worlds import WORLDS, relabel
from hmrec.serving.events import open_event_store
from hmrec.support.launcher import Server

HMREC = str(Path(sys.executable).parent / "hmrec")
TOKEN = "feedback-bench-events-token"
K = 12
ALPHA = 0.05


def run(*command: str) -> str:
    started = time.perf_counter()
    done = subprocess.run([HMREC, *command], check=True, capture_output=True, text=True)
    print(f"# hmrec {' '.join(command[:3])} ...: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return done.stdout


class Shop:
    """The world: its catalogue, customers and simulator, with id <-> row look-ups."""

    def __init__(self, args: argparse.Namespace):
        total = args.history_days + args.days
        scale = Scale(customers=args.customers, articles=args.articles, transactions=args.transactions * total //
                      args.history_days, days=total, end=REAL_END + timedelta(days=args.days))
        world = WORLDS["fashion"]
        sizes = world_scale(scale, world)
        rng = np.random.default_rng([args.seed, 0])
        self.articles = build_catalogue(rng, sizes.articles, sizes.days, world.shape)
        self.people = build_population(rng, sizes.customers, sizes.days)
        self.articles_frame = relabel(self.articles.frame, world)
        self.sim = Simulator(self.articles, self.people, sizes.first_day, sizes.days, sizes.transactions,
                             np.random.default_rng([args.seed, 1]), sizes.behaviour)
        self.first_day, self.history_days, self.total = sizes.first_day, args.history_days, total
        self.customer_row = {c: i for i, c in enumerate(self.people.ids.to_list())}
        self.article_row = {int(a): i for i, a in enumerate(self.articles.article_id)}

    def history(self) -> pl.DataFrame:
        """The transactions of the history's days, weeks aligned on its last day."""
        return pl.concat([self.sim.week(first, n_days) for first, n_days in self.sim.chunks(self.history_days)])

    def write_raw(self, folder: Path, transactions: pl.DataFrame) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.people.frame.write_csv(folder / CUSTOMERS_FILE)
        self.articles_frame.write_csv(folder / ARTICLES_FILE)
        transactions.write_csv(folder / TRANSACTIONS_FILE)
        return folder


def pipeline(raw: Path, work: Path, args: argparse.Namespace) -> tuple[int, float]:
    """Register a version trained on `raw`: its number and its own offline MAP@12 (final)."""
    from hmrec.registry.versions import Registry

    metrics = Path(run("pipeline", "--raw", str(raw), "--workdir", str(work), "--precompute", "none",
                       "--label-windows", str(args.label_windows), "--search-fits", str(args.search_fits))
                   .strip().splitlines()[-1])
    version = max(v.version for v in Registry.for_workdir(work).versions())
    return version, float(json.loads(metrics.read_text())["methods"]["final"]["map@12"])


def simulate(shop: Shop, work: Path, args: argparse.Namespace) -> dict:
    """Every simulated day through a service restarted on that date; what was shown and bought, counted."""
    rng = np.random.default_rng([args.seed, 2])
    counts = {"visits": 0, "shown_bought": 0, "world_bought": 0, "refused": 0, "by_variant": {}}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for first in range(shop.history_days, shop.total, 7):
        week = shop.sim.week(first, min(7, shop.total - first))
        for offset, day_frame in sorted(week.group_by("t_dat"), key=lambda g: g[0][0]):
            day = offset[0]
            n_day = (day - shop.first_day).days
            log = work / "serve.log"
            with Server(work, work / "events.sqlite", log, events_token=TOKEN, HMREC_TODAY=day.isoformat()) as server, \
                    httpx.Client(base_url=server.url, timeout=30, headers=auth) as client:
                for (customer_id,), basket in day_frame.group_by("customer_id", maintain_order=True):
                    visit(shop, client, customer_id, basket, day, n_day, rng, counts)
            print(f"# {day}: {counts['visits']} visits so far, {counts['shown_bought']} shown articles bought",
                  file=sys.stderr)
    return counts


def visit(shop: Shop, client: httpx.Client, customer_id: str, basket: pl.DataFrame, day, n_day: int,
          rng: np.random.Generator, counts: dict) -> None:
    answer = client.post("/recommendations", json={"customer_id": customer_id, "k": K})
    answer.raise_for_status()
    answer = answer.json()
    counts["visits"] += 1
    variant = counts["by_variant"].setdefault(answer["variant"], {"visits": 0, "shown_bought": 0})
    variant["visits"] += 1
    shown = np.array([shop.article_row[int(item["article_id"])] for item in answer["items"]], dtype=np.int64)
    row = shop.customer_row[customer_id]
    chance = purchase_probability(shop.sim, np.full(shown.size, row), shown, n_day)
    bought = shown[rng.random(shown.size) < chance]
    for article in bought:
        post(client, customer_id, int(shop.articles.article_id[article]), day, float(shop.sim.price(article, n_day)),
             answer["request_id"], counts)
    if bought.size:
        shop.sim.remember(np.full(bought.size, row), np.full(bought.size, n_day), bought)
    counts["shown_bought"] += bought.size
    variant["shown_bought"] += bought.size
    for article_id, price in basket.select("article_id", "price").rows()[bought.size:]:
        post(client, customer_id, int(article_id), day, price, None, counts)
        counts["world_bought"] += 1


def post(client: httpx.Client, customer_id: str, article_id: int, day, price: float, request_id: str | None,
         counts: dict) -> None:
    body = {"customer_id": customer_id, "article_id": article_id, "t_dat": day.isoformat(), "price": price}
    if request_id:
        body["request_id"] = request_id
    response = client.post("/events/purchases", json=body)
    if response.status_code in (404, 422):  # an article the customer's variant does not know
        counts["refused"] += 1
    else:
        response.raise_for_status()


def report(work: Path) -> dict:
    out = run("experiment", "report", "--workdir", str(work), "--no-mlflow")
    print(out)
    folder = Path(out.strip().splitlines()[-1].removeprefix("written to "))
    return json.loads((folder / "report.json").read_text())


def aa_false_positives(work: Path, splits: int, seed: int) -> list[str]:
    """The verdict of each random 50/50 split of the logged customers, tested as two variants."""
    store = open_event_store(work / "events.sqlite")
    try:
        shown, sales = store.impressions(None), store.sales(None)
    finally:
        store.close()
    customers = sorted({i.customer_id for i in shown})
    rng = np.random.default_rng([seed, 3])
    verdicts = []
    for _ in range(splits):
        half = set(rng.permutation(customers)[: len(customers) // 2].tolist())
        relabelled = [dataclasses.replace(i, variant="b" if i.customer_id in half else "a") for i in shown]
        figures = online_report(relabelled, sales, control="a", alpha=ALPHA, seed=int(rng.integers(1 << 31)))
        verdicts.append(figures["variants"]["b"]["verdict"])
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=6000)
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--transactions", type=int, default=150_000, help="in the history")
    parser.add_argument("--history-days", type=int, default=182)
    parser.add_argument("--days", type=int, default=14, help="simulated days")
    parser.add_argument("--stale-days", type=int, default=56, help="history the weaker version does not see")
    parser.add_argument("--label-windows", type=int, default=2)
    parser.add_argument("--search-fits", type=int, default=3)
    parser.add_argument("--aa-splits", type=int, default=100, help="A/A splits (20 gives a coarse rate)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workdir", type=Path, help="kept afterwards (default: a temporary folder, removed)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="hmrec-feedback-"))
    started = time.perf_counter()
    try:
        figures = bench(args, root)
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    figures["seconds"] = round(time.perf_counter() - started)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    sys.exit(0 if figures["found_better"] and figures["aa_false_positive_rate"] <= 2 * ALPHA else 1)


def bench(args: argparse.Namespace, root: Path) -> dict:
    shop = Shop(args)
    history = shop.history()
    cut = shop.first_day + timedelta(days=shop.history_days - 1 - args.stale_days)
    work = root / "work"
    weak_version, weak_map = pipeline(shop.write_raw(root / "raw-stale", history.filter(pl.col("t_dat") <= cut)),
                                      work, args)
    strong_version, strong_map = pipeline(shop.write_raw(root / "raw", history), work, args)
    run("registry", "promote", str(weak_version), "--workdir", str(work))
    # the stale version on the stronger one's held-out week, through its own id maps (as the retrain's gate does)
    stale_metrics = Path(run("evaluate", "--workdir", str(work), "--reports", str(root / "reports-stale"))
                         .strip().splitlines()[-1])
    weak_same_week = float(json.loads(stale_metrics.read_text())["methods"]["final"]["map@12"])
    run("registry", "alias", "challenger", str(strong_version), "--workdir", str(work))
    run("experiment", "start", "--workdir", str(work), "--variant", "champion=0.5", "--variant", "challenger=0.5",
        "--name", "feedback-bench")
    counts = simulate(shop, work, args)
    figures = report(work)
    verdicts = aa_false_positives(work, args.aa_splits, args.seed)
    challenger = figures["variants"]["challenger"]
    return {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "offline_map12": {"champion (stale), its own held-out week": weak_map,
                          "champion (stale), the challenger's held-out week": weak_same_week,
                          "challenger, its held-out week": strong_map},
        "traffic": counts,
        "report": figures,
        "found_better": challenger["verdict"] == BETTER,
        "aa_verdicts": verdicts,
        "aa_false_positive_rate": sum(v != UNDECIDED for v in verdicts) / len(verdicts),
    }


if __name__ == "__main__":
    main()
