"""Turn a text or an image query into the unit-norm embedding the index is searched with."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from fashion_clip.errors import ConfigError, MissingInputError, UserError
from fashion_clip.evaluation.embedding import autocast
from fashion_clip.models.factory import ClipBundle


def load_query_image(path: str | Path) -> Image.Image:
    """The query image decoded in full now, so a bad file fails before the model is built."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingInputError(f"query image '{path}' does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError or SyntaxError on bad files
        raise UserError(
            f"cannot decode query image '{path}' ({type(e).__name__}: {e}): give a JPEG, PNG or WebP file"
        ) from e


@torch.inference_mode()
def encode_text_query(bundle: ClipBundle, text: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """Unit-norm float32 embedding of one text query, on the CPU."""
    if not text.strip():
        raise ConfigError("the text query is empty: give words to search for, or --image PATH")
    device = torch.device(device)
    tokens = bundle.tokenizer([text]).to(device)
    with autocast(device):
        return bundle.model.encode_text(tokens, normalize=True)[0].float().cpu()


@torch.inference_mode()
def encode_image_query(
    bundle: ClipBundle, image: Image.Image, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Unit-norm float32 embedding of one query image, preprocessed as the index's images were."""
    device = torch.device(device)
    pixels = bundle.val_transform(image).unsqueeze(0).to(device)
    with autocast(device):
        return bundle.model.encode_image(pixels, normalize=True)[0].float().cpu()
