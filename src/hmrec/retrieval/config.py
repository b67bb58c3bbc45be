"""The two-tower model's settings, read by training, inference and the recommender alike."""

from __future__ import annotations

from dataclasses import dataclass, field

from hmrec import cpus


@dataclass
class TwoTowerConfig:
    """How the two-tower model is trained and searched; saved beside its weights as config.json."""

    # Defaults tuned on the small sample (Recall@100 on its held-out week): longer windows and more epochs
    # overfit to stale popularity; daily item-feature snapshots track it best.
    window_days: int = 28  # training examples come from this many days before the cutoff
    snapshot_every_days: int = 1  # item features are recomputed this often inside the window
    n_last: int = 20  # purchases pooled into the user vector (40: 1.4x slower, see docs/benchmarks.md)
    half_life_days: float = 30.0  # a purchase this old weighs half as much as one from the day before
    min_article_count: int = 1  # articles sold fewer times in the window share the OOV id embedding
    wide_dim: int = 32
    narrow_dim: int = 8
    hidden_dim: int = 256
    out_dim: int = 64
    epochs: int = 3
    # Examples seen over all epochs at most: a window with more examples trains fewer epochs (at least one). On the
    # full-size sample (1.43M examples a window) one epoch scored a higher validation Recall@100 than three, in a
    # third of the time (docs/benchmarks.md); the small sample's 68k train all three. None: no limit.
    max_examples: int | None = 2_000_000
    batch_size: int = 256
    extra_negatives: int = 512  # drawn from the articles sold in the window
    negative_power: float = 0.0  # draw chance ~ window sales ** power (0: uniform, 1: like the positives)
    item_bias: bool = False  # learned per-article offset from trend features; no gain on the small sample
    log_q_correction: bool = True  # subtract log sampling frequency from the training logits
    cold_share: float = 0.1  # share of examples trained without their history, as for a cold customer
    temperature: float = 0.05
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    index_window_days: int | None = 28  # index only articles sold this many days before the cutoff (None: all)
    # "auto" (IVF from 20k articles, flat below), "ivf" (a quarter of its lists searched), "flat" (exact) or
    # "hnsw". On the full-size sample IVF gave the same top-12 as exact search for 1,000 of 1,000 customers, at
    # 0.69x the CPU per served answer (docs/benchmarks.md)
    index_kind: str = "auto"
    seed: int = 0
    threads: int = field(default_factory=cpus.available)  # torch's sums, so the weights, depend on it (hmrec.cpus)
    user_batch_size: int = 4096  # customers encoded at once when answering a query
    loss_every_steps: int = 20

    def epochs_for(self, n_examples: int) -> int:
        """The epochs a window of `n_examples` trains: `epochs`, fewer where they would see more than
        `max_examples`, at least one."""
        if self.max_examples is None or n_examples == 0:
            return self.epochs
        return max(1, min(self.epochs, self.max_examples // n_examples))
