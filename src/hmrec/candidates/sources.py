"""The catalogue of sources: every method the pipeline fits is one entry here, and nothing else knows it by name.

An entry declares the method's class, its settings dataclass (defaults written there, once), the fields the
validation may choose with their grids, and its roles in the pipeline: a candidate source of the `final` ranker
(with its default candidate count) or a method evaluated on its own only, a baseline or the peer of another
method in the report, the cold start. What a fitted model can do (likeness, user state and pair scores, fit once,
an index window, an engine trainer, training losses, answering only customers with history) it declares itself on
the `Recommender` interface. Adding a source is one module with its class and settings, and one entry in
`CATALOGUE`: the selection, the ranker, the pipeline, the report and serving loop over the entries or ask the model.

The order of `CATALOGUE` is the candidate sources' order in the ranker (it breaks ties: in the candidate budget's
allocation and among LightGBM's features) and the order in which the validation chooses settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Literal

from hmrec.recommenders.als import ALSConfig, ALSRecommender
from hmrec.recommenders.base import Recommender
from hmrec.recommenders.colours import OtherColoursConfig, OtherColoursRecommender
from hmrec.recommenders.ease import EaseConfig, EaseRecommender
from hmrec.recommenders.popularity import AgePopularityRecommender, PopularityConfig, PopularityRecommender
from hmrec.recommenders.repurchase import RepurchaseConfig, RepurchaseRecommender
from hmrec.recommenders.tifu import TifuConfig, TifuKnnRecommender
from hmrec.recommenders.together import BoughtTogetherConfig, BoughtTogetherRecommender
from hmrec.recommenders.trending import TrendingConfig, TrendingRecommender
from hmrec.retrieval.recommender import TwoTowerConfig, TwoTowerRecommender


@dataclass(frozen=True)
class Grid:
    """A settings field the validation chooses: the values tried, and the figure that picks one. metric: `recall`
    (Recall@max over the source's whole list, where what it finds competes with its fill) or `map` (MAP@12);
    reindex: tried on the fitted source's index (`Recommender.with_index_window`), not by fitting again;
    refit: False where the field acts only when answering: the source is fitted once for all such fields and each
    value tried on a copy of that fit (its `config` replaced), which at full size saves a fit of the fill on every
    transaction per value."""

    field: str
    values: tuple
    metric: Literal["recall", "map"] = "map"
    reindex: bool = False
    refit: bool = True


@dataclass(frozen=True)
class Source:
    """One method of the catalogue. candidates: the count the `final` ranker asks of it by default (None: not a
    candidate source, evaluated on its own only); report_rank: its column among the report's methods (the
    baselines first); peer_of: the method of ours it is the library peer of, compared in the report's notes;
    filled: its lists are topped up from age popularity, as repurchase's are, so a list is never cut short."""

    name: str
    cls: type[Recommender]
    settings: type
    grids: tuple[Grid, ...] = ()
    candidates: int | None = None
    report_rank: int = 99
    baseline: bool = False
    peer_of: str | None = None
    cold_start: bool = False
    defaults: Callable[[], object] | None = None  # the method's own default settings (None: the dataclass's)
    filled: bool = False

    def default_settings(self, seed: int = 7):
        """The default settings, with `seed` where the settings have one."""
        settings = self.defaults() if self.defaults is not None else self.settings()
        return replace(settings, seed=seed) if "seed" in {f.name for f in fields(settings)} else settings

    def build(self, settings=None, seed: int = 7) -> Recommender:
        """The method, unfitted, with `settings` (None: the defaults)."""
        settings = settings if settings is not None else self.default_settings(seed)
        return self.cls(settings, fill=AgePopularityRecommender()) if self.filled else self.cls(settings)


