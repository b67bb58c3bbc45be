"""The two-tower recommender: fits towers on a recent window, indexes article vectors, answers queries."""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Self

import numpy as np
import polars as pl
import torch
from safetensors.torch import load_file, save_file

from hmrec import cpus
from hmrec.data import Query, Recs, TrainData
from hmrec.data.files import read_config, require_fitted, write_config
from hmrec.recommenders.base import Reason, Recommender
from hmrec.retrieval.config import TwoTowerConfig
from hmrec.retrieval.data import (
    PurchaseHistory,
    build_examples,
    customer_profiles,
    day_number,
    item_numeric_snapshots,
    snapshot_days,
    window_rows,
)
from hmrec.retrieval.encoders import ITEM_CATEGORICALS, USER_CATEGORICALS, Encoders, Vocabulary
from hmrec.retrieval.index import ArticleIndex
from hmrec.retrieval.model import TowerShapes, TwoTower
from hmrec.retrieval.runtime import deterministic, inference, past_items
from hmrec.retrieval.train import TrainInputs, train
from hmrec.store.arrays import distinct, line_dots
from hmrec.store.features import index_groups

__all__ = ["TwoTowerConfig", "TwoTowerRecommender"]  # the config lives in config.py; imported from here too

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.safetensors"
VECTORS_FILE = "vectors.safetensors"
ARTICLES_FILE = "articles.parquet"
LOSSES_FILE = "losses.json"
SINGLE_THREAD_USERS = 64


