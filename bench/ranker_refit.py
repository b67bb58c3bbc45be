"""The ranker alone, trained again on the champion's own sources: what a ranker change (features, settings, candidate
counts) does to the held-out MAP@12 at full size in ~5 minutes instead of a whole pipeline's ~15.

    PYTHONPATH=<tree>/src .venv/bin/python bench/ranker_refit.py --workdir W [--seed 8] [--count NAME=N ...]
        [--ap out.npy]

The champion registered in W gives the sources (their settings chosen on validation, the two-tower's weights) and
the ranker's config; the sources are fitted again as of each label window and the cutoff, exactly as the pipeline
does after its validation (the two-tower only refreshed), and the ranker is trained and searched with the code on
PYTHONPATH. With the champion's code and settings it gives the pipeline's `final` to the digit. `--ap` saves each
held-out buyer's AP@12, in the order of the report's `ap12_per_buyer.parquet`, for a paired comparison.

It measures changes of the ranker only. A change that moves the week the settings are chosen on (the count of near
label windows or their length: that week precedes the near windows) also changes every source's settings and the
two-tower's fit in the pipeline; keeping the champion's would train on windows the sources were tuned or fitted on
(docs/benchmarks.md, "Four label weeks instead of two"). Measure such a change with the whole pipeline
(`bench/quality.py`). Windows behind the settings' week get a two-tower of the champion's settings fitted before the
oldest of them, as in the pipeline.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hmrec import logs
from hmrec.candidates.sources import build_sources
from hmrec.data.files import read_config
from hmrec.evaluation.metrics import ap_per_customer, recall_at_k
from hmrec.pipeline import held_out_query, load_train_data
from hmrec.ranking.ranker import FinalConfig, FinalRecommender
from hmrec.recommenders.base import load_recommender
from hmrec.registry.versions import Registry
from hmrec.store.tables import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--seed", type=int, help="the ranker's seed (default: the champion's)")
    parser.add_argument("--count", action="append", default=[], help="a source's candidate count, NAME=N")
    parser.add_argument("--ap", type=Path, help="write each held-out buyer's AP@12 here (.npy)")
    args = parser.parse_args()
    logs.configure(bars=False)
    version, bundle = Registry.for_workdir(args.workdir).load_version("champion")
    folder = Path(bundle) / "final"
    saved = read_config(folder)
    config = FinalConfig.from_saved(saved["config"])
    if args.seed is not None:
        config.seed = args.seed
    config.n_per_source.update({name: int(n) for name, n in (text.split("=", 1) for text in args.count)})
    sources = {name: load_recommender(folder / "sources" / name) for name in saved["sources"]}
    warm = tuple(name for name, source in sources.items() if source.fit_once)
    store = Store(args.workdir / "store")
    data = load_train_data(store)
    started = time.perf_counter()
    behind = {name: built for name, built in build_sources(config.seed, {name: sources[name].config for name in warm})
              .items() if name in warm}  # unfitted, the champion's settings, as the pipeline builds them
    final = FinalRecommender(sources, config, warm=warm, behind=behind).fit(data)
    fit_s = time.perf_counter() - started
    query, relevant = held_out_query(store, data)
    recs = final.recommend(query, 100)
    ap = ap_per_customer(recs.items, relevant, 12)
    if args.ap is not None:
        np.save(args.ap, ap)
    print(json.dumps({"champion": version, "seed": config.seed, "n_per_source": config.n_per_source,
                      "map12": float(ap.mean()), "recall100": recall_at_k(recs.items, relevant, 100),
                      "ranker": final.state_.params, "fit_s": round(fit_s, 1)}))
    for name, gain, splits in final.feature_importance().iter_rows():
        print(f"{name:40s} {gain:12.3f} {splits:6d}")


if __name__ == "__main__":
    main()
