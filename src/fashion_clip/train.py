"""Training entry point: `python -m fashion_clip.train model=vitb32 loss=infonce data=fashiongen`."""

from __future__ import annotations

from fashion_clip.config import hydra_entry

main = hydra_entry("train", "fashion_clip.training.train")

if __name__ == "__main__":
    main()
