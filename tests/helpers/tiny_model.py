"""The tiny model with seeded random weights, the inputs it takes, and what it embeds them to."""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch

from fashion_clip.models.factory import create_model

TINY = "FashionCLIP-Tiny"


def random_tiny(seed: int, **controls: object) -> open_clip.CLIP:
    """A random-init tiny model; different seeds give different weights, so a load is visible."""
    torch.manual_seed(seed)
    return create_model(TINY, **controls)[0]


def save_tiny_weights(path: Path, seed: int) -> Path:
    """A random-init tiny model saved as a plain state dict, so it can be rebuilt exactly by path."""
    torch.save(random_tiny(seed).state_dict(), path)
    return path


def save_trained_lora_tiny(path: Path, lora: object) -> tuple[open_clip.CLIP, Path]:
    """A tiny model with LoRA adapters that change its outputs (B is zero at init, so it is perturbed),
    in eval mode, and its state dict saved at `path`: what a LoRA training run leaves."""
    adapted = random_tiny(0, lora=lora).eval()
    with torch.no_grad():
        for name, param in adapted.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)
    torch.save(adapted.state_dict(), path)
    return adapted, path


def training_batch(model: open_clip.CLIP, size: int, seed: int) -> dict[str, torch.Tensor]:
    """Random images and token ids in the shape a training step takes: any input will do for the checks."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(size, 3, *model.visual.image_size, generator=generator),
        "text": torch.randint(1, model.vocab_size, (size, model.context_length), generator=generator),
        "skipped": torch.tensor(0),
    }


@torch.no_grad()
def embed(
    model: open_clip.CLIP, batch: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and text embeddings of an (images, tokens) pair, unnormalised, to compare two models."""
    return model.encode_image(batch[0]), model.encode_text(batch[1])
