"""Embed a catalogue once (images, then each product's distinct captions) on the model's device."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import open_clip
import torch
from tqdm.auto import tqdm

from fashion_clip.data.catalogue_reader import collate_items
from fashion_clip.errors import MissingInputError
from fashion_clip.evaluation.embedded_split import CaptionRecord, EmbeddedSplit, ImageRecord

Tokenizer = Callable[[list[str]], torch.Tensor]


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """fp16 autocast on CUDA, where it halves embedding time; plain fp32 on CPU (emulated bf16 is slower)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


@torch.inference_mode()
def embed_texts(
    model: open_clip.CLIP, tokenizer: Tokenizer, texts: list[str], batch_size: int, device: torch.device
) -> torch.Tensor:
    """Unit-norm float32 text features on the CPU, in the order given, tokenized a batch at a time."""
    chunks = []
    for start in tqdm(range(0, len(texts), batch_size), desc="embedding: captions", unit="batch"):
        tokens = tokenizer(texts[start : start + batch_size]).to(device)
        with autocast(device):
            chunks.append(model.encode_text(tokens, normalize=True).float().cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0, 0)


def distinct_captions(items: Iterable[tuple[str, list[str]]]) -> list[CaptionRecord]:
    """Each product's captions once, in first-seen order: duplicates would count one query several times."""
    seen: dict[tuple[str, str], None] = {}
    for product_id, captions in items:
        for caption in captions:
            seen.setdefault((product_id, caption), None)
    return [CaptionRecord(product_id, text) for product_id, text in seen]


@contextlib.contextmanager
def borrowed(model: torch.nn.Module) -> Iterator[None]:
    """Give the model back in the train/eval modes and on the device it came in.

    Training evaluates before and after fitting; Lightning keeps each submodule's train/eval mode,
    so a model left in eval mode would silently train without dropout.
    """
    modes = {m: m.training for m in model.modules()}
    original = next(model.parameters(), torch.empty(0)).device  # an ONNX export's towers hold none
    try:
        yield
    finally:
        model.to(original)
        for module, training in modes.items():
            module.training = training


@torch.inference_mode()
def embed_catalogue(
    model: open_clip.CLIP,
    tokenizer: Tokenizer,
    dataset: torch.utils.data.IterableDataset,
    batch_size: int = 256,
    num_workers: int = 2,
    device: torch.device | str = "cpu",
    with_captions: bool = True,
    description: str = "embedding",
) -> EmbeddedSplit:
    """Image features in file order plus distinct-caption features; an unreadable split fails."""
    device = torch.device(device)
    with borrowed(model):
        model.eval().to(device)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_items
        )
        features, records, attributes, captions, skipped = [], [], [], [], 0
        for batch in tqdm(loader, desc=f"{description}: images", unit="batch"):
            skipped += batch["skipped"]
            if batch["image"] is None:
                continue
            with autocast(device):
                features.append(model.encode_image(batch["image"].to(device), normalize=True).float().cpu())
            for i, key in enumerate(batch["key"]):
                caps = batch["captions"][i]
                records.append(
                    ImageRecord(
                        key, batch["product_id"][i], batch["category"][i], caps[0], batch["source"][i]
                    )
                )
                attributes.append(batch["attributes"][i])
                captions.append((batch["product_id"][i], caps))
        if not records:
            raise MissingInputError(
                f"{description}: the catalogue has no readable image ({skipped} corrupt samples skipped); "
                f"check the split's shard spec or folder"
            )
        caption_records = distinct_captions(captions) if with_captions else []
        texts = [c.text for c in caption_records]
        caption_features = (
            embed_texts(model, tokenizer, texts, batch_size, device)
            if texts
            else torch.zeros(0, features[0].shape[1])
        )
        return EmbeddedSplit(
            torch.cat(features), records, caption_features, caption_records, skipped, attributes
        )
