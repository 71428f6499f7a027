"""An ONNX export behind open_clip's interface, so indexing, search and evaluation run on it unchanged."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import nn

from fashion_clip.deploy.runtime import OnnxClip
from fashion_clip.models.factory import ClipBundle
from fashion_clip.models.identity import ModelIdentity, clip_config


class OnnxTowers(nn.Module):
    """`encode_image` / `encode_text` answered by onnxruntime; the export's outputs are already unit-norm."""

    def __init__(self, clip: OnnxClip):
        super().__init__()
        self.clip = clip

    def encode(self, tower: str, inputs: torch.Tensor, normalize: bool) -> torch.Tensor:
        """Run one tower on the CPU and hand back a torch tensor on the inputs' device."""
        if not normalize:
            raise ValueError("an ONNX export outputs unit-norm embeddings only; call with normalize=True")
        return torch.from_numpy(self.clip.encode(tower, inputs.cpu().numpy())).to(inputs.device)

    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Image embeddings, as open_clip's `encode_image(normalize=True)`."""
        return self.encode("image", pixels, normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Text embeddings, as open_clip's `encode_text(normalize=True)`."""
        return self.encode("text", tokens, normalize)


def onnx_bundle(directory: str | Path, threads: int | None = None) -> ClipBundle:
    """The export as a `ClipBundle`: its preprocessing as the transform, its tokenizer, its towers."""
    clip = OnnxClip(directory, threads)

    def transform(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(clip.preprocess(image))

    def tokenizer(texts: list[str]) -> torch.Tensor:
        return torch.from_numpy(clip.tokenize(texts))

    return ClipBundle(clip.manifest.name, OnnxTowers(clip), transform, transform, tokenizer)


def onnx_identity(bundle: ClipBundle) -> ModelIdentity:
    """The index identity of an export: its directory, and the fingerprint of the weights it came from."""
    manifest = bundle.model.clip.manifest
    config = clip_config(manifest.name, onnx=str(manifest.directory.resolve()))
    return ModelIdentity(config, None, manifest.embed_dim, manifest.fingerprint)
