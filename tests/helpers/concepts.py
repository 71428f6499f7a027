"""A hand-written concept hierarchy, captions that name its concepts, and a text tower that embeds them."""

from __future__ import annotations

import torch
from torch import nn

from fashion_clip.knowledge.concepts import Concept

CONCEPTS = [
    Concept(0, "jacket", None, "a photo of jacket"),
    Concept(1, "hat", None, "a photo of hat"),
    Concept(2, "leather jacket", "jacket", "a photo of leather jacket"),
    Concept(3, "black leather jacket", "leather jacket", "a photo of black leather jacket"),
    Concept(4, "wool hat", "hat", "a photo of wool hat"),
]
CAPTIONS = [
    "Black leather jacket and a hat",
    "A wool hat.",
    "plain socks",
    "Leather jacket",
    "jacket, wool hat",
    "a black leather jacket",
]
DIM = 8


def index_tokenizer(texts: list[str]) -> torch.Tensor:
    """Prompt i -> token [i], so BankModel's rows are the bank."""
    return torch.arange(len(texts))[:, None]


class BankModel(nn.Module):
    """A text tower that maps prompt i to a fixed random unit vector (by a matmul, so autocast shows in its
    output), and counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.nn.functional.normalize(torch.randn(len(CONCEPTS), DIM), dim=1))
        self.calls = 0

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        self.calls += 1
        one_hot = torch.nn.functional.one_hot(tokens[:, 0], len(CONCEPTS)).float()
        return torch.nn.functional.normalize(one_hot @ self.table, dim=1)

    def prompt_bank(self) -> torch.Tensor:
        """Every concept prompt's embedding, in bank order."""
        return self.encode_text(index_tokenizer([c.prompt for c in CONCEPTS]))