CATALOGUE: tuple[Source, ...] = (
    Source("two_tower", TwoTowerRecommender, TwoTowerConfig, candidates=60, report_rank=5,
           grids=(Grid("index_window_days", (28, 56), "recall", reindex=True),)),
    Source("repurchase", RepurchaseRecommender, RepurchaseConfig, candidates=24, report_rank=2, baseline=True,
           grids=(Grid("window_days", (28, 91, 365, None), "recall", refit=False),
                  Grid("half_life_days", (7.0, 14.0, 30.0, 90.0), refit=False))),
    # Its window in lines (`RepurchaseConfig.window_lines`) is not in the grid: chosen on validation from quarter-octave
    # steps (8 to 256 lines) it lifted grocery's `final` to 99.2% of the world's ceiling, but at full size repurchase
    # rose more than `final` and the ranker's search then kept ten times the trees (serving CPU +26% per uncached
    # answer; docs/benchmarks.md, "the repurchase source's window in lines"). The ranker reads the count in such a
    # window as a feature instead (`line_count_<n>`, n chosen on validation: `evaluation.selection.choose_line_window`).
    Source("popularity", PopularityRecommender, PopularityConfig, report_rank=0, baseline=True,
           grids=(Grid("window_days", (3, 7, 14, 28)),)),
    Source("other_colours", OtherColoursRecommender, OtherColoursConfig, candidates=20, report_rank=6),
    Source("bought_together", BoughtTogetherRecommender, BoughtTogetherConfig, candidates=24, report_rank=7),
    Source("age_popularity", AgePopularityRecommender, PopularityConfig, candidates=30, report_rank=1, baseline=True,
           cold_start=True, grids=(Grid("window_days", (7, 14, 28)),),
           defaults=AgePopularityRecommender.default_config),
    Source("trending", TrendingRecommender, TrendingConfig, candidates=16, report_rank=4,
           grids=(Grid("half_life_days", (3.0, 7.0, 14.0)),)),
    Source("als", ALSRecommender, ALSConfig, candidates=16, report_rank=3, peer_of="two_tower"),
    # the strongest simple published methods (issue 20), rows of the report as baselines. TIFU-KNN is also a source
    # of `final` (validation chooses its share of the candidate budget; its rank and score are features of what it
    # proposes). Its score as a feature of every candidate was measured and left out: no gain on fashion small (three
    # seeds) or at full size, 25-31% more serving CPU per online answer. EASE is not a source: validation gave it no
    # share in any small world, and its 10,000 x 10,000 matrix (400 MB at the H&M size) would be in every serving
    # worker. Their full grids (TIFU_GRID, EASE_GRID) cost too much to walk in every run: the settings that move them
    # most
    Source("tifu_knn", TifuKnnRecommender, TifuConfig, candidates=24, report_rank=8, baseline=True, filled=True,
           grids=(Grid("alpha", (0.3, 0.6, 0.9), refit=False),)),
    Source("ease", EaseRecommender, EaseConfig, report_rank=9, baseline=True, filled=True,
           grids=(Grid("l2", (10.0, 200.0, 1000.0)),)),
)


def entries(catalogue: Sequence[Source] | None = None) -> Sequence[Source]:
    """`catalogue`, or (None) the module's `CATALOGUE` as it is when asked (a test may add an entry to it)."""
    return CATALOGUE if catalogue is None else catalogue


def candidate_sources(catalogue: Sequence[Source] | None = None) -> list[Source]:
    """The entries the `final` ranker unites, in catalogue order."""
    return [source for source in entries(catalogue) if source.candidates is not None]


def default_counts(catalogue: Sequence[Source] | None = None) -> dict[str, int]:
    """Each candidate source's default candidate count (about 100 per customer once the overlaps merge)."""
    return {source.name: source.candidates for source in candidate_sources(catalogue)}


def build_sources(seed: int = 7, settings: dict | None = None, catalogue: Sequence[Source] | None = None,
                  trainer=None) -> dict[str, Recommender]:
    """The ranker's candidate sources, unfitted; `settings` (name -> settings dataclass, as `evaluation.selection`
    chooses them) override the defaults; `trainer`: an engine's trainer handed to every source (`use_trainer`)."""
    built = {}
    for source in candidate_sources(catalogue):
        built[source.name] = source.build((settings or {}).get(source.name), seed)
        if trainer is not None:
            built[source.name].use_trainer(trainer)
    return built


def report_order(catalogue: Sequence[Source] | None = None) -> list[str]:
    """The methods' names in the report's order."""
    return [source.name for source in sorted(entries(catalogue), key=lambda source: source.report_rank)]


def cold_start(catalogue: Sequence[Source] | None = None) -> str:
    """The name of the method served to customers without purchases (and evaluated under that name)."""
    (name,) = [source.name for source in entries(catalogue) if source.cold_start]
    return name


def baselines(catalogue: Sequence[Source] | None = None) -> tuple[str, ...]:
    return tuple(source.name for source in entries(catalogue) if source.baseline)


def peers(catalogue: Sequence[Source] | None = None) -> dict[str, str]:
    """Our method -> the library peer it is measured against."""
    return {source.peer_of: source.name for source in entries(catalogue) if source.peer_of is not None}
