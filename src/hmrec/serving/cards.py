"""What every answer shows of an article (its card and image URL), and article look-up by id."""

from __future__ import annotations

from pathlib import Path

from hmrec.raw.schema import format_article_id
from hmrec.serving.model import LoadedModel


class NotFoundError(LookupError):
    """An id the current model does not know; the message names it."""


def find_article(model: LoadedModel, article_id: int) -> int:
    """The article's index in `model`'s catalogue; NotFoundError names the article and the version."""
    idx = model.catalogue.find(article_id)
    if idx is None:
        raise NotFoundError(f"article {format_article_id(article_id)} is not in the catalogue of model version "
                            f"{model.version}")
    return idx


class ArticleCards:
    """Builds article cards; each model keeps the cards it showed most (`model.keep_card`), this class the images
    dir."""

    def __init__(self, images_dir: Path | None):
        self.images_dir = images_dir

    def card(self, model: LoadedModel, idx: int) -> dict:
        """What every answer shows of an article; kept on the model, so callers copy it into their own dicts."""
        card = model.card(idx)
        if card is None:
            card = self._card(model, idx)
            model.keep_card(idx, card)
        return card

    def _card(self, model: LoadedModel, idx: int) -> dict:
        c = model.catalogue
        article_id = c.shown_ids[idx]
        return {
            "article_id": article_id,
            "name": c.text["prod_name"][idx],
            "product_type": c.text["product_type_name"][idx],
            "product_group": c.text["product_group_name"][idx],
            "colour": c.text["colour_group_name"][idx],
            "index_group": c.text["index_group_name"][idx],
            "price": c.shown_prices[idx],
            "image_url": self.image_url(article_id),
        }

    def image_url(self, article_id: str) -> str:
        images = self.images_dir
        if images is not None and (images / article_id[:3] / f"{article_id}.jpg").is_file():
            return f"/images/{article_id[:3]}/{article_id}.jpg"
        return f"/articles/{article_id}/image.svg"
