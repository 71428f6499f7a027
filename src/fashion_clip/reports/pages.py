"""gallery.html, the failure gallery: the queries a model gets most wrong (every text and image query's
true product ranked among all products, worst first, with the products retrieved instead) as one
self-contained page (inline thumbnails and style, nothing fetched), built from the product-search page's
cards so both pages look and behave alike."""

from __future__ import annotations

import html
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from fashion_clip.errors import ConfigError
from fashion_clip.records import BASE
from fashion_clip.retrieval.embedding import EmbeddedSplit, ImageRecord, product_categories
from fashion_clip.retrieval.page import (
    hit_thumbnail,
    html_document,
    image_tag,
    record_thumbnail,
    result_card,
    write_page,
)
from fashion_clip.retrieval.search import ProductHit, first_per_product
from fashion_clip.utils.metadata_text import metadata_html

TOP_HITS = 5
CHUNK_SIZE = 256
TEXT, IMAGE = "text queries", "image queries"


@dataclass(frozen=True)
class Query:
    """One query: what identifies it in another model's embedding of the split, and what it shows."""

    key: tuple[str, str]
    product_id: str
    text: str
    category: str | None
    image: ImageRecord | None = None


@dataclass(frozen=True)
class Direction:
    """Queries of one kind against the other kind's items, each row's product as an index, and what a
    gallery row shows (an image; for a caption, its product's first image with that caption)."""

    queries: list[Query]
    query_features: torch.Tensor
    query_products: torch.Tensor
    gallery_features: torch.Tensor
    gallery_products: torch.Tensor
    gallery_records: list[ImageRecord]
    num_products: int


@dataclass(frozen=True)
class Failure:
    """A query, its true product at its rank (shown by its best-matching item), and the top products."""

    query: Query
    truth: ProductHit
    products: int
    hits: list[ProductHit]
    base_hits: list[ProductHit] | None = None


def check_gallery_size(size: int, key: str) -> int:
    """A gallery needs at least one query of each kind; the message names the key to change."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"{key} must be a positive number of queries per kind, got {size!r}")
    return size


def directions(split: EmbeddedSplit) -> dict[str, Direction]:
    """Text->image and image->text over the split's products (indexed in first-seen image order)."""
    first_image: dict[str, ImageRecord] = {}
    for record in split.images:
        first_image.setdefault(record.product_id, record)
    index = {product_id: i for i, product_id in enumerate(first_image)}
    categories = product_categories(split.images)
    image_products = torch.tensor([index[r.product_id] for r in split.images])
    caption_products = torch.tensor([index[c.product_id] for c in split.captions])
    captions = [
        Query((c.product_id, c.text), c.product_id, c.text, categories.get(c.product_id))
        for c in split.captions
    ]
    images = [Query((r.source, r.key), r.product_id, r.caption, r.category, r) for r in split.images]
    caption_cards = [replace(first_image[c.product_id], caption=c.text) for c in split.captions]
    images_f, captions_f = split.image_features.float(), split.caption_features.float()
    return {
        TEXT: Direction(
            captions, captions_f, caption_products, images_f, image_products, split.images, len(index)
        ),
        IMAGE: Direction(
            images, images_f, image_products, captions_f, caption_products, caption_cards, len(index)
        ),
    }


def product_ranks(direction: Direction, chunk_size: int = CHUNK_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query's true-product rank among all products (a product scores as its best item; a tie
    counts against the truth, as in sample100) and the true product's score."""
    ranks, scores = [], []
    gallery = direction.gallery_features.T
    for start in range(0, len(direction.queries), chunk_size):
        similarity = direction.query_features[start : start + chunk_size] @ gallery
        best = torch.full((similarity.shape[0], direction.num_products), -torch.inf)
        best.scatter_reduce_(1, direction.gallery_products.expand_as(similarity), similarity, "amax")
        truth = best.gather(1, direction.query_products[start : start + chunk_size, None])
        ranks.append((best >= truth).sum(dim=1))
        scores.append(truth[:, 0])
    return torch.cat(ranks), torch.cat(scores)


def worst(ranks: torch.Tensor, scores: torch.Tensor, n: int) -> list[int]:
    """The n queries whose truth ranks lowest; equal ranks by lower true-product score."""
    return sorted(range(len(ranks)), key=lambda q: (-int(ranks[q]), float(scores[q])))[:n]


