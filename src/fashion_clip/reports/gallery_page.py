"""gallery.html: the failure gallery as one self-contained page (inline thumbnails and style, nothing
fetched), built from the product-search page's cards so both pages look and behave alike."""

from __future__ import annotations

import html
from pathlib import Path

from fashion_clip.evaluation.embedded_split import EmbeddedSplit
from fashion_clip.evaluation.failure_gallery import Failure, Query, find_failures
from fashion_clip.reports.results_file import BASE
from fashion_clip.retrieval.html_page import (
    hit_thumbnail,
    html_document,
    image_tag,
    record_thumbnail,
    result_card,
    write_page,
)
from fashion_clip.retrieval.product_search import ProductHit
from fashion_clip.utils.metadata_text import metadata_html

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
