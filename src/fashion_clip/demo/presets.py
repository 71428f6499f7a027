"""The two demo catalogues: the plain one `make demo` trains on and the hard one, each a product count per
split plus how hard retrieval on it is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType

SPLITS = ("train", "val", "test")
DEFAULT_PRODUCTS: Mapping[str, int] = MappingProxyType({"train": 700, "val": 120, "test": 120})
HARD_PRODUCTS: Mapping[str, int] = MappingProxyType({"train": 400, "val": 100, "test": 120})


@dataclass(frozen=True)
class Difficulty:
    """How hard retrieval on the catalogue is; the defaults give the plain `make demo` catalogue."""

    # fewest and most shots per product
    views: tuple[int, int] = (2, 3)
    # share of each split's products planned in near-duplicate groups that differ in pattern or material
    near_duplicates: float = 0.0
    # share of each split's products whose group's captions leave that attribute out, so they read the same
    identical_captions: float = 0.0
    # Fashion-Gen-like copy (fit, composition, care, provenance) instead of the title plus a detail note
    long_captions: bool = False

    def __post_init__(self) -> None:
        """Identical captions are drawn from near-duplicate groups, so their share cannot be larger."""
        if self.identical_captions > self.near_duplicates:
            raise ValueError("identical captions are drawn from near-duplicate groups: share too large")

    def as_json(self) -> dict:
        """The options as the stamp file stores them (a tuple reads back from JSON as a list)."""
        return {**asdict(self), "views": list(self.views)}


DEFAULT_DIFFICULTY = Difficulty()
HARD = Difficulty(views=(4, 6), near_duplicates=0.5, identical_captions=0.15, long_captions=True)
