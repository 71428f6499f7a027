"""FashionKLIP-style concept knowledge: fashion concepts mined from captions, with their hypernyms."""