class TwoTowerRecommender(Recommender):
    """Two-tower retrieval over FAISS; a customer's vector comes from profile and purchases, never an id.

    More than 12 methods: besides its own steps (encode items, build the index, user vectors, search) it answers
    most of the interface's capabilities (refresh, similar/similar_by, user_state/recommend_from/pair_scores,
    with_index_window, use_trainer, training_losses, save/load)."""

    name = "two_tower"
    reason = Reason.STYLE
    fit_once = True  # slow to train; one fitted on the ranker's label week would score its labels too well

    def __init__(self, config: TwoTowerConfig | None = None, train_fn=train):
        self.config = config or TwoTowerConfig()
        self.train_fn = train_fn  # retrieval.train.train, or one of its signature (scale.train.RayTrainer)
        self.losses: list[float] = []
        self.examples_per_second = 0.0
        self.n_examples = 0  # training examples per epoch in the last fit
        self.model: TwoTower | None = None
        self.encoders: Encoders | None = None
        self.index: ArticleIndex | None = None
        self.articles: pl.DataFrame | None = None
        self.item_vectors: np.ndarray | None = None  # (n_articles, out_dim) unit vectors, row i = article_idx i
        self.item_bias: np.ndarray | None = None  # (n_articles,) score offsets as of the cutoff, in index units
        self._item_codes: torch.Tensor | None = None  # (n_articles + 1, n_item_fields), last row all-OOV
        self._item_numeric: torch.Tensor | None = None  # (n_articles + 1, n_item_numeric) as of the cutoff
        self._groups: tuple[pl.DataFrame, np.ndarray] | None = None  # (articles, their index_groups)
        self._past: tuple[np.ndarray, tuple[torch.Tensor, torch.Tensor]] | None = None  # item_vectors, their tensors

    def fit(self, data: TrainData) -> Self:
        config = self.config
        with deterministic(config.seed, config.threads):
            encoders = _fit_vocabularies(data, config)
            days = snapshot_days(data.cutoff, config.window_days, config.snapshot_every_days) + [data.cutoff]
            snapshots, encoders.item_scaler = item_numeric_snapshots(data, days, None)
            examples = build_examples(data.transactions, data.articles, data.cutoff, config.window_days,
                                      config.snapshot_every_days, encoders)
            self.encoders, self.articles = encoders, data.articles
            self._item_codes = _with_oov_row(encoders.encode_items(data.articles))
            item_numeric = torch.from_numpy(np.pad(snapshots, ((0, 0), (0, 1), (0, 0))))
            self.model = TwoTower(self._shapes(item_numeric.shape[-1]))
            inputs = TrainInputs(
                examples=examples,
                history=PurchaseHistory.from_frame(data.transactions, "customer_idx"),
                item_codes=self._item_codes,
                item_numeric=item_numeric[:-1],
                user_codes=torch.from_numpy(encoders.encode_users(customer_profiles(data.customers))),
                negative_pool=distinct(examples.article_idx),
            )
            inputs.negative_p = _negative_p(examples.article_idx, inputs.negative_pool, config.negative_power)
            epochs = config.epochs_for(len(examples))
            if epochs < config.epochs:
                logger.info("training %d of %d epochs: %s examples an epoch, at most %s in all (max_examples)",
                            epochs, config.epochs, f"{len(examples):,}", f"{config.max_examples:,}")
                # the config saved with the weights says what was trained, so a refit from it trains the same
                self.config = config = replace(config, epochs=epochs)
            result = self.train_fn(self.model, inputs, config)
            self.losses, self.examples_per_second = result.losses, result.examples_per_second
            self.n_examples = len(examples)
            self._item_numeric = item_numeric[-1]
            self.item_vectors, self.item_bias = self._encode_items()
        self.index = self._build_index(data.transactions, data.cutoff)
        return self

    def refresh(self, data: TrainData) -> Self:
        """Item vectors and index as of a later cutoff, weights unchanged.

        A model trained up to an earlier date still answers "as of now": articles launched since get vectors
        from their attributes and fresh sales features, and the index holds what sells now.
        """
        require_fitted(self, self.model)
        with deterministic(self.config.seed, self.config.threads):
            snapshot, _ = item_numeric_snapshots(data, [data.cutoff], self.encoders.item_scaler)
            self._item_numeric = torch.from_numpy(np.pad(snapshot[0], ((0, 1), (0, 0)))).contiguous()
            self.item_vectors, self.item_bias = self._encode_items()
        self.index = self._build_index(data.transactions, data.cutoff)
        return self

    def _shapes(self, n_item_numeric: int) -> TowerShapes:
        c, enc = self.config, self.encoders
        return TowerShapes(
            item_fields={name: v.size for name, v in enc.item_vocabs.items()},
            user_fields={name: v.size for name, v in enc.user_vocabs.items()},
            n_item_numeric=n_item_numeric,
            n_user_numeric=len(enc.user_scaler.columns),
            wide_dim=c.wide_dim, narrow_dim=c.narrow_dim, hidden_dim=c.hidden_dim, out_dim=c.out_dim,
            item_bias=c.item_bias,
        )

    @torch.no_grad()
    def _encode_items(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Unit vectors and, with a bias head, score offsets (times the temperature, in the index's units)."""
        n, codes, numeric = self.articles.height, self._item_codes, self._item_numeric
        chunks = [self.model.items(codes[s : s + 8192], numeric[s : s + 8192]) for s in range(0, n, 8192)]
        vectors = torch.cat(chunks).numpy()[:n]
        if self.model.bias_mlp is None:
            return vectors, None
        # Training ranks by u.v / T + b; the index ranks by u.v + T * b, the same order.
        bias = self.model.bias(numeric[:n]).numpy() * self.config.temperature
        return vectors, bias.astype(np.float32)

    def with_index_window(self, data: TrainData, window_days: int | None) -> Self:
        """A copy whose index holds the articles sold `window_days` before `data.cutoff` (weights and item vectors
        shared, this model untouched): how the index window is chosen on validation."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.config = replace(self.config, index_window_days=window_days)
        copy.index = copy._build_index(data.transactions, data.cutoff)
        return copy

    def use_trainer(self, train_fn) -> None:
        self.train_fn = train_fn

    def training_losses(self) -> list[float]:
        return self.losses

    def training_epochs(self) -> int:
        return self.config.epochs

    def _build_index(self, transactions: pl.DataFrame, cutoff: date) -> ArticleIndex:
        days = self.config.index_window_days
        if days is None:
            ids = np.arange(self.articles.height, dtype=np.int32)
        else:
            recent = transactions.filter(pl.col("t_dat") >= cutoff - timedelta(days=days))
            ids = np.sort(recent["article_idx"].unique().to_numpy()).astype(np.int32)
        which = "all articles" if days is None else f"articles sold in the {days} days before {cutoff}"
        logger.info("indexing %d %s (%s index)", len(ids), which, self.config.index_kind)
        return ArticleIndex.build(self.article_vectors()[ids], ids, kind=self.config.index_kind, seed=self.config.seed)

    def user_vectors(self, query: Query) -> np.ndarray:
        """(len(query), dim) vectors from each row's profile and purchases before query.as_of: the unit user
        vector, then a constant 1 when the model has an item bias (so user . article = u.v + bias)."""
        require_fitted(self, self.model)
        n, config = len(query), self.config
        profiles = torch.from_numpy(self.encoders.encode_users(customer_profiles(query.customers)))
        rows = np.arange(n, dtype=np.int64)
        history = PurchaseHistory.from_frame(query.history, "row")
        numeric = torch.from_numpy(self.encoders.user_scaler.transform(query.user_features(self._index_groups())))
        as_of = np.full(n, day_number(query.as_of), dtype=np.int64)
        out = np.zeros((n, config.out_dim), dtype=np.float32)
        # one thread for a live customer or a few: tiny matrices lose more to thread hand-offs than they gain; never
        # more than this process may use (a scoring process of scale/scoring.py's has one)
        with inference(1 if n <= SINGLE_THREAD_USERS else cpus.at_most(config.threads)):
            for s in range(0, n, config.user_batch_size):
                part = slice(s, s + config.user_batch_size)
                past = past_items(history, self._item_codes, self._item_numeric[None], rows[part], as_of[part],
                                  np.zeros(len(rows[part]), dtype=np.int64), config, self._past_vectors())
                out[part] = self.model.users(profiles[part], past, numeric[part]).numpy()
        if self.item_bias is not None:
            out = np.hstack([out, np.ones((n, 1), dtype=np.float32)])
        return out

    def _past_vectors(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`item_vectors` (shared, not copied) and the all-OOV row's vector, as `past_items` takes them: the item
        tower's output for the snapshot `_item_numeric` holds, which is what a user vector pools."""
        if self.item_vectors is None:
            return None
        if self._past is None or self._past[0] is not self.item_vectors:
            with torch.no_grad():
                oov = self.model.items(self._item_codes[-1:], self._item_numeric[-1:])
            self._past = (self.item_vectors, (torch.from_numpy(self.item_vectors), oov))
        return self._past[1]

    def _index_groups(self) -> np.ndarray:
        """index_group_no by article_idx of the model's articles, for the user features (built once per table)."""
        if self._groups is None or self._groups[0] is not self.articles:
            self._groups = (self.articles, index_groups(self.articles))
        return self._groups[1]

    def recommend(self, query: Query, k: int) -> Recs:
        return self.search(self.user_vectors(query), k)

    def user_state(self, query: Query) -> np.ndarray:
        return self.user_vectors(query)

    def recommend_from(self, state: np.ndarray, query: Query, k: int) -> Recs:
        return self.search(state, k)

    def pair_scores(self, state: np.ndarray, rows: np.ndarray, articles: np.ndarray) -> np.ndarray:
        """user . article for every candidate line (query row, article_idx), not only the ones retrieved (the
        index holds only recently sold articles and returns its top-N). state: `user_vectors`, (len(query), dim)."""
        return line_dots(state, rows, self.article_vectors(), articles)

    def similar_by(self) -> str:
        return self.name

    def search(self, user_vectors: np.ndarray, k: int) -> Recs:
        """Top-k indexed articles for precomputed user vectors (lets a caller compute them once and reuse them)."""
        if len(user_vectors) == 0:
            return Recs.empty(0, k)
        items, scores = self.index.search(user_vectors, k)
        return Recs(items, scores)

    def similar(self, article_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k indexed articles nearest to `article_idx` by item vector, itself excluded, best first."""
        require_fitted(self, self.model)
        if not 0 <= article_idx < len(self.item_vectors):
            last = len(self.item_vectors) - 1
            raise KeyError(f"article_idx {article_idx} is not in the model's articles (0..{last})")
        # A zero in the bias slot: similarity of the unit vectors alone, popularity left out.
        query = self.article_vectors()[article_idx : article_idx + 1].copy()
        query[:, self.config.out_dim :] = 0.0
        items, scores = self.index.search(query, k, exclude={article_idx})
        return items[0], scores[0]

    def article_vectors(self) -> np.ndarray:
        """(n_articles, dim) item vectors as of the training cutoff, row i = article_idx i: the unit vector,
        then the article's bias when the model has one (user_vectors() . article_vectors() = index score)."""
        require_fitted(self, self.model)
        if self.item_bias is None:
            return self.item_vectors
        return np.hstack([self.item_vectors, self.item_bias[:, None]])

    def save(self, directory: Path) -> None:
        require_fitted(self, self.model)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_config(directory, {"config": asdict(self.config), "shapes": asdict(self.model.shapes)})
        training = {"losses": self.losses, "examples_per_second": self.examples_per_second,
                    "n_examples": self.n_examples}
        write_config(directory, training, LOSSES_FILE)
        self.encoders.save(directory)
        save_file(self.model.state_dict(), str(directory / WEIGHTS_FILE))
        tensors = {"item_vectors": torch.from_numpy(self.item_vectors), "item_codes": self._item_codes,
                   "item_numeric": self._item_numeric}
        if self.item_bias is not None:
            tensors["item_bias"] = torch.from_numpy(self.item_bias)
        save_file(tensors, str(directory / VECTORS_FILE))
        self.articles.write_parquet(directory / ARTICLES_FILE)
        self.index.save(directory)

    @classmethod
    def load(cls, directory: Path) -> Self:
        directory = Path(directory)
        meta = read_config(directory)
        recommender = cls(TwoTowerConfig(**meta["config"]))
        recommender.model = TwoTower(TowerShapes(**meta["shapes"]))
        recommender.model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        recommender.model.eval()
        recommender.encoders = Encoders.load(directory)
        tensors = load_file(str(directory / VECTORS_FILE))
        recommender.item_vectors = tensors["item_vectors"].numpy()
        recommender.item_bias = tensors["item_bias"].numpy() if "item_bias" in tensors else None
        recommender._item_codes = tensors["item_codes"]
        recommender._item_numeric = tensors["item_numeric"]
        recommender.articles = pl.read_parquet(directory / ARTICLES_FILE)
        recommender.index = ArticleIndex.load(directory)
        losses = read_config(directory, name=LOSSES_FILE)
        recommender.losses, recommender.examples_per_second = losses["losses"], losses["examples_per_second"]
        recommender.n_examples = losses["n_examples"]
        return recommender


def _fit_vocabularies(data: TrainData, config: TwoTowerConfig) -> Encoders:
    window = window_rows(data.transactions, data.cutoff, config.window_days)
    item_vocabs = {"article_idx": Vocabulary.fit(window["article_idx"], config.min_article_count)}
    for name in ITEM_CATEGORICALS[1:]:
        if name in data.articles.columns:
            item_vocabs[name] = Vocabulary.fit(data.articles[name])
    profiles = customer_profiles(data.customers)
    user_vocabs = {name: Vocabulary.fit(profiles[name]) for name in USER_CATEGORICALS if name in profiles.columns}
    return Encoders(item_vocabs=item_vocabs, user_vocabs=user_vocabs)


def _negative_p(bought: np.ndarray, pool: np.ndarray, power: float) -> np.ndarray | None:
    """Draw chances over `pool` proportional to window sales ** power; None (uniform) for power 0."""
    if power == 0:
        return None
    counts = np.bincount(bought, minlength=int(pool.max()) + 1)[pool].astype(np.float64)
    weights = counts**power
    return weights / weights.sum()


def _with_oov_row(codes: np.ndarray) -> torch.Tensor:
    """Item codes plus one all-OOV row, used for articles the model has no row for."""
    return torch.from_numpy(np.vstack([codes, np.zeros((1, codes.shape[1]), dtype=np.int64)]))
