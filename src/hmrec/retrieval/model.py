"""The two towers: article attributes -> item vector, customer profile + pooled purchases -> user vector."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# Fields whose vocabularies are large enough to deserve wide embeddings.
_WIDE_FIELDS = ("article_idx", "product_code")


@dataclass
class TowerShapes:
    """Sizes the towers are built from; saved with the weights so loading rebuilds the same network."""

    item_fields: dict[str, int]  # field -> vocabulary size (OOV included), in encoder column order
    user_fields: dict[str, int]
    n_item_numeric: int
    n_user_numeric: int
    wide_dim: int = 32
    narrow_dim: int = 8
    hidden_dim: int = 256
    out_dim: int = 64
    item_bias: bool = False  # a per-article score offset learned from the numeric (trend) features


class PastItems(NamedTuple):
    """A batch's past purchases, each distinct (article, feature snapshot) encoded once."""

    codes: torch.Tensor  # (u, n_item_fields) the distinct past articles
    numeric: torch.Tensor  # (u, n_item_numeric) their features
    index: torch.Tensor  # (b, n_last) row of `codes` for each purchase slot (any row on padding)
    weights: torch.Tensor  # (b, n_last) recency weights, 0 on padding
    vectors: torch.Tensor | None = None  # (u, out_dim) their item vectors when known (answering), else computed


def _mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))


class FieldEmbeddings(nn.Module):
    """One embedding table per categorical field, concatenated: (..., n_fields) codes -> (..., dim)."""

    def __init__(self, fields: dict[str, int], wide_dim: int, narrow_dim: int):
        super().__init__()
        dims = [wide_dim if name in _WIDE_FIELDS else narrow_dim for name in fields]
        # Wide tables (up to ~100k rows) get sparse gradients: a dense one would zero and update every row
        # on every step, which costs more than the rest of the step on CPU.
        self.tables = nn.ModuleList(
            nn.Embedding(size, dim, sparse=name in _WIDE_FIELDS)
            for name, size, dim in zip(fields, fields.values(), dims, strict=True)
        )
        for table in self.tables:
            nn.init.normal_(table.weight, std=0.05)
        self.dim = sum(dims)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        # F.embedding, not table(...): the module call's hook machinery costs more than a one-row look-up
        return torch.cat([F.embedding(codes[..., i], table.weight, sparse=table.sparse)
                          for i, table in enumerate(self.tables)], dim=-1)


class TwoTower(nn.Module):
    """Item and user towers sharing the item-side embedding tables; both emit L2-normalised vectors."""

    def __init__(self, shapes: TowerShapes):
        super().__init__()
        self.shapes = shapes
        self.item_embeddings = FieldEmbeddings(shapes.item_fields, shapes.wide_dim, shapes.narrow_dim)
        self.user_embeddings = FieldEmbeddings(shapes.user_fields, shapes.narrow_dim, shapes.narrow_dim)
        item_in = self.item_embeddings.dim + shapes.n_item_numeric
        # The user sees its profile, its pooled purchases, their count (log) and its numeric features.
        user_in = self.user_embeddings.dim + self.item_embeddings.dim + 1 + shapes.n_user_numeric
        self.item_mlp = _mlp(item_in, shapes.hidden_dim, shapes.out_dim)
        self.user_mlp = _mlp(user_in, shapes.hidden_dim, shapes.out_dim)
        self.history_gain = nn.Parameter(torch.tensor(1.0))
        # Unit vectors cannot say "popular right now for everybody"; a bias from the sales counts and
        # the days since first sale can. Absent (None) in models saved before it existed.
        self.bias_mlp = _mlp(shapes.n_item_numeric, 32, 1) if shapes.item_bias else None

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(dense, sparse) parameters: the sparse ones need an optimizer that takes sparse gradients."""
        sparse = [t.weight for t in self.item_embeddings.tables if t.sparse]
        sparse_ids = {id(p) for p in sparse}
        return [p for p in self.parameters() if id(p) not in sparse_ids], sparse

    def items(self, codes: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """(b, n_item_fields) codes, (b, n_item_numeric) features -> (b, out_dim) unit vectors."""
        return self._items_from(self.item_embeddings(codes), numeric)

    def bias(self, numeric: torch.Tensor) -> torch.Tensor:
        """(b, n_item_numeric) features -> (b,) score offsets, in logit units (zeros without a bias head)."""
        if self.bias_mlp is None:
            return torch.zeros(numeric.shape[0], dtype=numeric.dtype)
        return self.bias_mlp(numeric).squeeze(-1)

    def _items_from(self, embedded: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.item_mlp(torch.cat([embedded, numeric], dim=-1)), dim=-1)

    def users(self, profile: torch.Tensor, past: PastItems, numeric: torch.Tensor) -> torch.Tensor:
        """(b, n_user_fields) codes, the past purchases, (b, n_user_numeric) features -> (b, out_dim) unit vectors.

        The past purchases enter twice: their pooled field embeddings feed the MLP, and their pooled item
        vectors are added to its output, so a customer's vector starts out near what they bought.
        """
        embedded = self.item_embeddings(past.codes)  # (u, item_dim), one row per distinct past article
        vectors = self._items_from(embedded, past.numeric) if past.vectors is None else past.vectors  # (u, out_dim)
        total = past.weights.sum(dim=1, keepdim=True)  # (b, 1)
        share = (past.weights / total.clamp_min(1e-6)).unsqueeze(-1)  # (b, n_last, 1)
        pooled = (embedded[past.index] * share).sum(dim=1)  # (b, item_dim)
        pooled_vectors = (vectors[past.index] * share).sum(dim=1)  # (b, out_dim)
        count = torch.log1p((past.weights > 0).sum(dim=1, keepdim=True).float())
        x = torch.cat([self.user_embeddings(profile), pooled, count, numeric], dim=-1)
        return F.normalize(self.user_mlp(x) + self.history_gain * pooled_vectors, dim=-1)


def sampled_softmax_loss(
    users: torch.Tensor,
    candidates: torch.Tensor,
    candidate_ids: torch.Tensor,
    log_q: torch.Tensor,
    temperature: float,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """In-batch softmax: user i's positive is candidate i; the other candidates are its negatives.

    users (b, d); candidates (b + m, d): the b positives then m extra negatives; candidate_ids (b + m,);
    log_q (b + m,) the log of each candidate's expected count in a sample, subtracted so that popular
    articles are not pushed down merely for turning up often as negatives. Another row's candidate that is
    the same article as user i's positive is masked, not counted as a negative.
    """
    b = users.shape[0]
    logits = users @ candidates.T / temperature - log_q.unsqueeze(0)  # (b, b + m)
    same = candidate_ids.unsqueeze(0) == candidate_ids[:b].unsqueeze(1)
    same[torch.arange(b), torch.arange(b)] = False
    logits = logits.masked_fill(same, torch.finfo(logits.dtype).min)
    return F.cross_entropy(logits, torch.arange(b))
