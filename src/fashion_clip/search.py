"""Search an index: `python -m fashion_clip.search "black leather ankle boots" --index index.pt --k 10`.

`--image query.jpg` searches by image instead; `--html out.html` also writes a page of thumbnails.
The model is rebuilt from the identity stored in the index; --model/--pretrained/--ckpt/--tokenizer
replace the stored values, and a model whose weights differ from the index's is refused. `--onnx DIR`
embeds the query with an ONNX export on onnxruntime (the default for an index built with `onnx=`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fashion_clip.errors import ConfigError, exit_on_user_error
from fashion_clip.retrieval.index_file import load_index
from fashion_clip.retrieval.page import (
    image_location,
    refuse_foreign_file,
    render_page,
    thumbnail_data_uri,
    write_page,
)
from fashion_clip.retrieval.query_model import build_query_model
from fashion_clip.retrieval.search import (
    BACKENDS,
    FAISS_MIN_ROWS,
    ProductHit,
    encode_image_query,
    encode_text_query,
    load_query_image,
    open_searcher,
    search,
)
from fashion_clip.utils.launch import resolve_device
from fashion_clip.utils.metadata_text import metadata_text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; value checks argparse cannot express happen in `check_args`."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("query", nargs="?", help="text to search for (or use --image)")
    parser.add_argument("--image", type=Path, help="search with this image instead of text")
    parser.add_argument(
        "--index", type=Path, required=True, help="index file from `python -m fashion_clip.index`"
    )
    parser.add_argument("--k", type=int, default=10, help="number of products to show")
    parser.add_argument("--model", help="open_clip model name (default: the index's)")
    parser.add_argument("--pretrained", help="pretrained tag or weights file (default: the index's)")
    parser.add_argument("--ckpt", help="fine-tuned checkpoint (default: the index's ckpt_path)")
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="unpickle the checkpoint fully even if it holds more than weights (it can then run code)",
    )
    parser.add_argument("--tokenizer", help="local directory of a Hugging Face tokenizer (SigLIP2 models)")
    parser.add_argument(
        "--onnx", help="ONNX export directory to embed the query with onnxruntime (default: the index's)"
    )
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="exact search engine")
    parser.add_argument(
        "--faiss-min-rows",
        type=int,
        default=FAISS_MIN_ROWS,
        help="with --backend auto, use FAISS (when installed) above this many index rows",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--html", type=Path, help="also write the results as an HTML page of thumbnails")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Fail on bad values before loading anything."""
    if args.k < 1:
        raise ConfigError(f"--k must be at least 1, got {args.k}")
    if (args.query is None) == (args.image is None):
        raise ConfigError('give either a text query ("black leather boots") or --image PATH, not both')
    if args.html:
        refuse_foreign_file(args.html)


def print_hits(hits: list[ProductHit], title: str, caption: str) -> None:
    """The results as a terminal table."""
    table = Table(title=title, caption=caption)
    for column in ("rank", "score", "product", "category", "caption", "source"):
        table.add_column(column, justify="right" if column in ("rank", "score") else "left", overflow="fold")
    for hit in hits:
        r = hit.record
        cells = (r.product_id, metadata_text(r.category) or "-", r.caption, image_location(r.source, r.key))
        table.add_row(str(hit.rank), f"{hit.score:.4f}", *map(escape, cells))
    Console().print(table)


def query_title(args: argparse.Namespace) -> str:
    """What was searched for, as the table and page title."""
    return f"image {args.image}" if args.image else f'"{args.query}"'


def run_search(args: argparse.Namespace) -> list[ProductHit]:
    """Load, embed the query with the index's model, search, print and optionally write the page."""
    check_args(args)
    image: Image.Image | None = load_query_image(args.image) if args.image else None
    index = load_index(args.index)
    device = resolve_device(args.device)
    searcher = open_searcher(index.embeddings, args.backend, args.faiss_min_rows, device)
    bundle = build_query_model(
        index.model,
        args.model,
        args.pretrained,
        args.ckpt,
        args.tokenizer,
        device,
        args.onnx,
        args.trust_checkpoint,
        args.index,
    )
    features = (
        encode_image_query(bundle, image, device) if image else encode_text_query(bundle, args.query, device)
    )
    hits = search(index, features, args.k, searcher)
    title = query_title(args)
    print_hits(hits, title, f"top {len(hits)} of {index.num_products} products, {index.model.describe()}")
    if args.html:
        page = render_page(title, hits, thumbnail_data_uri(image) if image else None)
        Console().print(f"wrote {write_page(args.html, page)}")
    return hits


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`fashion-clip-search`)."""
    run_search(parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