def top_products(direction: Direction, query: torch.Tensor, k: int = TOP_HITS) -> list[ProductHit]:
    """The k best products for one query feature, each shown by its best-matching item."""
    scores, rows = (direction.gallery_features @ query).sort(descending=True)
    return first_per_product(direction.gallery_records, scores, rows, k)


def truth_hit(direction: Direction, row: int, rank: int) -> ProductHit:
    """The query's true product at its rank, shown by its best-matching item."""
    scores = direction.gallery_features @ direction.query_features[row]
    own = (direction.gallery_products == direction.query_products[row]).nonzero()[:, 0]
    best = own[scores[own].argmax()]
    return ProductHit(rank, float(scores[best]), int(best), direction.gallery_records[best])


def base_hits(base: Direction | None, query: Query) -> list[ProductHit] | None:
    """The base model's top products for the same query, when a base embedding is given and has it."""
    if base is None:
        return None
    row = next((i for i, q in enumerate(base.queries) if q.key == query.key), None)
    return None if row is None else top_products(base, base.query_features[row])


def find_failures(
    split: EmbeddedSplit, size: int, base_split: EmbeddedSplit | None = None
) -> dict[str, list[Failure]]:
    """The `size` worst text queries and image queries, with the base model's top products beside."""
    base = directions(base_split) if base_split is not None else {}
    failures: dict[str, list[Failure]] = {}
    for name, direction in directions(split).items():
        ranks, scores = product_ranks(direction)
        failures[name] = [
            Failure(
                direction.queries[row],
                truth_hit(direction, row, int(ranks[row])),
                direction.num_products,
                top_products(direction, direction.query_features[row]),
                base_hits(base.get(name), direction.queries[row]),
            )
            for row in worst(ranks, scores, size)
        ]
    return failures


GALLERY_NAME = "gallery.html"


def category_note(hit: ProductHit, query: Query) -> str:
    """Whether a retrieved product shares the query's category: the first thing to check in a failure."""
    if not query.category or not hit.record.category:
        return ""
    if hit.record.category == query.category:
        return '<div class="same">same category</div>'
    return '<div class="other">other category</div>'


def hits_row(label: str, hits: list[ProductHit], query: Query) -> str:
    """A labelled row of retrieved products."""
    cards = "".join(result_card(hit, hit_thumbnail(hit), category_note(hit, query)) for hit in hits)
    return f'<div class="label">{html.escape(label)}</div><div class="grid">{cards}</div>'


def query_section(number: int, failure: Failure, label: str) -> str:
    """One failed query: what was asked, where its product ranked, and what came first instead."""
    query = failure.query
    asked = f"<h3>{number}. {html.escape(query.text)}</h3>"
    if query.image is not None:
        shown = image_tag(record_thumbnail(query.image.source, query.image.key), query.text)
        asked = f"<h3>{number}. query image ({html.escape(query.product_id)})</h3>{shown}"
    truth = failure.truth
    summary = (
        f"<div>true product {html.escape(query.product_id)} ({metadata_html(query.category)}) "
        f"ranks <b>{truth.rank}</b> of {failure.products}, score {truth.score:.4f}</div>"
    )
    rows = hits_row(f"{label}: top {len(failure.hits)}", failure.hits, query)
    if failure.base_hits is not None:
        rows += hits_row(f"{BASE}: top {len(failure.base_hits)}", failure.base_hits, query)
    truth_card = result_card(truth, hit_thumbnail(truth), css="card truth")
    return (
        f'<div class="query">{asked}{summary}<div class="label">true product</div>'
        f'<div class="grid">{truth_card}</div>{rows}</div>'
    )


def render_gallery(title: str, failures: dict[str, list[Failure]], label: str) -> str:
    """The page: for each query kind, its failed queries worst first."""
    sections = []
    for kind, group in failures.items():
        body = "".join(query_section(i + 1, failure, label) for i, failure in enumerate(group))
        sections.append(f"<h2>{html.escape(kind)}: {len(group)} whose product ranks worst</h2>{body}")
    return html_document(title, "".join(sections))


def write_gallery(
    split: EmbeddedSplit,
    path: str | Path,
    size: int,
    title: str,
    label: str,
    base_split: EmbeddedSplit | None = None,
) -> Path:
    """Find the `size` worst text and image queries of `split` and write their page to `path`; with
    `base_split` (the same split embedded by the base model), its top products are shown beside."""
    page = render_gallery(title, find_failures(split, size, base_split), label)
    return write_page(path, page, key="gallery")
